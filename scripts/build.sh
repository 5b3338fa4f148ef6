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
# The Python module (`import ips`, docs/PYTHON.md), against the Python whose torch is this libtorch:
# Debian's /usr/bin/python3 with python3-torch (a pyenv python3 may come first on PATH), or with
# `pytorch` the python3 that imports it. Without one that imports torch, the rest builds alone.
py=${IPS_TORCH_PYTHON:-/usr/bin/python3}
[ "$flavour" = pytorch ] && py=$(command -v python3)
configure=false
[ -f build/CMakeCache.txt ] || configure=true
if "$py" -c 'import torch' 2>/dev/null; then
  extra+=(-DIPS_PYTHON=ON -DPython3_EXECUTABLE="$py")
  # A build folder configured before the module existed is configured again, with it.
  grep -q '^IPS_PYTHON:BOOL=' build/CMakeCache.txt 2>/dev/null || configure=true
else
  echo "build.sh: $py cannot import torch: building without the Python module (install python3-torch)" >&2
fi
if $configure; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" "$@"
fi
cmake --build build --parallel "$(nproc)"
