#!/usr/bin/env bash
# End to end against PyTorch: a sample competition of 5,000 training images, resnet18 from scratch
# at 64 px, batch 64, 3 epochs of SGDR (restart every epoch), the whole network trained, in
# whisker-cli and in the same recipe written with PyTorch + torchvision and its DataLoader
# (pytorch_e2e.py), same files, same cores, one run. Reports validation accuracy, log loss and
# wall time of each, in fp32 and at `auto` precision (bf16 on CPUs with bf16 instructions; the
# PyTorch side then uses torch.autocast("cpu", bfloat16)).
#   tests/benchmarks/e2e_vs_pytorch.sh build/app/whisker-cli [TRAIN_IMAGES] [EPOCHS]
# Needs /usr/bin/python3 with torch and torchvision (Debian: python3-torchvision). Whisker
# validates after every epoch (its epoch table), PyTorch only at the end: Whisker's wall time
# includes the two extra validations.
set -euo pipefail
cli=$(realpath "$1")
train_images=${2:-5000}
epochs=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
threads=$(nproc)
work=$(mktemp -d /tmp/whisker-e2e-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$cli" -q sample "$work/dl" --train "$train_images" --test 0
"$cli" -q data prepare "$work/p" --from "$work/dl" >/dev/null
"$cli" -q data materialize "$work/p" "$work/fastai" >/dev/null
echo "Sample: $train_images images (80% train, 20% valid), resnet18 from scratch, 64 px, batch 64, $epochs epochs of SGDR at lr 0.01, $threads cores"

whisker_run() {  # precision -> "accuracy val_loss wall"
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$("$cli" -q fit "$work/p" --new-learner --no-pretrained --arch resnet18 --size 64 --bs 64 --unfreeze \
          --no-precompute --lr 0.01 --cycles "$epochs" --cycle-len 1 --precision "$1" --json 2>/dev/null | grep '"epoch"' | tail -n1)
  t1=$(date +%s.%N)
  /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["accuracy"], r["val_loss"], round(float(sys.argv[3])-float(sys.argv[2]),1))' \
    "$out" "$t0" "$t1"
}
pytorch_run() {  # precision -> "accuracy val_loss wall"
  /usr/bin/python3 "$here/pytorch_e2e.py" "$work/fastai" --size 64 --bs 64 --epochs "$epochs" --lr 0.01 \
    --workers "$threads" --threads "$threads" --precision "$1" |
    /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["accuracy"], r["val_loss"], r["wall_seconds"])'
}

printf '%-10s %-8s %10s %10s %10s\n' precision program accuracy val_loss wall_s
auto_as=$("$cli" -q bench predict --arch resnet18 --size 64 --bs 2 --steps 1 --no-record --json | sed -n 's/.*"precision":"\([a-z0-9]*\)".*/\1/p')
for precision in fp32 auto; do
  peer_precision=fp32
  [[ $precision == auto && $auto_as == bf16 ]] && peer_precision=bf16
  read -r wa wl wt < <(whisker_run "$precision")
  read -r pa pl pt < <(pytorch_run "$peer_precision")
  printf '%-10s %-8s %10s %10s %10s\n' "$precision" whisker "$wa" "$wl" "$wt"
  printf '%-10s %-8s %10s %10s %10s\n' "$peer_precision" PyTorch "$pa" "$pl" "$pt"
  awk -v a="$pt" -v b="$wt" 'BEGIN { printf "  wall time: PyTorch / Whisker = %.2f\n", a / b }'
done
