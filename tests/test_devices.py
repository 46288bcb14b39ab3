"""Devices with what this machine has (CPU): --device resolution and its one-line errors,
placement decisions with a faked CUDA, the OOM-halving path from a wrapped forward, a model
loaded with an explicit device_map, GPU pinning of workers, and --device on every command."""

from __future__ import annotations

import queue

import numpy as np
import pytest
import torch

from emogeom.errors import EmogeomError
from emogeom.models import devices


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Two 'visible' GPUs with 10 GiB free each (nothing is ever run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (10 * 2**30, 80 * 2**30))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)


# ---- resolution --------------------------------------------------------------------------------


def test_cpu_and_auto_pick_cpu_here(no_gpu):
    assert devices.resolve_device("cpu") == "cpu"
    assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device(None) == "cpu"
    assert devices.resolve_device(" CPU ") == "cpu"


def test_auto_picks_cpu_on_this_machine():
    """Whatever is faked elsewhere: this test machine has no CUDA, so auto is CPU (or MPS)."""
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if devices._mps_available() else "cpu")
    assert devices.resolve_device("auto") == expected


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_absent_cuda_is_one_clear_line(no_gpu, spec):
    with pytest.raises(EmogeomError) as err:
        devices.resolve_device(spec)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (f"--device {spec}: no CUDA device is visible here "
                   "(torch.cuda.is_available() is False); use --device cpu or auto")


def test_absent_mps_and_unknown_devices(no_gpu):
    with pytest.raises(EmogeomError, match="no MPS device"):
        devices.resolve_device("mps")
    with pytest.raises(EmogeomError, match="unknown device"):
        devices.resolve_device("gpu")
    with pytest.raises(EmogeomError, match="unknown device"):
        devices.resolve_device("cuda:x")


def test_fake_cuda_resolution(fake_cuda):
    assert devices.resolve_device("auto") == "cuda"
    assert devices.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(EmogeomError, match=r"only 2 CUDA device\(s\) are visible"):
        devices.resolve_device("cuda:2")


def test_job_device_follows_the_pinned_worker(fake_cuda, monkeypatch):
    assert devices.job_device(None) == "auto"
    assert devices.job_device("cpu") == "cpu"
    assert devices.job_device("cuda:1") == "cuda:1"
    with pytest.raises(EmogeomError, match="only 2 CUDA"):
        devices.job_device("cuda:4")
    monkeypatch.setenv(devices.DEVICE_ENV, "cuda")
    assert devices.job_device("auto") == "auto"  # resolves to the worker's one visible GPU
    assert devices.job_device("cuda:1") == "cuda"  # the worker sees its own GPU only
    assert devices.job_device("cuda:4") == "cuda"
    assert devices.job_device("cpu") == "cpu"  # asked for CPU: stays on CPU


def test_job_device_without_gpu(no_gpu, monkeypatch):
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    assert devices.job_device(None) == "auto" and devices.resolve_device("auto") == "cpu"
    with pytest.raises(EmogeomError, match="no CUDA device is visible"):
        devices.job_device("cuda")


def test_is_oom():
    assert devices.is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert devices.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert devices.is_oom(RuntimeError("MPS backend out of memory"))
    assert not devices.is_oom(RuntimeError("shape mismatch"))
    assert not devices.is_oom(ValueError("out of memory"))


# ---- placement ---------------------------------------------------------------------------------


def test_placement_rules():
    gib = 2**30
    assert devices.placement("cpu", 10 * gib, []) == (None, "cpu")
    assert devices.placement("mps", gib, [])[0] == {"": "mps"}
    assert devices.placement("cuda:1", 100 * gib, [10 * gib, 10 * gib])[0] == {"": "cuda:1"}
    assert devices.placement("cuda", 5 * gib, [10 * gib, 10 * gib], current=1)[0] == \
        {"": "cuda:1"}
    device_map, why = devices.placement("cuda", 16 * gib, [10 * gib, 10 * gib])
    assert device_map == "auto" and "do not fit one GPU" in why
    assert devices.placement("cuda", gib, [80 * gib], {0: "20GiB"})[0] == "auto"
    assert devices.placement("cuda", None, [gib])[0] == {"": "cuda:0"}  # no estimate: one GPU


