#!/usr/bin/env bash
# The unit-test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (clang), run by ctest.
# The same folder, build-san/, holds the libFuzzer harnesses (scripts/fuzz.sh).
#
#   scripts/sanitize.sh                  # every test
#   scripts/sanitize.sh -L 'io|interop'  # arguments go to ctest (a subset by label or -R regex)
#   scripts/sanitize.sh --build-only     # configure and build, run nothing
#   scripts/sanitize.sh --readers        # the CI subset: the interop and io suites (the readers of
#                                        # outside data: torch files, pickles, checkpoints, images,
#                                        # slides, HDF5 bags, IDX and npm digits), built alone
#
# Needs clang and libclang-rt-14-dev (scripts/setup.sh --sanitize installs them). IPS_SANITIZE_JOBS
# sets the build's parallelism (default: all cores). Leaks are errors (LeakSanitizer), except the
# third-party ones listed in fuzz/lsan.supp; so is any UB (-fno-sanitize-recover).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-san
if [ ! -f "$build/CMakeCache.txt" ]; then
  # -O1 and line tables: the usual sanitizer build, and half the compile time of -O2 -g.
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DIPS_FUZZ=ON -DIPS_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG"
fi
if [ "${1:-}" = "--build-only" ]; then
  shift
  cmake --build "$build" --parallel "${IPS_SANITIZE_JOBS:-$(nproc)}" "$@"
  exit 0
fi
tests=(ips_engine_tests ips_interop_tests ips_io_tests ips_data_tests ips_run_tests ips_cli_tests ips)
if [ "${1:-}" = "--readers" ]; then
  shift
  tests=(ips_interop_tests ips_io_tests)
  set -- -L '^(interop|io)$' "$@"
fi
cmake --build "$build" --target "${tests[@]}" --parallel "${IPS_SANITIZE_JOBS:-$(nproc)}"

symbolizer=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1${symbolizer:+:external_symbolizer_path=$symbolizer}}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}"
cd "$build"
# Instrumented code runs 2-5 times slower: a longer per-test limit than the plain suite's.
ctest --output-on-failure --timeout 1800 -j "$(nproc)" "$@"
