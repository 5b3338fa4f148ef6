#!/usr/bin/env bash
# Runs the libFuzzer harnesses of fuzz/ (fuzz/README.md), each for SECONDS on a copy of its seed
# corpus, and prints per harness the executions, executions per second and what it found.
#
#   scripts/fuzz.sh [SECONDS]          # every harness, SECONDS each (default 600)
#   scripts/fuzz.sh 30 config idx      # only these harnesses
#   scripts/fuzz.sh --replay           # regression run, no fuzzing: fuzz/corpus/<h>/ in one go,
#                                      # then every file of fuzz/crashes/<h>/ on its own (with
#                                      # IPS_FUZZ_KNOWN=1: it fails until every finding is fixed)
#
# Builds build-san/ first (clang, -DIPS_FUZZ=ON, shared with scripts/sanitize.sh) when needed;
# IPS_FUZZ_JOBS sets the build's parallelism (default: all cores). Each harness runs in libFuzzer's fork mode, so a crash does not
# end its run: every crashing input (sanitizer report, leak, UB, a broken invariant, a timeout of
# 10 s, more than 4 GiB) lands in build-san/fuzz-work/<harness>/artifacts/ and is replayed once
# to tell whose it is: ours (the first stack frame with a source file is in src/, include/ or
# fuzz/) or third-party (the first frame is in libtorch, HDF5, libvips, ...). Writes
# build-san/fuzz_summary.json (IPS_FUZZ_SUMMARY names another file: two runs side by side).
#
# Exit status: 1 when a harness crashed in our code (or a crash could not be told apart), 0
# otherwise; IPS_FUZZ_STRICT=1 counts third-party crashes too. IPS_FUZZ_KNOWN=1 stops skipping the
# inputs and leaks of known, unfixed findings (fuzz/README.md). A new crash in our code: copy its
# input to fuzz/crashes/<harness>/ (then --replay is its regression test) and report it.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(config idx npm_json torch_file torch_pickle safetensors csv sts feature_bag grid)

seconds=600
replay=false
if [ "${1:-}" = "--replay" ]; then
  replay=true
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${ALL[@]}")
for h in "${harnesses[@]}"; do
  [[ " ${ALL[*]} " == *" $h "* ]] || { echo "fuzz.sh: unknown harness '$h' (known: ${ALL[*]})" >&2; exit 2; }
done

build=build-san
# The same instrumented build folder as the sanitizer test suite (scripts/sanitize.sh configures it).
mkdir -p "$build"
IPS_SANITIZE_JOBS="${IPS_FUZZ_JOBS:-$(nproc)}" flock "$build/.fuzz-build.lock" \
  bash scripts/sanitize.sh --build-only --target fuzz_all
summary=${IPS_FUZZ_SUMMARY:-$build/fuzz_summary.json}

# A regression run exercises the known findings too: that is what their inputs are kept for.
$replay && export IPS_FUZZ_KNOWN=1
work=$build/fuzz-work
mkdir -p "$work"
# Third-party leaks always; leaks of our known, unfixed findings unless IPS_FUZZ_KNOWN=1.
cat fuzz/lsan.supp >"$work/lsan.supp"
[ -n "${IPS_FUZZ_KNOWN:-}" ] || cat fuzz/known.supp >>"$work/lsan.supp"
symbolizer=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
# allocator_may_return_null: a size read from a damaged file that no allocator could serve fails as
# it would outside ASan (NULL from HDF5's malloc, std::bad_alloc from ours), not as an ASan abort;
# -rss_limit_mb still catches every allocation above 4 GiB that would succeed.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:symbolize=1${symbolizer:+:external_symbolizer_path=$symbolizer}}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/$work/lsan.supp:print_suppressions=0}"
export OMP_NUM_THREADS=1

# Whose crash a log shows: "ours", "third-party" or "unknown" (no decisive frame): the first stack
# frame (or UB location) in our sources or in a third-party library decides. For an allocation
# (too large, or leaked) libtorch's allocation path is no one's (torch::empty -> dispatcher ->
# c10::alloc_cpu): the code that asked for the size decides, unless it is libtorch's zip reader.
ours_re="$PWD/(src|include|fuzz)/"
theirs_re='lib(torch|torch_cpu|c10|hdf5[a-z_]*|vips[a-z-]*|glib|gobject|gio|yaml-cpp|z|png[0-9]*|jpeg|tiff|openslide|gomp|openblas[a-z]*|protobuf)[.-]'
torch_alloc_re='lib(torch_cpu|c10)\.so'
torch_zip_re='caffe2::serialize|mz_zip'
classify() {
  if grep -q 'fuzz invariant broken' "$1"; then echo ours; return; fi
  local alloc=false
  grep -qE 'out-of-memory \(malloc|allocation-size-too-big|LeakSanitizer' "$1" && alloc=true
  while IFS= read -r line; do
    if $alloc && [[ "$line" =~ $torch_alloc_re ]] && ! [[ "$line" =~ $torch_zip_re ]]; then continue; fi
    if [[ "$line" =~ $ours_re ]]; then echo ours; return; fi
    if [[ "$line" =~ $theirs_re ]]; then echo third-party; return; fi
  done < <(grep -E '^ +#[0-9]+ |runtime error:' "$1")
  echo unknown
}
# One line of the crash, for the summary.
what() {
  grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-zA-Z -]+[a-z]|runtime error: .*|fuzz invariant broken: .{0,120}' "$1" | head -1 || true
}
json() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

