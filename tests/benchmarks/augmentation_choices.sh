#!/usr/bin/env bash
# Augmentation and training choices, measured: the validation log loss and accuracy of the same
# network trained from scratch for the same epochs on the built-in sample competition, once per
# configuration (issue #18): side-on (fastai's default), basic, none, and side-on with
# TrivialAugmentWide + label smoothing 0.1 + MixUp 0.2.
#   tests/benchmarks/augmentation_choices.sh build/app/whisker-cli
# Environment: IMAGES (5000 training images drawn), SIZE (64), BS (64), EPOCHS (6), LR (2e-3),
# ARCH (resnet18). Every run: a new learner with the same seed, unfrozen, AdamW one-cycle.
# Printed: one row per configuration with the last epoch's val_loss, accuracy and log_loss,
# and the best epoch's log_loss.
set -euo pipefail
cli=$(realpath "$1")
arch=${ARCH:-resnet18} size=${SIZE:-64} bs=${BS:-64} images=${IMAGES:-5000} epochs=${EPOCHS:-6} lr=${LR:-2e-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cli" -q sample "$work/dl" --train "$images" --test 0
"$cli" -q data prepare "$work/p" --from "$work/dl" --valid-frac 0.2
echo "device: $("$cli" device); $(nproc) cores; $arch at $size px from scratch, batch $bs, $images images (20% valid), $epochs epochs, AdamW one-cycle lr $lr"
printf '%-44s %10s %10s %10s %14s %8s\n' configuration val_loss accuracy log_loss best_log_loss seconds
run() {
  local name=$1 learner=$2 fit=$3
  local start=$SECONDS
  # shellcheck disable=SC2086
  out=$("$cli" -q fit "$work/p" --new-learner --arch "$arch" --size "$size" --bs "$bs" --no-pretrained $learner \
        --unfreeze --adamw --one-cycle --lr "$lr" --cycles "$epochs" --json $fit)
  grep '"event":"epoch"' <<<"$out" | python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
last = rows[-1]
best = min(r['log_loss'] for r in rows)
print(f\"{'$name':<44} {last['val_loss']:10.4f} {last['accuracy']:10.4f} {last['log_loss']:10.4f} {best:14.4f} {$SECONDS - $start:8d}\")"
}
run "side-on (fastai 0.7 default)" "--aug side-on" ""
run "basic (rotate, lighting)" "--aug basic" ""
run "none (scale + random crop)" "--aug none" ""
run "side-on + TrivialAugment + LS 0.1 + MixUp 0.2" "--aug side-on --trivial-augment" "--label-smoothing 0.1 --mixup 0.2"
