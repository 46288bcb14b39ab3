"""Does an exported llama.cpp control vector move SmolLM2 as emogeom's own steering does?

Exports an emotion vector of a saved SmolLM2 geometry with ``write_control_vector`` (scale 1 in
residual-norm units, so llama.cpp's strength S is emogeom's alpha), loads it into llama.cpp
(llama-cpp-python) on the embedded SmolLM2 Q4_1 GGUF, and compares the next-token distribution
shift with ``emogeom.steering.hooks.steer`` on the same weights (de-quantised, fp32) at the same
alpha, on a few raw prompts (the same token ids go to both engines).

Two parts:
1. file → llama.cpp vs emogeom steering, per alpha: KL(steered ‖ base) in each engine, cosine
   of the two log-prob shifts over the vocabulary, agreement of the steered top-1 token.
2. placement: the same delta added at block b in HF (forward hook) and at llama.cpp buffer
   slot b (offset n_embd × (b − 1), what ``direction.b`` loads into), b ∈ {L−1, L, L+1}:
   a 3 × 3 cosine matrix whose diagonal should dominate if llama.cpp's il = HF block index.

The binding exposes ``llama_set_adapter_cvec`` but not llama.cpp's ``common`` file loader, so
``_cvec_buffer`` rebuilds the loader's buffer from the GGUF exactly as
``common_control_vector_load_one`` does (``direction.N`` × strength at offset n_embd × (N − 1)).

Run (llama_cpp importable, e.g. PYTHONPATH=/tmp/lcp-site):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/llamacpp_control_vector.py [--job FOLDER]
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS = ("The weather today is", "I opened the letter and felt", "She looked at me and said",
           "My day at work was", "When the phone rang, he", "The meeting ended and everyone")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-probabilities of a logit vector (float64)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def _kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """KL(p ‖ q) from log-probabilities."""
    return float((np.exp(p_log) * (p_log - q_log)).sum())


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors (0 when one is zero)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0


def _cvec_buffer(path: Path, strength: float) -> tuple[np.ndarray, int]:
    """The flat buffer llama.cpp's common_control_vector_load_one builds from a file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    rows = {int(t.name.split(".", 1)[1]): np.array(t.data, dtype=np.float32)
            for t in reader.tensors if t.name.startswith("direction.")}
    n_embd = len(next(iter(rows.values())))
    buf = np.zeros(n_embd * max(rows), dtype=np.float32)
    for n, v in rows.items():
        buf[n_embd * (n - 1): n_embd * n] += v * strength
    return buf, n_embd


def _slot_buffer(delta: np.ndarray, block: int) -> np.ndarray:
    """A buffer with ``delta`` in the slot llama.cpp applies at graph layer ``block``."""
    d = delta.shape[0]
    buf = np.zeros(d * block, dtype=np.float32)
    buf[d * (block - 1): d * block] = delta
    return buf


def _llamacpp_logprobs(gguf_path: Path, prompts: list[list[int]], buf: np.ndarray | None,
                       n_embd: int) -> list[np.ndarray]:
    """Next-token log-probs of each prompt in llama.cpp, with the control-vector buffer."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=256, n_threads=2, logits_all=True,
                          verbose=False)
    if buf is not None:
        n_layer = llama_cpp.llama_model_n_layer(llm.model)
        buf = np.ascontiguousarray(buf, dtype=np.float32)
        err = llama_cpp.llama_set_adapter_cvec(
            llm.ctx, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), buf.size, n_embd, 1,
            n_layer)
        if err:
            raise RuntimeError("llama_set_adapter_cvec failed")
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        out.append(_log_softmax(llm.scores[llm.n_tokens - 1]))
    llm.close()
    return out


def _hf_logprobs(model, prompts: list[list[int]]) -> list[np.ndarray]:
    """Next-token log-probs of each prompt in the HF model (under any open steering hooks)."""
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            logits = model(torch.tensor([ids])).logits[0, -1]
            out.append(_log_softmax(logits.float().numpy()))
    return out


def _shift_stats(base_a, steer_a, base_b, steer_b) -> dict[str, float]:
    """Mean KL of each engine's shift, cosine of the shifts, steered top-1 agreement."""
    kl_a = [_kl(s, b) for s, b in zip(steer_a, base_a)]
    kl_b = [_kl(s, b) for s, b in zip(steer_b, base_b)]
    cos = [_cos(sa - ba, sb - bb) for sa, ba, sb, bb in zip(steer_a, base_a, steer_b, base_b)]
    top1 = [int(np.argmax(sa) == np.argmax(sb)) for sa, sb in zip(steer_a, steer_b)]
    return {"kl_emogeom": float(np.mean(kl_a)), "kl_llamacpp": float(np.mean(kl_b)),
            "cos_shift": float(np.mean(cos)), "top1_agree": float(np.mean(top1))}


