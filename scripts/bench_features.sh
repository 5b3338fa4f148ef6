#!/usr/bin/env bash
# `ips features` with a ViT against a TRIDENT-style Python loop on the real Aperio slide's tissue
# tiles: the same architecture and weights (random, in the model's own key layout), the same
# tiles, batch 64, float32, the same thread count. The Python side is tests/peer/vit_slide_peer.py
# (openslide-python reads, torchvision-style transforms, plain torch ViT) reading the coordinates
# ips wrote, so only encoding and reading are compared; ips also finds the tissue.
#   bash scripts/bench_features.sh [--encoder kaiko-vitb16] [--threads 2] [--batch 64]
# Prints one line per side and writes $OUT/bench_features.json: tiles, wall seconds and tiles/s of
# each whole process, and its peak RSS (/usr/bin/time -v; the Python side's includes importing torch).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_features}
IPS=${IPS:-build/ips}
PY=${IPS_TORCH_PYTHON:-/usr/bin/python3}
SVS=${IPS_TEST_SLIDE:-../shared/data/CMU-1-Small-Region.svs}
encoder=kaiko-vitb16
threads=2
batch=64
while [ $# -gt 0 ]; do
  case "$1" in
    --encoder) encoder=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    *) echo "bench_features.sh: unknown argument '$1' (--encoder NAME, --threads N, --batch N)" >&2; exit 2 ;;
  esac
done
command -v /usr/bin/time >/dev/null || { echo "bench_features.sh: needs /usr/bin/time (Debian's time package)" >&2; exit 1; }
mkdir -p "$OUT"

# The preset's full architecture, for the peer; random weights in its layout, once.
"$IPS" encoders --json "$encoder" > "$OUT/arch.json"
[ -f "$OUT/$encoder.bin" ] || "$PY" tests/peer/vit_slide_peer.py weights "$OUT/arch.json" "$OUT/$encoder.bin"

rm -rf "$OUT/bags"
/usr/bin/time -v "$IPS" features tests/fixtures/features_vit.yaml "$SVS" --encoder "$encoder" --weights "$OUT/$encoder.bin" \
  --dtype float32 --batch "$batch" --device cpu --threads "$threads" --out "$OUT/bags" 2> "$OUT/ips.time" >/dev/null
bag="$OUT/bags/$(basename "${SVS%.*}").h5"

/usr/bin/time -v "$PY" tests/peer/vit_slide_peer.py features "$OUT/arch.json" "$OUT/$encoder.bin" "$SVS" "$bag" \
  "$OUT/peer.pt" --batch "$batch" --threads "$threads" 2> "$OUT/peer.time" > "$OUT/peer.json"

"$PY" - "$OUT" "$encoder" "$threads" "$batch" "$bag" <<'PY'
import json, re, sys
import h5py, torch
out, encoder, threads, batch, bag = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def measured(path):
    """Wall seconds and peak RSS in kB from /usr/bin/time -v's report."""
    text = open(path).read()
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    wall = 0.0
    for part in clock.split(":"):
        wall = wall * 60 + float(part)
    return wall, int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))

ips_wall, ips_kb = measured(out + "/ips.time")
peer_wall, peer_kb = measured(out + "/peer.time")
with h5py.File(bag, "r") as f:
    ours = torch.from_numpy(f["features"][:])
peer = torch.load(out + "/peer.pt")["features"]
tiles = ours.shape[0]
rows = [
    {"side": "ips features", "tiles": tiles, "wall_s": round(ips_wall, 2), "tiles_per_s": round(tiles / ips_wall, 2),
     "peak_rss_mb": round(ips_kb / 1024)},
    {"side": "python loop (openslide-python + torch)", "tiles": tiles, "wall_s": round(peer_wall, 2),
     "tiles_per_s": round(tiles / peer_wall, 2), "peak_rss_mb": round(peer_kb / 1024),
     "encoder_loop_s": round(json.load(open(out + "/peer.json"))["seconds"], 2)},
]
for r in rows:
    print("%-40s %5d tiles  %7.2f s  %6.2f tiles/s  peak RSS %5d MB" % (r["side"], r["tiles"], r["wall_s"], r["tiles_per_s"], r["peak_rss_mb"]))
result = {"encoder": encoder, "threads": threads, "batch": batch, "rows": rows,
          "speedup": round(rows[0]["tiles_per_s"] / rows[1]["tiles_per_s"], 2),
          "max_abs_diff": float((ours - peer).abs().max())}
print("speed-up %.2fx, max |ips - peer| %.2e" % (result["speedup"], result["max_abs_diff"]))
json.dump(result, open(out + "/bench_features.json", "w"), indent=1)
PY
