#!/usr/bin/env bash
# Data-parallel training speed: training images per second of `whisker-cli fit --nproc N` for
# each N given (default 1 and 2) on the built-in sample competition, the whole network
# training (resnet18, unfrozen), the same global batch for every N.
#   tests/benchmarks/distributed_scaling.sh build/app/whisker-cli [N…]
# Environment: ARCH (resnet18), SIZE (64), BS (32, the global batch), IMAGES (800), EPOCHS (3).
# The rate is that of the last epoch (the first ones warm up); an epoch's time includes the
# validation of 32 images. On a CPU machine the processes share the cores (cores / N threads
# each), so one machine's scaling mostly shows the cost of the communication; on a machine
# with several GPUs each process takes one GPU.
set -euo pipefail
cli=$(realpath "$1")
shift
nprocs=("$@")
((${#nprocs[@]})) || nprocs=(1 2)
arch=${ARCH:-resnet18} size=${SIZE:-64} bs=${BS:-32} images=${IMAGES:-800} epochs=${EPOCHS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cli" -q sample "$work/dl" --train "$images" --test 0
"$cli" -q data prepare "$work/p" --from "$work/dl" --valid-per-class 16
train=$(python3 -c "import json,sys; print(sum(1 for i in json.load(open(sys.argv[1]))['images'] if i['split'] == 'train' and not i.get('excluded')))" "$work/p/dataset.json")
echo "device: $("$cli" device); $(nproc) cores; $arch at $size px, global batch $bs, $train training images, $epochs epochs"
base=""
for n in "${nprocs[@]}"; do
  out=$("$cli" -q fit "$work/p" --new-learner --arch "$arch" --size "$size" --bs "$bs" --no-pretrained --unfreeze \
        --lr 0.01 --cycles "$epochs" --json --nproc "$n")
  secs=$(grep '"event":"epoch"' <<<"$out" | tail -n1 | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['seconds'])")
  rate=$(python3 -c "print(f'{$train / $secs:.1f}')")
  [[ -n "$base" ]] || base=$rate
  echo "nproc $n: $rate images/s (last epoch $(printf '%.2f' "$secs") s), speed-up $(python3 -c "print(f'{$rate / $base:.2f}')")"
done
