#!/usr/bin/env bash
# nvcc 13.0 and CUTLASS 4.2's headers from PyPI, into a cache outside the repository. The test suite compiles the
# Hopper GEMM kernels' CUDA source with them (no GPU needed to compile); a GPU machine uses its own nvcc.
set -euo pipefail
: "${NVCC_CACHE:?}"
[ -x "$NVCC_CACHE/nvidia/cu13/bin/nvcc" ] && [ -f "$NVCC_CACHE/cutlass_library/source/include/cutlass/cutlass.h" ] && exit 0
mkdir -p "$(dirname "$NVCC_CACHE")"
tmp=$(mktemp -d "$NVCC_CACHE.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "installing nvcc 13.0 and CUTLASS 4.2 headers into $NVCC_CACHE (about 280 MB, once)" >&2
python3 -m pip install -q --disable-pip-version-check --no-deps --target "$tmp" \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 \
  nvidia-cuda-cccl==13.0.85 nvidia-cutlass==4.2.0.0
rm -rf "$NVCC_CACHE"
mv "$tmp" "$NVCC_CACHE"
trap - EXIT
"$NVCC_CACHE/nvidia/cu13/bin/nvcc" --version | tail -1
