#!/usr/bin/env bash
# Data-parallel figures on this machine's CPUs (docs/BENCHMARKS.md, "Distributed"): 1 process x 2
# threads against 2 processes x 1 thread for a training step (`ips bench`, synthetic inputs of
# the config's shapes), and the gradient all-reduce alone against the gradient size, bucketed and
# one call per parameter (`ips bench-comm`). Writes one JSON per row to OUT (default
# docs/bench/distributed) and prints the rows. Needs build/ips.
#   bash scripts/bench_distributed.sh [OUT] [ITERS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/distributed}
iters=${2:-5}
mkdir -p "$out"
ips=build/ips

# name | config and overrides
steps=(
  "demo_megapixel_mnist|configs/demo_megapixel_mnist.yaml"
  "megapixel_mnist_B4|configs/megapixel_mnist.yaml --set B=4 --set B_seq=4"
  "camelyon16_features_N2000|configs/camelyon16_features.yaml --set N=2000 --set M=500 --set I=500 --set B=4"
)
for row in "${steps[@]}"; do
  name=${row%%|*}
  args=${row#*|}
  # shellcheck disable=SC2086
  $ips bench $args --iters "$iters" --warmup 1 --threads 2 --json | tail -1 > "$out/${name}_1x2.json"
  # shellcheck disable=SC2086
  $ips bench $args --iters "$iters" --warmup 1 --threads 1 --nproc-per-node 2 --json | tail -1 > "$out/${name}_2x1.json"
  for k in 1x2 2x1; do
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:<28} {sys.argv[3]}: {j['ms_per_batch']:8.1f} ms/step {j['img_per_s']:7.2f} img/s  collectives {100*j['comm_share']:5.1f} %\")" \
      "$out/${name}_$k.json" "$name" "$k"
  done
done

# Gradient sizes: feature aggregator, demo trunk, half and whole ResNet-18 with the aggregator.
models=(
  "camelyon16_features|configs/camelyon16_features.yaml"
  "demo_megapixel_mnist|configs/demo_megapixel_mnist.yaml"
  "megapixel_mnist|configs/megapixel_mnist.yaml"
  "resnet18_full|configs/megapixel_mnist.yaml --set n_res_blocks=4 --set D=512"
)
for row in "${models[@]}"; do
  name=${row%%|*}
  args=${row#*|}
  # shellcheck disable=SC2086
  $ips bench-comm $args --iters 20 --bucket-mib 1 25 --threads 1 --nproc-per-node 2 --json | tail -1 > "$out/comm_${name}.json"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); b=' '.join(f\"{x['bucket_mib']:g} MiB {x['ms']:.2f} ms\" for x in j['bucketed']); print(f\"{sys.argv[2]:<22} {j['gradient_mib']:7.2f} MiB: buckets {b}; per parameter {j['per_tensor_ms']:.2f} ms\")" \
    "$out/comm_${name}.json" "$name"
done
