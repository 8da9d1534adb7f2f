#!/usr/bin/env bash
# CUDA figures for the fused RRDB operator (docs/cpp_ext.md). Run from the repository
# root on a machine with an NVIDIA GPU, a CUDA build of torch and nvcc:
#   bash benchmarks/gpu/run_cpp_ext_cuda.sh [OUT_DIR]        (default: benchmarks/results)
# Writes OUT_DIR/cpp_ext_cuda.md (table), cpp_ext_cuda.json (pytest-benchmark) and
# cpp_ext_cuda_tests.log (the operator's tests, CUDA test included).
set -euo pipefail

out_dir="${1:-benchmarks/results}"
mkdir -p "$out_dir"
export F2N_HOME="${F2N_HOME:-$(mktemp -d)}"
# Compile for the local GPU only (all architectures would take several times longer).
if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  TORCH_CUDA_ARCH_LIST="$(python -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
  export TORCH_CUDA_ARCH_LIST
fi
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

python -c "import f2n" 2>/dev/null || pip install --no-deps --no-build-isolation -e . >/dev/null

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out_dir/cpp_ext_cuda_machine.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out_dir/cpp_ext_cuda_machine.txt"

python -m f2n.cpp_ext build --cuda 2>&1 | tee "$out_dir/cpp_ext_cuda_build.log"
python -m pytest tests/test_cpp_ext.py -q -p no:cacheprovider 2>&1 | tee "$out_dir/cpp_ext_cuda_tests.log"
python benchmarks/pytest_suites/bench_cpp_ext.py --device cuda --rounds 20 --out "$out_dir/cpp_ext_cuda.md"
python -m pytest benchmarks/pytest_suites/bench_cpp_ext.py -q -p no:cacheprovider --benchmark-enable \
  --benchmark-json "$out_dir/cpp_ext_cuda.json" 2>&1 | tail -n 40
