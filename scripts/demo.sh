#!/usr/bin/env bash
# The CPU demo: installs what is missing, builds, fetches the real MNIST digits, generates a small
# Megapixel MNIST (256x256), pre-trains the patch encoder on digit crops of the training split,
# trains IPS on the four tasks, evaluates, and writes a heat map and a learning curve.
# Everything lands in runs/demo/. Recipe and measured results: docs/DEMO.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null

cfg=configs/demo_megapixel_mnist.yaml
data=data/megapixel_mnist_demo
if [ ! -f "$data/meta.json" ]; then
  build/ips data megapixel-mnist --digits data/mnist --out "$data" \
    --width 256 --height 256 --n-train 3000 --n-test 500 --n-noise 8 --seed 0
fi
mkdir -p runs/demo
start=$(date +%s)
build/ips pretrain "$cfg" --weights-out runs/demo/encoder.pt --steps 3000
build/ips train "$cfg" --out runs/demo
end=$(date +%s)
echo "training wall time (pre-training + IPS): $((end - start)) s"
build/ips eval "$cfg" --checkpoint runs/demo/best.pt
build/ips predict "$cfg" --weights runs/demo/best.pt "$data"/test/00000.png --heatmap runs/demo/heatmap.png
build/ips plot runs/demo/metrics.jsonl --out runs/demo/learning_curve.png
echo "heat map: runs/demo/heatmap.png, learning curve: runs/demo/learning_curve.png"
