#!/usr/bin/env bash
# Run here (Debian, with the registries) before handing the tree to a GPU machine, which reaches no
# registry: puts into .gpu/ (ignored) what scripts/bench_gpu.sh builds ours with there, and checks
# that the reference is checked out in .ref/ips (ignored). Carry both: carry [".gpu", ".ref"].
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu
# yaml-cpp as source: the GPU machine's PyTorch may use the other libstdc++ string ABI than
# Debian's binary package, so bench_gpu.sh compiles it there with PyTorch's setting.
# Fetched by package name with `apt-get source`: source lists are made from this machine's own
# binary ones (deb822 "Types: deb" -> "deb-src"), in a private apt state, so the system is untouched.
yaml=.gpu/yaml-cpp_0.7.0+dfsg.orig.tar.xz
if [ ! -f "$yaml" ]; then
  state=$(mktemp -d)
  mkdir -p "$state/lists/partial" "$state/sources"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f" >"$state/sources/$(basename "$f")"
  done
  [ -f /etc/apt/sources.list ] && sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$state/sources/list.list"
  apt_opts=(-o APT::Sandbox::User=root -o Dir::Etc::SourceParts="$state/sources" -o Dir::Etc::SourceList=/dev/null -o Dir::State::Lists="$state/lists")
  apt-get "${apt_opts[@]}" update -q >/dev/null
  (cd .gpu && apt-get "${apt_opts[@]}" source --download-only -q yaml-cpp=0.7.0+dfsg-8 >/dev/null)
  rm -rf "$state" .gpu/yaml-cpp_*.dsc .gpu/yaml-cpp_*.debian.tar.*
fi
# The checksum the Debian archive publishes for this tarball: the same bytes wherever it came from.
echo "dc63708605404e0b963e0ca3a9619d1c8270eda2839603e6fa0384e5e51e5312  $yaml" | sha256sum -c --quiet
# Header-only libraries (with their CMake package files) from Debian's packages.
if [ ! -d .gpu/prefix/usr/include/nlohmann ] || [ ! -d .gpu/prefix/usr/include/CLI ]; then
  (cd .gpu && apt-get download nlohmann-json3-dev libcli11-dev >/dev/null)
  for deb in .gpu/*.deb; do dpkg -x "$deb" .gpu/prefix; done
  rm -f .gpu/*.deb
fi
if [ ! -f .ref/ips/architecture/ips_net.py ]; then
  echo "gpu_prepare: the reference is missing: put a clone of benbergner/ips into .ref/ips" >&2
  exit 1
fi
du -sh .gpu .ref | tr '\n' ' '; echo "ready: carry .gpu and .ref"
