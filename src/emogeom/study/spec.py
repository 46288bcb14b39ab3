"""The study file: YAML read into ``config.StudySpec``, with errors that point at the line.

Errors name the file, the line and the key (``study.yaml:7: models[1].variant: ...``) so a
researcher can fix a 12-model study without guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from emogeom.config import ModelEntry, StudySpec
from emogeom.errors import EmogeomError

__all__ = ["ModelEntry", "StudySpec", "load_study", "parse_study"]


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on the pydantic error path ``loc``."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    line, nxt = k.start_mark.line + 1, v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and key < len(node.value):
            nxt = node.value[key]
            line = nxt.start_mark.line + 1
        node = nxt
    return line


def _loc_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "(top level)"


def parse_study(text: str, where: str = "<study>") -> StudySpec:
    """Validate study YAML text; a one-line error names the line and key of the problem."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EmogeomError(f"{where}{line}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise EmogeomError(f"{where}: a study file is a YAML mapping with at least "
                           "'name' and 'models'")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(k for k in first["loc"] if k != "__root__")
        # Literal/enum errors carry the field path plus the variant tag: drop non-keys.
        line = _node_line(root, loc)
        msg = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EmogeomError(f"{where}{f':{line}' if line else ''}: {_loc_text(loc)}: "
                           f"{msg}{more}") from None


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        raise EmogeomError(f"study file not found: {path} (give the path of a .yaml file)")
    return parse_study(path.read_text(), str(path))
