#!/usr/bin/env bash
# The GPU check of issue 16, part 7, prepared for the day a GPU is lent. About 10 minutes on
# one GPU at most (every step has a timeout, the whole run a budget); nothing from a hub: only
# the two embedded models (smollm2-135m-instruct, gemma3-270m) and a randomly initialised
# model with the shape of Llama-3.2-1B (benchmarks/scale_extract.py).
#
# Needs: the project's .venv with a CUDA build of torch (and bitsandbytes for the int8/NF4
# steps), on a machine with a CUDA GPU. It also needs the device flags of issue 16 part 3
# (`--device cuda` on `emogeom doctor`, `emogeom run` and `emogeom study run`, `device:` in a
# study file), which another engineer is adding to the CLI; where a flag is missing the step
# FAILs with "No such option" (the study step passes `--device` only where `study run` has it).
#
# Steps (each continues past failures, which are marked FAIL in the table):
#   1. environment: GPU, driver, CUDA, torch, transformers, bitsandbytes; embedded
#      models converted and cached
#   2. emogeom doctor --device cuda at fp32 / bf16 / fp16 (fast path vs HF on the GPU)
#   3. GPU extraction at fp32 / bf16 / fp16 against the CPU fp32 extraction, both models
#   4. extraction speed at bf16 / fp16 on the whole corpus, both embedded models
#   5. extraction speed of the Llama-3.2-1B-shaped random model at bf16 / fp16
#   6. the quickstart study on the GPU
#   7. bitsandbytes paths: emogeom run --dtype int8 (LLM.int8) and --dtype int4 (NF4)
#   8. one summary table (also written to $OUT/summary.md)
#
# Usage: benchmarks/gpu_check.sh [OUT_DIR]      (env: PY, EMOGEOM, BUDGET seconds, default 570)
# Exit status: 0 when every step passed, 1 otherwise.

set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PY:-.venv/bin/python}
EMOGEOM=${EMOGEOM:-.venv/bin/emogeom}
BUDGET=${BUDGET:-570}
OUT=${1:-$(mktemp -d -t emogeom-gpu-check.XXXXXX)}
mkdir -p "$OUT/logs"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
START=$SECONDS

ROWS=()   # "name|status|seconds|note"

record() { ROWS+=("$1|$2|$3|$4"); }