def main() -> None:
    """Run both parts and print a JSON summary."""
    from emogeom.analysis import Geometry
    from emogeom.export.directions import measure_norms, steering_directions
    from emogeom.export.llamacpp import write_control_vector
    from emogeom.models import load_model
    from emogeom.models.embedded import embedded_gguf
    from emogeom.models.loading import cache_dir
    from emogeom.steering.hooks import steer
    from emogeom.steering.vectors import default_layer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    jobs = sorted(glob.glob("out/quickstart/jobs/SmolLM2-135M-Instruct-fp32-default-*"))
    ap.add_argument("--job", default=jobs[0] if jobs else None, help="saved SmolLM2 geometry")
    ap.add_argument("--emotion", default="hostile")
    ap.add_argument("--layer", type=int, default=None, help="default: round(0.6 × layers)")
    ap.add_argument("--strengths", default="0.1,0.2,0.4,0.8")
    args = ap.parse_args()
    t0 = time.perf_counter()
    g = Geometry.load(args.job)
    layer = args.layer if args.layer is not None else default_layer(g.n_layers)
    alphas = [float(x) for x in args.strengths.split(",")]
    lm = load_model(g.model_info["model"], "fp32", device="cpu")
    gguf_path, _ = embedded_gguf("smollm2-135m-instruct", cache_dir())
    prompts = [lm.tokenizer(p, add_special_tokens=True)["input_ids"] for p in PROMPTS]
    norms = measure_norms(lm.model, lm.tokenizer, [layer - 1, layer, layer + 1])
    k = g.emotions.index(args.emotion)

    hf_base = _hf_logprobs(lm.model, prompts)
    cpp_base = _llamacpp_logprobs(gguf_path, prompts, None, 0)
    floor = float(np.mean([_kl(a, b) for a, b in zip(hf_base, cpp_base)]))
    report = {"model": g.model_info["model"], "gguf": gguf_path.name, "emotion": args.emotion,
              "layer": layer, "residual_norm": norms[layer], "prompts": len(PROMPTS),
              "kl_base_hf_vs_llamacpp": floor, "per_alpha": {}, "placement_cos": None}

    with tempfile.TemporaryDirectory() as tmp:
        cvec = Path(tmp) / "cvec.gguf"
        write_control_vector(cvec, g, args.emotion, [layer], scale=1.0, norms=norms)
        for alpha in alphas:
            buf, n_embd = _cvec_buffer(cvec, alpha)
            cpp = _llamacpp_logprobs(gguf_path, prompts, buf, n_embd)
            with steer(lm.model, {layer: g.vectors[layer, k]}, [layer], alpha, norms):
                hf = _hf_logprobs(lm.model, prompts)
            report["per_alpha"][alpha] = _shift_stats(hf_base, hf, cpp_base, cpp)

    alpha = 0.4 if 0.4 in alphas else alphas[-1]
    delta = steering_directions(g, args.emotion, [layer], alpha, norms)[layer]
    blocks = [layer - 1, layer, layer + 1]
    hf_shift, cpp_shift = {}, {}
    for b in blocks:
        with steer(lm.model, {b: delta}, [b], float(np.linalg.norm(delta))):
            hf_shift[b] = _hf_logprobs(lm.model, prompts)
        cpp_shift[b] = _llamacpp_logprobs(gguf_path, prompts, _slot_buffer(delta, b),
                                          delta.shape[0])
    report["placement_alpha"] = alpha
    report["placement_cos"] = {
        f"hf_block_{a}": {f"llamacpp_slot_{b}": float(np.mean([
            _cos(h - hb, c - cb) for h, hb, c, cb in zip(hf_shift[a], hf_base, cpp_shift[b],
                                                          cpp_base)])) for b in blocks}
        for a in blocks}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
