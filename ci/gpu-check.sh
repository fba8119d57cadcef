#!/usr/bin/env bash
# One-shot check of the a2mamba-ops CUDA backend on a GPU machine.
#
#   OUT=/some/dir bash ci/gpu-check.sh        (run from the repository root)
#
# Needs: torch with CUDA, nvcc, cmake, ninja, pybind11, scikit-build-core, pytest
# (no internet, no nox, no asv). Steps, each logged to $OUT/<step>.log; a failing
# step does not stop the next ones, the exit status is the number of failed steps:
#   1. nvidia-smi
#   2. build + install a2mamba-ops with the CUDA kernels (sm_90)
#   3. python -m a2mamba_ops (what was built)
#   4. pytest packages/a2mamba-ops/tests  (junit XML in $OUT/pytest.xml)
#   4b. pytest packages/a2mamba-models/tests/test_models_cuda.py: the models on the GPU (the
#      reference implementation's float64 logits, float64 against the CPU, autocast, channels_last)
#   5. python -m benchmarks.tools.gpu_kernels: bandwidth, % of copy bandwidth, speedup vs reference
#   5b. python -m benchmarks.tools.model_throughput: img/s and peak memory of every model (plain JSON)
#   6. compute-sanitizer memcheck on a small case of every op (if the tool exists;
#      racecheck too with A2MAMBA_RACECHECK=1)
# Every step has a timeout; together they stay under DEADLINE_S (default 450 s)
# so that the whole script finishes within 8 minutes on an H100.
set -u

OUT="${OUT:-${1:-gpu-check-out}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DEADLINE_S="${DEADLINE_S:-450}"
START=$(date +%s)
FAILED=()
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

# run_step NAME CAP_SECONDS COMMAND...: run with min(CAP, time left) as timeout.
run_step() {
  local name="$1" cap="$2"
  shift 2
  local left=$((DEADLINE_S - ($(date +%s) - START)))
  local limit=$((cap < left ? cap : left))
  if ((limit < 5)); then
    echo "== $name: SKIPPED (no time left)" | tee -a "$SUMMARY"
    FAILED+=("$name")
    return
  fi
  echo "== $name (timeout ${limit}s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  tail -n 25 "$OUT/$name.log"
  if ((rc == 0)); then
    echo "== $name: ok (${dt}s)" | tee -a "$SUMMARY"
  else
    [[ $rc == 124 || $rc == 137 ]] && rc="$rc (timed out)"
    echo "== $name: FAILED rc=$rc (${dt}s), log: $OUT/$name.log" | tee -a "$SUMMARY"
    FAILED+=("$name")
  fi
}

PY="${PYTHON:-python}"
export A2MAMBA_CUDA=ON TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
export PYTHONUNBUFFERED=1

run_step nvidia-smi 20 nvidia-smi

run_step build 240 "$PY" -m pip install --no-build-isolation --no-deps -v ./packages/a2mamba-ops

run_step info 60 "$PY" -m a2mamba_ops

# test_cuda.py first (pytest drops the duplicate), so a timeout still leaves its results.
run_step pytest 150 "$PY" -m pytest packages/a2mamba-ops/tests/test_cuda.py packages/a2mamba-ops/tests \
  -ra -p no:cacheprovider --junitxml="$OUT/pytest.xml"

MODELS_PATH="$PWD/packages/a2mamba-models/src:$PWD/packages/a2mamba-train/src"
run_step pytest-models 120 env PYTHONPATH="$MODELS_PATH" "$PY" -m pytest packages/a2mamba-models/tests/test_models_cuda.py \
  -ra -p no:cacheprovider --junitxml="$OUT/pytest-models.xml"

run_step bench 150 "$PY" -m benchmarks.tools.gpu_kernels --out "$OUT"

# Model throughput (the asv `models` suite's GPU settings, without asv): model_throughput.json/.md.
run_step models 240 env PYTHONPATH="$MODELS_PATH" \
  "$PY" -m benchmarks.tools.model_throughput --out "$OUT" --device cuda --batch 128 --amp

SANITIZER="$(command -v compute-sanitizer || true)"
[[ -z "$SANITIZER" && -x /usr/local/cuda/bin/compute-sanitizer ]] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
if [[ -n "$SANITIZER" ]]; then
  cat >"$OUT/sanitize_ops.py" <<'PYEOF'
# Small case of every op, forward and backward, in float32 and bfloat16, for compute-sanitizer.
import torch

from a2mamba_ops import na2d_av, na2d_qk, selective_scan_state, use_backend

torch.manual_seed(0)
with use_backend("cuda"):
    for dtype in (torch.float32, torch.bfloat16):
        # 11 x 13 map, kernel 5 x 3, dilation (2, 3): unequal dilation groups and partial tiles
        q, k, v = (torch.randn(2, 2, 11, 13, 20, device="cuda").to(dtype).requires_grad_() for _ in range(3))
        rpb = torch.randn(2, 9, 5, device="cuda").to(dtype).requires_grad_()
        attn = na2d_qk(q, k, (5, 3), (2, 3), rpb=rpb)
        out = na2d_av(attn.float().softmax(-1).to(dtype), v, (5, 3), (2, 3))
        out.float().sum().backward()
        u = torch.randn(3, 13, 77, device="cuda").to(dtype).requires_grad_()
        delta = torch.randn(3, 13, 77, device="cuda").to(dtype).requires_grad_()
        A = -torch.rand(13, 2, device="cuda").requires_grad_()
        B = torch.randn(3, 1, 2, 77, device="cuda").to(dtype).requires_grad_()
        bias = torch.randn(13, device="cuda").requires_grad_()
        selective_scan_state(u, delta, A, B, bias).sum().backward()
        torch.use_deterministic_algorithms(True)
        selective_scan_state(u, delta, A, B, bias).sum().backward()
        torch.use_deterministic_algorithms(False)
torch.cuda.synchronize()
print("sanitizer cases ran")
PYEOF
  run_step memcheck 90 "$SANITIZER" --tool memcheck --error-exitcode 1 --target-processes all \
    "$PY" "$OUT/sanitize_ops.py"
  if [[ "${A2MAMBA_RACECHECK:-0}" == 1 ]]; then
    run_step racecheck 120 "$SANITIZER" --tool racecheck --error-exitcode 1 "$PY" "$OUT/sanitize_ops.py"
  fi
else
  echo "== memcheck: skipped (compute-sanitizer not found)" | tee -a "$SUMMARY"
fi

echo "== total $(($(date +%s) - START))s" | tee -a "$SUMMARY"
if ((${#FAILED[@]})); then
  echo "== failed steps: ${FAILED[*]}" | tee -a "$SUMMARY"
fi
exit "${#FAILED[@]}"