def test_max_memory_parsing():
    assert devices.max_memory_option("0=20GiB, 1=18GiB,cpu=64GiB") == \
        {0: "20GiB", 1: "18GiB", "cpu": "64GiB"}
    assert devices.max_memory_option("20GiB") == {"*": "20GiB"}
    assert devices.max_memory_option(None) is None
    assert devices.parse_max_memory("20GiB", 3) == {0: "20GiB", 1: "20GiB", 2: "20GiB"}
    assert devices.parse_max_memory({"*": "8GiB", "cpu": "30GiB"}, 2) == \
        {"cpu": "30GiB", 0: "8GiB", 1: "8GiB"}
    assert devices.parse_max_memory({"cuda:1": "8GiB"}, 2) == {1: "8GiB"}
    for bad in ("0=lots", "gpu0=2GiB", "0=1GiB,2GiB"):
        with pytest.raises(EmogeomError, match="--max-memory"):
            devices.max_memory_option(bad)


def test_weights_bytes_counts_parameters(tiny_models):
    from transformers import AutoModelForCausalLM

    from emogeom.models.loading import weights_bytes

    folder = str(tiny_models["llama"])
    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(folder).parameters())
    assert weights_bytes(folder, "fp32") == 4 * n
    assert weights_bytes(folder, "bf16") == 2 * n
    assert weights_bytes(str(tiny_models["llama"] / "nope"), "fp32") is None


def _capture_from_pretrained(monkeypatch):
    """Make loading's from_pretrained record its kwargs and load on CPU as usual."""
    from emogeom.models import loading

    real = loading.AutoModelForCausalLM.from_pretrained
    seen: dict = {}

    def fake(name, **kwargs):
        seen.update(kwargs)
        kwargs.pop("device_map", None)
        kwargs.pop("max_memory", None)
        return real(name, **kwargs)

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", fake)
    return seen


def test_load_model_places_on_one_gpu_or_spreads(tiny_models, fake_cuda, monkeypatch):
    from emogeom.models import load_model, loading

    seen = _capture_from_pretrained(monkeypatch)
    folder = str(tiny_models["llama"])
    lm = load_model(folder, "fp32", device="auto")
    assert seen["device_map"] == {"": "cuda:0"} and "max_memory" not in seen
    assert lm.info["device"]["requested"] == "auto"
    assert lm.info["device"]["placement"] == "one GPU"
    seen.clear()
    load_model(folder, "fp32", device="cuda:1")
    assert seen["device_map"] == {"": "cuda:1"}
    seen.clear()
    monkeypatch.setattr(loading, "weights_bytes", lambda *a, **k: 12 * 2**30)  # > 10 GiB free
    lm = load_model(folder, "fp32", device="cuda")
    assert seen["device_map"] == "auto" and "max_memory" not in seen
    assert "do not fit one GPU" in lm.info["device"]["placement"]
    seen.clear()
    lm = load_model(folder, "fp32", device="auto", max_memory="9GiB")
    assert seen["device_map"] == "auto" and seen["max_memory"] == {0: "9GiB", 1: "9GiB"}
    assert lm.info["device"]["max_memory"] == {"0": "9GiB", "1": "9GiB"}
    seen.clear()
    load_model(folder, "fp32", device="cpu", max_memory="9GiB")  # CPU: a plain load
    assert "device_map" not in seen and "max_memory" not in seen


def test_int8_placement(tiny_models, fake_cuda, monkeypatch):
    from emogeom.models import load_model, precision

    monkeypatch.setattr(precision, "bitsandbytes_importable", lambda: False)
    seen = _capture_from_pretrained(monkeypatch)
    folder = str(tiny_models["llama"])
    lm = load_model(folder, "int8", device="auto")  # no bitsandbytes: the CPU int8 path
    assert "device_map" not in seen and lm.info["quantisation"]["path"] == precision.INT8_CPU
    with pytest.raises(EmogeomError, match="int8 there needs bitsandbytes"):
        load_model(folder, "int8", device="cuda")
    with pytest.raises(EmogeomError, match="int4 has no CPU path"):
        load_model(folder, "int4", device="auto")
    assert precision.quantisation_path("int8", "cpu") == precision.INT8_CPU
    monkeypatch.setattr(precision, "bitsandbytes_importable", lambda: True)
    assert precision.quantisation_path("int8", "cuda:0") == precision.INT8_BNB
    assert precision.quantisation_path("int8", "cpu") == precision.INT8_CPU
    assert precision.precision_device("int8", "cuda", "cuda") == "cuda"


