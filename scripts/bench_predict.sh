#!/usr/bin/env bash
# Whole-slide prediction timed on this machine: the real Aperio slide, a generated 20,000 x 20,000
# pyramid with every output (viewer included), and with --big a 100,000 x 100,000 pyramid for
# peak memory. The model is the tiny slide config (tests/fixtures/slide_tiny.yaml: 128 x 128 tiles
# of level 0, M = 4) trained for two epochs on two small generated pyramids, one with a needle:
# what is timed is reading, encoding and writing, not accuracy.
#   bash scripts/bench_predict.sh [--big] [--device cpu|cuda]
# Prints one line per slide and writes $OUT/bench_predict.json (one object per slide, from
# predict's timings.jsonl: open, selection, encoder busy share, aggregation, writing, peak RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_predict}
IPS=${IPS:-build/ips}
big=false
device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --big) big=true; shift ;;
    --device) device=$2; shift 2 ;;
    *) echo "bench_predict.sh: unknown argument '$1' (--big, --device cpu|cuda)" >&2; exit 2 ;;
  esac
done
SVS=${IPS_TEST_SLIDE:-../shared/data/CMU-1-Small-Region.svs}
CFG=tests/fixtures/slide_tiny.yaml
mkdir -p "$OUT/data"

# Two epochs on two small pyramids, so that the weights are trained ones.
if [ ! -f "$OUT/run/last.pt" ]; then
  "$IPS" data pyramid --out "$OUT/data/needle.tif" --width 2048 --height 1536 --seed 7 --needle 1024,512,256,256 >/dev/null
  "$IPS" data pyramid --out "$OUT/data/plain.tif" --width 2048 --height 1536 --seed 8 >/dev/null
  printf 'path,slide\nneedle.tif,1\nplain.tif,0\n' > "$OUT/data/train.csv"
  cp "$OUT/data/train.csv" "$OUT/data/test.csv"
  "$IPS" train "$CFG" --device "$device" --quiet --set dataset=csv --set data_dir="$OUT/data" --set n_epoch=2 --set n_epoch_warmup=0 \
    --set B=2 --set B_seq=1 --set eager=false --out "$OUT/run" >/dev/null
fi

[ -f "$OUT/data/p20k.tif" ] || "$IPS" data pyramid --out "$OUT/data/p20k.tif" --width 20000 --height 20000 --seed 9 \
  --needle 12800,6400,512,512
slides=("$SVS" "$OUT/data/p20k.tif")
if $big; then
  [ -f "$OUT/data/p100k.tif" ] || "$IPS" data pyramid --out "$OUT/data/p100k.tif" --width 100000 --height 100000 --seed 9 \
    --needle 64000,32000,512,512
fi

rm -rf "$OUT/predict"
$big && rm -rf "$OUT/predict_big"
"$IPS" predict "$CFG" --weights "$OUT/run/last.pt" --device "$device" --json --out "$OUT/predict" "${slides[@]}" \
  > "$OUT/predict.jsonl"
# The 100k pyramid: every output but the viewer, whose DeepZoom of 10^10 pixels is disk, not memory.
if $big; then
  "$IPS" predict "$CFG" --weights "$OUT/run/last.pt" --device "$device" --json --outputs heatmap,overlay,geojson,gallery \
    --out "$OUT/predict_big" "$OUT/data/p100k.tif" >> "$OUT/predict.jsonl"
fi

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for d in ("predict", "predict_big"):
    path = os.path.join(out, d, "timings.jsonl")
    if os.path.exists(path):
        rows += [json.loads(l) for l in open(path)]
for r in rows:
    print(f"{os.path.basename(r['input'])}: {r['patches']} patches, open {r['open_s']:.1f} s, selection {r['select_s']:.1f} s "
          f"(encoder busy {100 * r['encoder_busy']:.0f} %, waiting for reads {r['read_wait_s']:.1f} s), "
          f"aggregation {r['aggregate_s']:.2f} s, writing {r['write_s']:.1f} s (heat map {r.get('write_heatmap_s', 0):.1f}, "
          f"overlay {r.get('write_overlay_s', 0):.1f}, GeoJSON {r.get('write_geojson_s', 0):.1f}, gallery "
          f"{r.get('write_gallery_s', 0):.1f}, viewer {r.get('write_viewer_s', 0):.1f}), peak RSS {r['peak_rss_mb']:.0f} MB")
json.dump(rows, open(os.path.join(out, "bench_predict.json"), "w"), indent=1)
PY
