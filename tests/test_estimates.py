"""Long work says how long it will take, shows progress in a log, and has a CPU-sized profile."""

from __future__ import annotations

import io
import json
import math
import re
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from emogeom.models.timing import Estimate, Rate, Work, duration, estimate, seconds

ESTIMATE = re.compile(r"^estimate: .+ on (cpu|cuda|mps) ≈ ([0-9.]+) (s|min|h) \(from a .*"
                      r"an estimate\)", re.M)


def estimated_seconds(output: str) -> float:
    """The seconds of the one estimate line in ``output`` (asserts there is exactly one)."""
    found = ESTIMATE.findall(output)
    assert len(found) == 1, output
    _, value, unit = found[0]
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_seconds_from_work_and_rate():
    rate = Rate("cpu", batch=4, step_s=0.2, token_s=0.001, warmup_tokens=8)
    # 10 generations in batches of 4, 4, 2: prefill 10 × 30 tokens, 50 steps per batch
    # (a step of the 2-row batch at half the cost), then 1,000 tokens read.
    got = seconds(Work(10, 50, 4, 30, 1000), rate)
    assert got == pytest.approx(10 * 30 * 0.001 + 50 * 0.2 * 2 + 50 * 0.1 + 1000 * 0.001)
    assert seconds(Work(), rate) == 0
    est = estimate("x", [Work(read_tokens=3_000_000)], rate, ["--profile quick"])
    assert est.seconds == pytest.approx(3000) and est.long_on_cpu
    assert est.line().endswith("shrink it with --profile quick")
    assert "≈ 50 min" in est.line() and "8-token warm-up" in est.line()
    assert "shrink" not in Estimate("x", 3000, "cuda", "b", ("--profile quick",)).line()
    assert [duration(s) for s in (5, 600, 7200)] == ["5 s", "10 min", "2.0 h"]


def test_plain_progress_repeats_the_latest_count_in_a_log(monkeypatch):
    from emogeom.commands import progress as mod

    monkeypatch.setattr(mod, "PLAIN_EVERY_S", 0.2)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with mod.cli_progress(console) as report:
        report("a note")
        report("writing", 0, 3)
        report("writing", 1, 3)  # within 0.2 s of the first line: not printed
        time.sleep(0.6)  # one long batch: the heartbeat repeats the latest count
        report("writing", 3, 3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "a note" and re.match(r"writing: 0/3 \(\d+ s\)$", lines[1])
    assert any(re.match(r"writing: 1/3 \(\d+ s; still working\)$", x) for x in lines), lines
    assert re.match(r"writing: 3/3 \(\d+ s\)$", lines[-1])


def test_decompose_quick_estimate_progress_and_manifest(tiny_models, tmp_path):
    from emogeom.cli import app

    out = tmp_path / "dec"
    res = CliRunner().invoke(app, [
        "decompose", "-m", str(tiny_models["llama"]), "--profile", "quick", "--templates", "1",
        "--samples", "2", "--max-new-tokens", "4", "--loose-max-new-tokens", "4",
        "--per-emotion", "2", "--permutations", "99", "--bootstrap", "20", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "profile: quick (asked for)" in res.output
    assert math.isfinite(estimated_seconds(res.output))
    assert "105 generations (B 21 × 4, C 42 × 4, D 42 × 4 new tokens)" in res.output
    # CliRunner's output is not a terminal: plain count lines, first and last of each stage.
    for stage in ("B gen-loose: writing", "C gen-reference: writing",
                  "C gen-reference: reading back", "D gen-reference int8: writing"):
        total = 21 if stage.startswith("B") else 42
        assert re.search(rf"^{stage}: 0/{total} \(\d+ s\)$", res.output, re.M), stage
        assert re.search(rf"^{stage}: {total}/{total} \(\d+ s\)$", res.output, re.M), stage
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == "quick"
    assert manifest["estimate"]["seconds"] >= 0
    assert manifest["statistics"]["n_boot"] == 20  # flags win over the profile
    rows = (out / "decomposition.csv").read_text().splitlines()[1:]
    assert len(rows) == 5 and all(r.split(",")[6] for r in rows)  # each row has its CI


def test_profile_defaults_to_quick_on_cpu_and_fills_unset_sizes(tiny_models, tmp_path):
    from emogeom.config import PROFILES, run_profile
    from emogeom.method.sensitivity import run_sensitivity

    assert run_profile(None, "cpu")[0] == "quick" and run_profile(None, "cuda")[0] == "full"
    notes = []
    res = run_sensitivity(str(tiny_models["llama"]), "gen-reference", samples=2,
                          max_new_tokens=3, n_perm=49, out=tmp_path / "sens", device="cpu",
                          progress=lambda task, done=None, total=None: notes.append(task)
                          if done is None else None, regenerate=False)
    quick = PROFILES["quick"]
    assert res["profile"] == "quick" and res["base"].n_templates == quick["templates"]
    assert "profile: quick (CPU default; --profile full for the paper-sized run)" in notes
    assert any(n.startswith("estimate: ") for n in notes)
    manifest = json.loads((tmp_path / "sens" / "manifest.json").read_text())
    assert manifest["profile"] == "quick"
    assert manifest["statistics"]["n_boot"] == quick["bootstrap"]
    assert all(math.isfinite(r["ci_low"]) for r in res["rows"])


@pytest.mark.parametrize("argv", [
    ["steer", "--strengths", "0.5", "--layers", "1", "--max-new-tokens", "3",
     "--per-emotion", "2", "--emotion", "calm", "--no-default-prompts", "--prompt", "Hi there",
     "--out", "{tmp}/steer"],
    ["behave", "--max-new-tokens", "2", "--out", "{tmp}/behave"],
    ["corpus", "generate", "--per-emotion", "1", "--emotions", "calm,sad",
     "--max-new-tokens", "4", "--out", "{tmp}/c.jsonl"],
    ["run", "--per-emotion", "2", "--n-neutral", "4", "--permutations", "9",
     "--bootstrap", "5", "--splits", "2", "--out", "{tmp}/run"],
], ids=["steer", "behave", "corpus-generate", "run"])
def test_every_long_command_prints_a_finite_estimate(argv, tiny_models, tmp_path):
    from emogeom.cli import app

    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    res = CliRunner().invoke(app, [*args, "--model", str(tiny_models["llama"])])
    assert res.exit_code == 0, res.output
    assert math.isfinite(estimated_seconds(res.output))