def test_cpu_load_records_the_device(tiny_models, no_gpu):
    from emogeom.models import load_model

    lm = load_model(str(tiny_models["qwen2"]), "fp32")
    assert lm.info["device"] == {"requested": "auto", "placement": "cpu", "devices": ["cpu"],
                                 "input_device": "cpu"}
    assert devices.input_device(lm.model) == torch.device("cpu")


# ---- extraction: device_map load, OOM halving ----------------------------------------------------


def test_explicit_device_map_gives_the_same_states(tiny_models, sample_texts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emogeom.extraction import extract_pooled
    from emogeom.models import load_model, wrap

    folder = tiny_models["gemma3"]
    plain = load_model(str(folder), "fp32", device="cpu")
    mapped = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map="cpu")
    # transformers 4 records a one-device map in hf_device_map; 5 places it and records none.
    assert {p.device.type for p in mapped.parameters()} == {"cpu"}
    lm = wrap(mapped, AutoTokenizer.from_pretrained(folder))
    assert lm.info["device"]["devices"] == ["cpu"]
    for pooling in ("mean", "last"):
        a = extract_pooled(plain.model, plain.tokenizer, sample_texts, pooling)
        b = extract_pooled(lm.model, lm.tokenizer, sample_texts, pooling)
        assert np.array_equal(a, b)


def _oom_above(model, limit: int, error):
    """Make the decoder's forward raise ``error`` for a batch of more than ``limit`` tokens;
    returns the list of batch sizes (tokens) it saw."""
    from emogeom.extraction.pooled import backbone

    base = backbone(model)
    forward = base.forward
    seen: list[int] = []

    def wrapped(*args, **kwargs):
        tokens = kwargs["input_ids"].numel()
        seen.append(tokens)
        if tokens > limit:
            raise error
        return forward(*args, **kwargs)

    base.forward = wrapped
    return seen


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)"),
])
def test_oom_halves_the_budget_and_gives_the_same_states(tiny_models, error):
    from emogeom.extraction import extract_pooled
    from emogeom.models import load_model
    from emogeom.stimuli import load_corpus

    texts = load_corpus(per_emotion=2).texts
    lm = load_model(str(tiny_models["llama"]), "fp32", device="cpu")
    budget = 4096
    plain_stats: dict = {}
    plain = extract_pooled(lm.model, lm.tokenizer, texts, ("last", "mean"),
                           max_batch_tokens=budget, stats=plain_stats)
    assert plain_stats == {"max_batch_tokens_used": budget, "oom_halvings": 0,
                           "truncated": 0}

    limit = 1000  # with these texts the OOM strikes only the first, longest batches
    seen = _oom_above(lm.model, limit, error)
    notes: list[str] = []
    stats: dict = {}
    done: list[int] = []
    got = extract_pooled(lm.model, lm.tokenizer, texts, ("last", "mean"),
                         max_batch_tokens=budget, on_note=notes.append, stats=stats,
                         on_batch=done.append)
    assert stats["oom_halvings"] >= 2 and len(notes) == stats["oom_halvings"]
    assert stats["max_batch_tokens_used"] <= limit
    assert notes[0].startswith(f"CPU out of memory at {budget:,} tokens per batch; retrying at ")
    assert all("\n" not in n for n in notes)
    assert max(seen) > limit and sum(done) == len(texts)
    # Same states as the plain run (numerically), and bit for bit the plain run at the budget
    # that worked (the OOM struck the first, longest batch, so every batch was re-made).
    for k in plain:
        np.testing.assert_allclose(got[k], plain[k], rtol=1e-5, atol=1e-5)
    at_used = extract_pooled(lm.model, lm.tokenizer, texts, ("last", "mean"),
                             max_batch_tokens=stats["max_batch_tokens_used"])
    assert all(np.array_equal(got[k], at_used[k]) for k in got)


