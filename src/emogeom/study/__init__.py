"""Orchestration only: study spec → job plan (provenance) → executors → runner."""