# step NAME TIMEOUT CMD...: run CMD with a timeout (capped by what is left of BUDGET), log to
# $OUT/logs, record PASS (exit 0) or FAIL; every "RESULT name STATUS detail" line that the
# command prints becomes its own row; a "scale: ..." line becomes the note.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 15)); then
        record "$name" SKIP 0 "time budget (${BUDGET}s) spent"
        return
    fi
    ((limit > left)) && limit=$left
    local log
    log="$OUT/logs/$(printf '%02d' "${#ROWS[@]}")-${name//[^A-Za-z0-9._-]/_}.log"
    echo "== $name (timeout ${limit}s): $*"
    local t0=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    local took=$((SECONDS - t0)) status note
    if ((rc == 0)); then status=PASS; else status=FAIL; fi
    if ((rc == 124 || rc == 137)); then
        note="timed out after ${limit}s"
    elif grep -q '^scale: ' "$log"; then
        note=$(grep '^scale: ' "$log" | tail -n 1)
    elif grep -q '^RESULT ' "$log"; then
        note="$(grep -c '^RESULT .* PASS ' "$log") of $(grep -c '^RESULT ' "$log") checks PASS"
    else
        note=$(grep -v '^RESULT ' "$log" | grep -v '^\s*$' | tail -n 1 | cut -c1-110)
        ((rc != 0)) && note="rc $rc: $note"
    fi
    record "$name" "$status" "$took" "$note"
    local line rname rstatus rdetail r1 r2 r3
    while IFS= read -r line; do
        line=${line#RESULT }
        # "gpu-vs-cpu-fp32 MODEL DTYPE STATUS detail" / "speed MODEL DTYPE STATUS detail"
        read -r r1 r2 r3 rstatus rdetail <<<"$line"
        rname="  $r1 $r2 $r3"
        record "$rname" "$rstatus" "" "$rdetail"
    done < <(grep '^RESULT ' "$log")
    tail -n 3 "$log"
}

# 1. environment (fails, and so marks the run, when there is no CUDA device)
step env 30 "$PY" -c '
import torch, transformers
assert torch.cuda.is_available(), "no CUDA device visible to torch"
p = torch.cuda.get_device_properties(0)
try:
    import bitsandbytes as bnb; b = bnb.__version__
except Exception as e:
    b = f"not importable ({type(e).__name__})"
print(f"{p.name} {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
      f"torch {torch.__version__}, transformers {transformers.__version__}, bitsandbytes {b}")
'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    >"$OUT/logs/nvidia-smi.txt" 2>&1 || true

# 1b. convert/cache both embedded models once (GGUF -> HF folder), so later timeouts measure work
step "cache embedded models" 90 "$PY" -c '
from emogeom.models import load_model
for m in ("smollm2-135m-instruct", "gemma3-270m"):
    try:
        lm = load_model(m, "fp32", device="cpu")
    except TypeError:
        lm = load_model(m, "fp32")
    print(m, lm.info.get("loaded_from"))
'

# 2. doctor on the GPU (its own reference, HF output_hidden_states, also on the GPU)
for dt in fp32 bf16 fp16; do
    step "doctor smollm2 $dt" 40 "$EMOGEOM" doctor --device cuda --dtype "$dt" \
        -m smollm2-135m-instruct --per-emotion 3
done

# 3. GPU at each dtype vs CPU fp32 (doctor's tolerances); gemma3 fp16 may overflow: a FAIL
#    naming the layer is then the expected, documented behaviour
step "gpu-vs-cpu smollm2" 45 "$PY" benchmarks/gpu_helpers.py compare \
    --model smollm2-135m-instruct --dtypes fp32,bf16,fp16 --device cuda
step "gpu-vs-cpu gemma3" 45 "$PY" benchmarks/gpu_helpers.py compare \
    --model gemma3-270m --dtypes fp32,bf16,fp16 --device cuda

# 4. extraction speed, embedded models, whole corpus
step "speed smollm2" 40 "$PY" benchmarks/gpu_helpers.py speed \
    --model smollm2-135m-instruct --dtypes bf16,fp16 --device cuda
step "speed gemma3" 40 "$PY" benchmarks/gpu_helpers.py speed \
    --model gemma3-270m --dtypes bf16,fp16 --device cuda

# 5. the Llama-3.2-1B-shaped random model, whole corpus
for dt in bf16 fp16; do
    step "scale llama-3.2-1b $dt" 60 "$PY" benchmarks/scale_extract.py \
        --shape llama-3.2-1b --texts 420 --dtype "$dt" --device cuda
done

# 6. the quickstart study on the GPU, written under $OUT: the study file's `device: cuda`
#    (issue 16 part 3), plus `--device cuda` where `emogeom study run` has that flag
sed -e "s#^out: .*#out: $OUT/quickstart#" studies/quickstart.yaml >"$OUT/quickstart.yaml"
printf 'device: cuda\n' >>"$OUT/quickstart.yaml"
STUDY_DEVICE=()
if "$EMOGEOM" study run --help 2>/dev/null | grep -q -- '--device'; then
    STUDY_DEVICE=(--device cuda)
fi
step "study quickstart" 120 "$EMOGEOM" study run "$OUT/quickstart.yaml" "${STUDY_DEVICE[@]}"

# 7. bitsandbytes: LLM.int8 and NF4 (int4) on the GPU
step "run int8 (LLM.int8)" 50 "$EMOGEOM" run --dtype int8 -m smollm2-135m-instruct \
    --per-emotion 3 --device cuda --out "$OUT/run-int8"
step "run int4 (NF4)" 50 "$EMOGEOM" run --dtype int4 -m smollm2-135m-instruct \
    --per-emotion 3 --device cuda --out "$OUT/run-int4"

# 8. summary
{
    echo "| step | status | s | note |"
    echo "|---|---|---|---|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r n s t note <<<"$row"
        echo "| $n | $s | $t | ${note//|//} |"
    done
} >"$OUT/summary.md"
echo
echo "GPU check: $((SECONDS - START)) s in all; logs and summary in $OUT"
cat "$OUT/summary.md"
if grep -qE '\| (FAIL|SKIP) \|' "$OUT/summary.md"; then exit 1; fi
exit 0
