"""Figures and the HTML report, built from artefacts on disk only (never runs a model)."""

from emogeom.report.html import build_report

__all__ = ["build_report"]