failed=()
results=()
printf '%-13s %10s %8s %8s %s\n' harness executions exec/s new_cov findings
for h in "${harnesses[@]}"; do
  bin=$build/fuzz_$h
  dir=$work/$h
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/triage"
  cp -r fuzz/corpus/"$h"/. "$dir/corpus/"
  flags=(-rss_limit_mb=4096 -timeout=10 -artifact_prefix="$dir/artifacts/")
  [ -f "fuzz/dict/$h.dict" ] && flags+=(-dict="fuzz/dict/$h.dict")
  # Readers that print a warning for every bad row or image: their stderr goes, libFuzzer's stays.
  case "$h" in csv | grid) flags+=(-close_fd_mask=2) ;; esac

  execs=0 rate=0 added=0 rc=0 slow=0
  crashes=()  # files to replay one by one
  start=$(date +%s)
  if $replay; then
    "$bin" "${flags[@]}" "$dir"/corpus/* >"$dir/log" 2>&1 </dev/null || rc=$?
    execs=$(find "$dir/corpus" -type f | wc -l)
    [ "$rc" -eq 0 ] || crashes+=(corpus)
    [ -d "fuzz/crashes/$h" ] && for f in fuzz/crashes/"$h"/*; do [ -f "$f" ] && crashes+=("$f"); done
  else
    "$bin" "${flags[@]}" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
      -max_total_time="$seconds" "$dir/corpus" >"$dir/log" 2>&1 </dev/null || rc=$?
    elapsed=$(($(date +%s) - start))
    last=$(grep -E '^#[0-9]+: cov:' "$dir/log" | tail -1 || true)
    execs=$(sed -nE 's/^#([0-9]+):.*/\1/p' <<<"$last")
    execs=${execs:-0}
    rate=$((execs / (elapsed > 0 ? elapsed : 1)))
    before=$(find fuzz/corpus/"$h" -type f | wc -l)
    added=$(($(find "$dir/corpus" -type f | wc -l) - before))
    # slow-unit-*: an input that ran longer than libFuzzer's report threshold (10 s) but within the
    # timeout; slow is not wrong (a 2349 x 1470 slide in 1 x 1 tiles under ASan): counted, not triaged.
    for f in "$dir"/artifacts/*; do
      [ -f "$f" ] || continue
      case "$(basename "$f")" in slow-unit-*) slow=$((slow + 1)) ;; *) crashes+=("$f") ;; esac
    done
    [ "$rc" -eq 0 ] || [ ${#crashes[@]} -gt 0 ] || crashes+=(run)
  fi

  ours=0 theirs=0 unknown=0 shown=0 details=()
  for c in "${crashes[@]}"; do
    if [ "$c" = corpus ] || [ "$c" = run ]; then
      log=$dir/log
    else
      # Replay each input alone (at most 10 per harness; the rest are listed as unknown).
      shown=$((shown + 1))
      if [ "$shown" -gt 10 ]; then unknown=$((unknown + 1)); continue; fi
      log=$dir/triage/$(basename "$c").log
      "$bin" "${flags[@]}" "$c" >"$log" 2>&1 </dev/null && { [ "$replay" = true ] && continue; } || true
    fi
    who=$(classify "$log")
    case "$who" in ours) ours=$((ours + 1)) ;; third-party) theirs=$((theirs + 1)) ;; *) unknown=$((unknown + 1)) ;; esac
    details+=("{\"input\": \"$(json "$c")\", \"whose\": \"$who\", \"what\": \"$(json "$(what "$log")")\", \"log\": \"$(json "$log")\"}")
  done

  if [ $((ours + unknown + theirs)) -eq 0 ]; then
    finding=none
  else
    finding="ours $ours, third-party $theirs, unknown $unknown (triage logs in $dir/triage/)"
  fi
  if [ $((ours + unknown)) -gt 0 ] || { [ -n "${IPS_FUZZ_STRICT:-}" ] && [ "$theirs" -gt 0 ]; }; then failed+=("$h"); fi
  # Scratch folders of harness processes that crashed (their exit handler never ran).
  for d in /dev/shm/ips-fuzz-* "${TMPDIR:-/tmp}"/ips-fuzz-*; do
    if [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null; then rm -rf "$d"; fi
  done
  [ "$slow" -gt 0 ] && finding="$finding; $slow slow input(s) in $dir/artifacts/"
  printf '%-13s %10s %8s %8s %s\n' "$h" "$execs" "$rate" "$added" "$finding"
  crash_json=$(IFS=,; echo "${details[*]:-}")
  results+=("{\"harness\": \"$h\", \"seconds\": $($replay && echo 0 || echo "$seconds"), \"executions\": $execs, \"exec_per_sec\": $rate, \"new_units\": $added, \"slow_inputs\": $slow, \"crashes_ours\": $ours, \"crashes_third_party\": $theirs, \"crashes_unknown\": $unknown, \"crashes\": [$crash_json]}")
done

{
  echo "{\"mode\": \"$($replay && echo replay || echo fuzz)\", \"harnesses\": ["
  for i in "${!results[@]}"; do
    printf '  %s%s\n' "${results[$i]}" "$([ "$i" -lt $((${#results[@]} - 1)) ] && echo ,)"
  done
  echo "]}"
} >"$summary"
echo "summary: $summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in our code (or not told apart) in: ${failed[*]}" >&2
  exit 1
fi
