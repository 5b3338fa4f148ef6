#!/usr/bin/env bash
# On a GPU machine with PyTorch (CUDA) and nothing else: builds ours against that PyTorch's libtorch
# (engine only: no libvips or HDF5 needed), then runs ours, the reference as published and the tuned
# reference on the same shapes, one process per measurement, and prints the side-by-side table.
#   bash scripts/gpu_prepare.sh          # first, on a machine with the registries
#   OUT=/some/dir bash scripts/bench_gpu.sh [--only ROW ...] [--compile]
# Results: $OUT/<row>.<impl>.json, $OUT/table.md, $OUT/sweep.json (for scripts/bench_plot.py),
# $OUT/card.txt (GPU, driver, PyTorch, CUDA, cuDNN).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
[ -f .gpu/yaml-cpp_0.7.0+dfsg.orig.tar.xz ] || { echo "bench_gpu: run scripts/gpu_prepare.sh first and carry .gpu" >&2; exit 1; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PY" -c 'import sys, torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "python", sys.version.split()[0])'
  "$PY" -c 'import torchvision; print("torchvision", torchvision.__version__)' || echo "torchvision missing: the reference needs it"
  nproc
} | tee "$OUT/card.txt"

TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
GEN=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")
JOBS=$(nproc)

yaml_prefix=$PWD/.gpu/yaml-install-abi$ABI
if [ ! -d "$yaml_prefix" ]; then
  rm -rf .gpu/yaml-src .gpu/yaml-build && mkdir -p .gpu/yaml-src
  tar -xf .gpu/yaml-cpp_0.7.0+dfsg.orig.tar.xz -C .gpu/yaml-src --strip-components=1
  cmake -S .gpu/yaml-src -B .gpu/yaml-build -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DYAML_CPP_BUILD_TESTS=OFF \
    -DYAML_CPP_BUILD_TOOLS=OFF -DYAML_CPP_BUILD_CONTRIB=OFF -DYAML_BUILD_SHARED_LIBS=OFF \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=$ABI" \
    -DCMAKE_INSTALL_PREFIX="$yaml_prefix" >/dev/null
  cmake --build .gpu/yaml-build -j "$JOBS" >/dev/null && cmake --install .gpu/yaml-build >/dev/null
fi

# A pip PyTorch keeps nccl.h in the nvidia-nccl wheel, outside torch's include folder; without it
# the build has no NCCL backend (distributed.cpp checks with __has_include).
nccl_inc=$("$PY" -c 'import os, nvidia.nccl; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2>/dev/null || true)
cxx_flags=""
[ -n "$nccl_inc" ] && [ -f "$nccl_inc/nccl.h" ] && cxx_flags="-isystem $nccl_inc"
cmake -S . -B build-gpu -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DIPS_ENGINE_ONLY=ON -DIPS_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="$cxx_flags" \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$yaml_prefix;$PWD/.gpu/prefix/usr" >"$OUT/cmake.log" 2>&1 \
  || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build build-gpu -j "$JOBS" >"$OUT/build.log" 2>&1 || { grep -m5 -A3 error "$OUT/build.log"; exit 1; }
echo "built build-gpu/ips against $TORCH_PREFIX"

"$PY" scripts/bench_compare.py --profile gpu --out "$OUT" --ips build-gpu/ips --python "$PY" "$@"

# NCCL at world size 1 against the same step without a job: the cost of the data-parallel
# machinery itself (docs/DISTRIBUTED.md; the bar is 3 %). Alternated, 3 rounds each.
for round in 1 2 3; do
  build-gpu/ips bench configs/megapixel_mnist.yaml --device cuda --iters 20 --warmup 3 --json | tail -1 \
    >"$OUT/nccl_ws1_plain_$round.json"
  RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29600 + round)) build-gpu/ips bench configs/megapixel_mnist.yaml \
    --device cuda --dist-backend nccl --iters 20 --warmup 3 --json | tail -1 >"$OUT/nccl_ws1_nccl_$round.json"
done
"$PY" - "$OUT" <<'PY'
import glob, json, statistics, sys
ms = {k: statistics.median(json.load(open(f))["ms_per_batch"] for f in glob.glob(f"{sys.argv[1]}/nccl_ws1_{k}_*.json"))
      for k in ("plain", "nccl")}
print(f"NCCL world size 1: {ms['nccl']:.1f} ms/step against {ms['plain']:.1f} without a job: "
      f"{100 * (ms['nccl'] / ms['plain'] - 1):+.1f} %")
PY
