#!/usr/bin/env bash
# Configures and builds ips into build/ (the CLI is build/ips). Extra arguments go to cmake.
# Builds against the libtorch scripts/setup.sh chose (build/torch-flavour): Debian's, or with
# `pytorch` the one inside the installed PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
flavour=$(cat build/torch-flavour 2>/dev/null || echo debian)
extra=()
if [ "$flavour" = pytorch ]; then
  prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  # Debian's yaml-cpp, libvips and GoogleTest use the C++11 string ABI; a PyTorch built with the
  # old one cannot link with them (PyTorch's own wheels use the new ABI from 2.7 on).
  if [ "$abi" != 1 ]; then
    echo "build.sh: this PyTorch uses the pre-C++11 string ABI; use PyTorch >= 2.7 or --torch debian|cuda" >&2
    exit 1
  fi
  extra=(-DCMAKE_PREFIX_PATH="$prefix")
fi
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" "$@"
fi
cmake --build build --parallel "$(nproc)"
