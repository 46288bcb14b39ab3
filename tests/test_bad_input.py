"""Bad input and faults at the command line: one `error:` line, the right exit code, no
traceback, and a study folder that was already there left byte for byte as it was.

Each case runs the real `emogeom` entry point (``emogeom.cli.main``, the boundary included) in
this process against a copy of one finished study.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from emogeom import artefacts
from emogeom.stimuli import default_corpus_path

FAST = ["--permutations", "20", "--bootstrap", "5", "--splits", "2", "--per-emotion", "3",
        "--n-neutral", "6"]


def cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `emogeom ARGS` through the real entry point."""
    from emogeom.cli import main

    monkeypatch.setattr(sys, "argv", ["emogeom", *args])
    monkeypatch.delenv("EMOGEOM_DEBUG", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    code = ended.value.code
    return (0 if code is None else code), out, err


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path."""
    return {p.relative_to(folder).as_posix(): artefacts.file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tiny_models, tmp_path_factory) -> Path:
    """A finished two-model study folder (tiny llama and gpt2)."""
    from emogeom.study.runner import run_study_spec
    from emogeom.study.spec import parse_study

    out = tmp_path_factory.mktemp("finished") / "study"
    text = (f"name: t\nout: {out}\nmodels:\n  - {{id: {tiny_models['llama']}, label: A}}\n"
            f"  - {{id: {tiny_models['gpt2']}, label: B}}\nextraction: {{per_emotion: 3, "
            "n_neutral: 6}\nstatistics: {permutations: 20, bootstrap: 5}\nanalysis: "
            "{splits: 2}\n")
    run_study_spec(parse_study(text))
    return out


# --- inputs the cases write -------------------------------------------------------------

def _corpus_lines() -> list[dict]:
    return [json.loads(line) for line in default_corpus_path().read_text().splitlines()
            if line.strip()]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def long_story(tmp: Path, tiny: dict) -> list[str]:
    rows = _corpus_lines()
    rows[0]["text"] = " ".join([rows[0]["text"]] * 40)  # far past the tiny models' 256
    return ["run", "-m", str(tiny["llama"]), "--corpus", str(_jsonl(tmp / "long.jsonl", rows))]


def latin1_jsonl(tmp: Path, tiny: dict) -> list[str]:
    path = tmp / "latin1.jsonl"
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _corpus_lines()[:5])
    path.write_bytes(body.replace("a", "\u00e9", 1).encode("latin-1", "replace"))
    return ["run", "-m", str(tiny["llama"]), "--corpus", str(path)]


def latin1_csv(tmp: Path, tiny: dict) -> list[str]:
    path = tmp / "latin1.csv"
    path.write_bytes("emotion,id,text\nhappy,h1,Caf\u00e9 morning\n".encode("latin-1"))
    return ["corpus", "check", str(path)]


def topic_list(tmp: Path, tiny: dict) -> list[str]:
    rows = _corpus_lines()
    rows[3]["topic"] = ["x"]
    return ["run", "-m", str(tiny["llama"]), "--corpus", str(_jsonl(tmp / "t.jsonl", rows))]


def csv_header(tmp: Path, tiny: dict) -> list[str]:
    path = tmp / "wrong.csv"
    path.write_text("label,key,story\nhappy,h1,A fine day.\n")
    return ["run", "-m", str(tiny["llama"]), "--corpus", str(path)]


def _gguf(tmp: Path, data: bytes) -> str:
    path = tmp / "model.gguf"
    path.write_bytes(data)
    return str(path)


def gguf_empty(tmp: Path, tiny: dict) -> list[str]:
    return ["doctor", "-m", _gguf(tmp, b"")]


def gguf_random(tmp: Path, tiny: dict) -> list[str]:
    return ["doctor", "-m", _gguf(tmp, np.random.default_rng(0).bytes(4096))]


def gguf_truncated(tmp: Path, tiny: dict) -> list[str]:
    # A valid header (magic, version 3, tensor and metadata counts) and then nothing.
    head = b"GGUF" + (3).to_bytes(4, "little") + (5).to_bytes(8, "little") * 2
    return ["run", "-m", _gguf(tmp, head + b"\x01\x02")]


def gguf_random_run(tmp: Path, tiny: dict) -> list[str]:
    return ["run", "-m", str(tiny["llama"]), "-m", _gguf(tmp, b"not a gguf at all")]


def remote_code(tmp: Path, tiny: dict) -> list[str]:
    folder = tmp / "custom"
    shutil.copytree(tiny["llama"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomLM"}
    config["model_type"] = "custom_lm"  # a type transformers does not know: code needed
    (folder / "config.json").write_text(json.dumps(config))
    return ["run", "-m", str(folder)]


def unreachable_hub(tmp: Path, tiny: dict) -> list[str]:
    return ["run", "-m", str(tiny["llama"]), "-m", "nobody-here/no-such-model"]


def mean_start(tmp: Path, tiny: dict) -> list[str]:
    return ["run", "-m", str(tiny["llama"]), "--mean-start", "-1"]


def _study(tmp: Path, body: str) -> str:
    path = tmp / "s.yaml"
    path.write_text(f"name: s\n{body}")
    return str(path)


def check_missing_gguf(tmp: Path, tiny: dict) -> list[str]:
    return ["study", "check", _study(tmp, f"out: {tmp}/o\nmodels: [{{id: {tmp}/gone.gguf}}]\n")]


def check_out_is_file(tmp: Path, tiny: dict) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["study", "check", _study(tmp, f"out: {tmp}/afile\nmodels: [{{id: {tiny['gpt2']}}}]\n")]


def study_jobs_zero(tmp: Path, tiny: dict) -> list[str]:
    return ["study", "run", _study(tmp, f"out: {tmp}/o\nmodels: [{{id: {tiny['gpt2']}}}]\n"),
            "--jobs", "0"]


def _fail_writes(monkeypatch, out: Path, code: int) -> None:
    """Every artefact written under ``out`` fails with OSError ``code``."""
    real = artefacts.atomic_write_bytes

    def write(path: Path, data: bytes) -> None:
        if Path(path).resolve().is_relative_to(out.resolve()):
            raise OSError(code, errno.errorcode[code] and __import__("os").strerror(code),
                          str(path))
        real(path, data)

    monkeypatch.setattr(artefacts, "atomic_write_bytes", write)


def disk_full(tmp: Path, tiny: dict) -> list[str]:
    return ["run", "-m", str(tiny["mistral"])]


def no_permission(tmp: Path, tiny: dict) -> list[str]:
    return ["run", "-m", str(tiny["mistral"])]


# (id, args builder, writes-into-out?, expected exit code, pattern of the one stderr line,
#  fault to inject: None | errno code for writes under out)
CASES: list[tuple[str, Callable, bool, int, str, int | None]] = [
    ("long-story", long_story, True, 1,
     r"story '.+' \(\w+\) has \d+ tokens; .* reads at most 256 .*--truncate", None),
    ("latin1-jsonl", latin1_jsonl, True, 2, r"latin1\.jsonl:\d+: .*UTF-8", None),
    ("latin1-csv-check", latin1_csv, False, 2, r"latin1\.csv:2: .*UTF-8", None),
    ("topic-list", topic_list, True, 2, r"t\.jsonl:4: .*'topic'.*string", None),
    ("csv-header", csv_header, True, 2, r"wrong\.csv:1: .*header.*emotion, text", None),
    ("gguf-empty", gguf_empty, False, 2, r"model\.gguf: not a readable GGUF file", None),
    ("gguf-random", gguf_random, False, 2, r"model\.gguf: not a readable GGUF file", None),
    ("gguf-truncated", gguf_truncated, True, 1, r"model\.gguf: not a readable GGUF file", None),
    ("gguf-in-a-study", gguf_random_run, True, 2, r"model\.gguf: not a readable GGUF file",
     None),
    ("remote-code", remote_code, True, 2, r"custom.*auto_map.*--trust-remote-code", None),
    ("unreachable-hub", unreachable_hub, True, 1,
     r"1 job\(s\) failed: .*cannot load model 'nobody-here/no-such-model'", None),
    ("mean-start", mean_start, True, 2, r"--mean-start: .*greater than or equal to 0", None),
    ("check-missing-gguf", check_missing_gguf, False, 2, r"model file not found: .*gone\.gguf",
     None),
    ("check-out-is-file", check_out_is_file, False, 2, r"afile exists and is not a folder",
     None),
    ("jobs-zero", study_jobs_zero, False, 2, r"--jobs: .*1 or more", None),
    ("disk-full", disk_full, True, 2, r"no space left on the device while writing .*", 28),
    ("permission", no_permission, True, 2, r"permission denied: .* check its permissions", 13),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case, finished, tiny_models, tmp_path, monkeypatch, capsys):
    name, build, writes, code, pattern, fault = case
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = snapshot(out)
    args = build(tmp_path, tiny_models)
    if writes:
        args += ["--out", str(out)] if args[0] == "run" else []
        args += FAST if args[0] == "run" else []
    if fault is not None:
        _fail_writes(monkeypatch, out, fault)
    got, _, err = cli(args, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"\n{name} | exit {got} | {err.strip()}")
    assert got == code, f"{name}: exit {got}, stderr: {err}"
    assert len(lines) == 1, f"{name}: stderr has {len(lines)} lines:\n{err}"
    assert "Traceback" not in err and lines[0].startswith("error: ")
    assert re.search(pattern, lines[0]), f"{name}: {lines[0]!r} !~ {pattern!r}"
    after = snapshot(out)
    changed = [k for k in before if after.get(k) != before[k]]
    assert not changed, f"{name}: files changed or removed: {changed}"
    assert not (out / ".staging").exists() and not (out / ".emogeom.lock").exists()


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    args = ["--debug", "doctor", "-m", str(tmp_path / "missing.gguf")]
    from emogeom.cli import main

    monkeypatch.setattr(sys, "argv", ["emogeom", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 2  # an emogeom error is still one line, even with --debug
    monkeypatch.setenv("EMOGEOM_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["emogeom", "report", str(tmp_path)])
    monkeypatch.setattr("emogeom.cli.build_study_report", None, raising=False)
    from emogeom.commands import boundary

    def boom() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        boundary.guarded(boom, ["emogeom", "--debug"])
    monkeypatch.delenv("EMOGEOM_DEBUG")
    with pytest.raises(SystemExit) as ended:
        boundary.guarded(boom, ["emogeom"])
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: a bug" in err and "--debug" in err
    assert "Traceback" not in err


def test_same_weights_under_two_labels_agree_fully(tiny_models, tmp_path):
    from emogeom.study.runner import run_study_spec
    from emogeom.study.spec import parse_study

    out = tmp_path / "dup"
    text = (f"name: d\nout: {out}\nmodels:\n  - {{id: {tiny_models['llama']}, label: A}}\n"
            f"  - {{id: {tiny_models['llama']}, label: B}}\n"
            f"  - {{id: {tiny_models['gpt2']}, label: C}}\n"
            "extraction: {per_emotion: 3, n_neutral: 6}\n"
            "statistics: {permutations: 20, bootstrap: 5}\nanalysis: {splits: 2}\n")
    run_study_spec(parse_study(text))
    rows = {(r["model_a"], r["model_b"]): r for r in artefacts.read_csv(out / "comparisons.csv")}
    assert set(rows) == {("A", "B"), ("A", "C"), ("B", "C")}
    assert float(rows[("A", "B")]["rho"]) == pytest.approx(1.0)
    assert float(rows[("A", "C")]["rho"]) == pytest.approx(float(rows[("B", "C")]["rho"]))
    assert float(rows[("A", "C")]["rho"]) < 0.999


def _flip(path: Path, offset: int = -9) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_any_cached_file_is_caught(finished, tmp_path, monkeypatch, capsys):
    from emogeom.study.jobs import job_state
    from emogeom.study.runner import cached_references, study_checksums, verify_study

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    verify_study(out)  # intact: no complaint
    # The study-level reference cache: reported, then recomputed to the same numbers.
    ref = next((out / "references").rglob("references.safetensors"))
    rel = ref.relative_to(out).as_posix()
    good = artefacts.read_tensors(ref)[0]
    _flip(ref)
    notes: list[str] = []
    from emogeom.study.jobs import load_inputs
    from emogeom.study.spec import parse_study

    spec = parse_study(json.dumps(json.loads((out / "study.json").read_text())["spec"]))
    data = next(iter(load_inputs(spec).values()))
    rdms, _ = cached_references(ref.parent, data, lambda m, *a: notes.append(m),
                                study_checksums(out)[rel])
    assert any("does not match its checksum" in n for n in notes)
    assert all(np.array_equal(rdms[k], good[k]) for k in good)
    code, _, err = cli(["report", str(out)], monkeypatch, capsys)
    assert code == 2 and "references.safetensors does not match its checksum" in err
    # Every top-level table and every job artefact.
    for name in ["comparisons.csv", "descriptors.csv", "study.json",
                 *[p.relative_to(out).as_posix() for p in (out / "jobs").rglob("*.safetensors")],
                 *[p.relative_to(out).as_posix() for p in (out / "jobs").rglob("metrics.json")]]:
        fresh = tmp_path / f"copy-{len(notes)}-{name.replace('/', '_')}"
        shutil.copytree(finished, fresh)
        _flip(fresh / name)
        code, _, err = cli(["report", str(fresh)], monkeypatch, capsys)
        assert code == 2 and "does not match its checksum" in err, (name, err)
        if name.startswith("jobs/"):
            assert job_state((fresh / name).parents[0])[0] == "damaged"


def test_files_honour_the_umask(finished):
    import os

    for path in finished.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        want = 0o755 if path.is_dir() else 0o644
        if os.umask(0o022) == 0o022:  # the usual umask: the usual modes
            assert mode == want, f"{path}: {oct(mode)}"
        os.umask(0o022)


def test_a_second_writer_is_refused(finished, tiny_models, tmp_path, monkeypatch, capsys):
    import os

    from emogeom.study.lock import LOCK_NAME, output_lock

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = snapshot(out)
    with output_lock(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        code, _, err = cli(["report", str(out)], monkeypatch, capsys)
        assert code == 2 and f"is being written by pid {os.getpid()}" in err
        code, _, err = cli(["run", "-m", str(tiny_models["gpt2"]), "--out", str(out), *FAST],
                           monkeypatch, capsys)
        assert code == 2 and f"is being written by pid {os.getpid()}" in err
        assert len(err.strip().splitlines()) == 1
    assert not (out / LOCK_NAME).exists()
    assert snapshot(out) == before
    with output_lock(out):  # released: taken again at once
        pass


def test_status_fails_on_a_damaged_job(finished, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    spec = json.loads((out / "study.json").read_text())["spec"]
    spec["out"] = str(out)
    study = tmp_path / "s.yaml"
    study.write_text(json.dumps(spec))
    assert cli(["study", "status", str(study)], monkeypatch, capsys)[0] == 0
    _flip(next((out / "jobs").rglob("vectors.safetensors")))
    code, stdout, _ = cli(["study", "status", str(study)], monkeypatch, capsys)
    assert code == 1 and "damaged" in stdout


def test_a_damaged_converted_gguf_copy_is_redone(tmp_path, caplog):
    from emogeom.models.loading import _CONVERT_VERSION, is_converted

    folder = tmp_path / "converted" / "m-0123456789ab"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    marker = {"converter": _CONVERT_VERSION,
              "files": artefacts.checksums(folder, ["model.safetensors", "config.json"])}
    (folder / "emogeom-source.json").write_text(json.dumps(marker))
    assert is_converted(folder)
    _flip(folder / "model.safetensors", 100)
    with caplog.at_level("WARNING", logger="emogeom"):
        assert not is_converted(folder)
    assert "model.safetensors does not match its checksum" in caplog.text
    del marker["files"]  # a copy from before checksums were recorded is not trusted either
    (folder / "emogeom-source.json").write_text(json.dumps(marker))
    assert not is_converted(folder)