def test_oom_on_one_text_and_other_errors(tiny_models, sample_texts):
    from emogeom.extraction import extract_pooled
    from emogeom.models import load_model

    lm = load_model(str(tiny_models["qwen2"]), "fp32", device="cpu")
    _oom_above(lm.model, 1, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(EmogeomError, match="out of memory on cpu on a single text"):
        extract_pooled(lm.model, lm.tokenizer, sample_texts, "mean")
    lm = load_model(str(tiny_models["qwen2"]), "fp32", device="cpu")
    _oom_above(lm.model, 1, RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        extract_pooled(lm.model, lm.tokenizer, sample_texts, "mean")


def test_generation_mode_reads_through_the_same_oom_path(tiny_models, sample_texts):
    from emogeom.extraction.generation import extract_generated
    from emogeom.models import load_model

    lm = load_model(str(tiny_models["llama"]), "fp32", device="cpu")
    seqs = [lm.tokenizer(t)["input_ids"] for t in sample_texts]
    starts = [max(1, len(s) // 2) for s in seqs]
    plain = extract_generated(lm.model, 0, seqs, starts, 4096)
    _oom_above(lm.model, 200, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    stats: dict = {}
    got = extract_generated(lm.model, 0, seqs, starts, 4096, stats=stats)
    assert stats["oom_halvings"] >= 1
    for k in plain:
        np.testing.assert_allclose(got[k], plain[k], rtol=1e-5, atol=1e-5)


# ---- executors -----------------------------------------------------------------------------------


def test_worker_gpu_round_robin():
    assert [devices.worker_gpu(i, ["0", "1"]) for i in range(5)] == ["0", "1", "0", "1", "0"]
    assert [devices.worker_gpu(i, ["2", "5", "7"]) for i in range(3)] == ["2", "5", "7"]
    assert devices.worker_gpu(0, []) is None


def test_visible_gpus(fake_cuda, monkeypatch):
    assert devices.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert devices.visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.visible_gpus() == []


def test_visible_gpus_without_cuda(no_gpu, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_gpus() == []


def test_pin_worker_sets_its_gpu(monkeypatch):
    from emogeom.study.executors import pin_worker

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    slots: queue.Queue = queue.Queue()
    slots.put("1")
    pin_worker(slots)
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert os.environ[devices.DEVICE_ENV] == "cuda"
    slots.put(None)  # no GPU for this worker: nothing changes
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv(devices.DEVICE_ENV)
    pin_worker(slots)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and devices.DEVICE_ENV not in os.environ


def test_ray_task_options():
    from emogeom.study.executors import ray_task_options

    assert ray_task_options(1, 0) == {"num_cpus": 1, "num_gpus": 0, "max_retries": 0}
    opts = ray_task_options(2, 1)
    assert opts["num_gpus"] == 1
    assert opts["runtime_env"] == {"env_vars": {devices.DEVICE_ENV: "cuda"}}


def test_local_executor_pins_workers(fake_cuda, monkeypatch):
    """With GPUs, the pool gets an initializer and one GPU slot per worker."""
    from emogeom.study import executors

    made: dict = {}

    class FakePool:
        def __init__(self, max_workers, mp_context, **kwargs):
            made.update(kwargs, max_workers=max_workers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, *args):
            raise StopIteration  # the pool was made: that is all this test needs

    monkeypatch.setattr(executors, "ProcessPoolExecutor", FakePool)
    with pytest.raises(StopIteration):
        executors.run_local([("a", None, None), ("b", None, None)], None, None, jobs=3)
    assert made["initializer"] is executors.pin_worker and made["max_workers"] == 3
    slots = made["initargs"][0]
    assert [slots.get(timeout=5) for _ in range(3)] == ["0", "1", "0"]


# ---- every command that loads a model takes --device --------------------------------------------


@pytest.mark.parametrize("argv", [
    ["doctor"],
    ["corpus", "generate", "--out", "{tmp}/c.jsonl"],
    ["steer", "--out", "{tmp}/steer"],
    ["behave", "--out", "{tmp}/behave"],
    ["precision", "--out", "{tmp}/precision"],
    ["decompose", "--out", "{tmp}/decompose"],
    ["sensitivity", "--out", "{tmp}/sensitivity"],
    ["run", "--out", "{tmp}/run"],
])
def test_every_command_takes_device(argv, tiny_models, tmp_path, no_gpu):
    from typer.testing import CliRunner

    from emogeom.cli import app

    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    args += ["--model", str(tiny_models["gpt2"]), "--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert lines == ["error: --device cuda: no CUDA device is visible here "
                     "(torch.cuda.is_available() is False); use --device cpu or auto"]
    assert not (tmp_path / "run").exists()


def test_doctor_on_cpu_names_the_device(tiny_models, no_gpu):
    from typer.testing import CliRunner

    from emogeom.cli import app

    result = CliRunner().invoke(app, ["doctor", "--model", str(tiny_models["qwen2"]),
                                      "--per-emotion", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "on cpu" in result.output and "PASS" in result.output
