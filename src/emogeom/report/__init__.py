"""The report: figures and one HTML page from a study folder's artefacts on disk only (never
runs a model). ``build_report`` is the same function as ``build_study_report``."""

from emogeom.report.study import build_study_report

build_report = build_study_report

__all__ = ["build_report", "build_study_report"]
