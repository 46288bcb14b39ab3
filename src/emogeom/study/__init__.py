"""Running studies: jobs over models, artefacts on disk, comparisons."""

from emogeom.study.pipeline import RunSettings, run_study

__all__ = ["RunSettings", "run_study"]
