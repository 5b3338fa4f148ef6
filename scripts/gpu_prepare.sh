#!/usr/bin/env bash
# Run here (Debian, with the registries) before handing the tree to a GPU machine, which reaches no
# registry: puts into .gpu/ (ignored) what scripts/bench_gpu.sh builds ours with there, and checks
# that the reference is checked out in .ref/ips (ignored). Carry both: carry [".gpu", ".ref"].
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu
# yaml-cpp as source: the GPU machine's PyTorch may use the other libstdc++ string ABI than
# Debian's binary package, so bench_gpu.sh compiles it there with PyTorch's setting.
yaml=.gpu/yaml-cpp_0.7.0+dfsg.orig.tar.xz
if [ ! -f "$yaml" ]; then
  curl -fsSL -o "$yaml" "http://deb.debian.org/debian/pool/main/y/yaml-cpp/yaml-cpp_0.7.0+dfsg.orig.tar.xz"
fi
echo "dc63708605404e0b963e0ca3a9619d1c8270eda2839603e6fa0384e5e51e5312  $yaml" | sha256sum -c --quiet
# Header-only libraries (with their CMake package files) from Debian's packages.
if [ ! -d .gpu/prefix/usr/include/nlohmann ] || [ ! -d .gpu/prefix/usr/include/CLI ]; then
  (cd .gpu && apt-get download nlohmann-json3-dev libcli11-dev >/dev/null)
  for deb in .gpu/*.deb; do dpkg -x "$deb" .gpu/prefix; done
  rm -f .gpu/*.deb
fi
if [ ! -f .ref/ips/architecture/ips_net.py ]; then
  echo "gpu_prepare: the reference is missing: clone https://github.com/benbergner/ips into .ref/ips" >&2
  exit 1
fi
du -sh .gpu .ref | tr '\n' ' '; echo "ready: carry .gpu and .ref"
