#!/usr/bin/env bash
# Every architecture family through the command line: the seed's recipe (precompute, lr_find,
# fit, SGDR, unfreeze with differential learning rates, TTA) at 1 epoch a step, from scratch at
# a small size, to a well-formed submission; then the architecture table (weights list) and
# the size rules with their messages.
set -euo pipefail
cli=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export XDG_CACHE_HOME=$work/cache TORCH_HOME=$work/torch

"$cli" -q sample "$work/dl" --train 48 --test 10
"$cli" -q data prepare "$work/p" --from "$work/dl"
cat > "$work/recipe.json" <<'JSON'
[{"step": "precompute", "on": true},
 {"step": "lr_find"},
 {"step": "fit", "lr": 0.01, "cycles": 1},
 {"step": "precompute", "on": false},
 {"step": "fit", "lr": 0.01, "cycles": 1, "cycle_len": 1},
 {"step": "unfreeze"},
 {"step": "fit", "lr": [0.0001, 0.001, 0.01], "cycles": 1, "cycle_len": 1},
 {"step": "predict", "split": "valid", "tta": 2},
 {"step": "predict", "split": "test", "tta": 2, "out": "submission.csv"}]
JSON
for arch in convnext_tiny efficientnet_b0 efficientnet_v2_s regnet_y_400mf mobilenet_v3_small swin_t vit_b_16; do
  echo "== $arch"
  "$cli" run "$work/p" --new-learner --arch "$arch" --size 32 --bs 16 --no-pretrained --recipe "$work/recipe.json" \
    > "$work/$arch.log" 2>&1 || { cat "$work/$arch.log"; fail "$arch: the recipe failed"; }
  grep -q "New learner: $arch at 32 px" "$work/$arch.log" || fail "$arch: learner line"
  grep -q "Wrote the submission" "$work/$arch.log" || fail "$arch: no submission"
  python3 - "$work" <<'PY' || fail "$arch: submission shape"
import csv, sys
w = sys.argv[1]
rows = list(csv.reader(open(f"{w}/p/submission.csv")))
ids = [r["id"] for r in csv.DictReader(open(f"{w}/p/sample_submission.csv"))]
assert rows[0] == ["id", "label"], rows[0]
assert sorted(r[0] for r in rows[1:]) == sorted(ids), "ids differ"
assert all(0 <= float(r[1]) <= 1 for r in rows[1:])
PY
  rm "$work/p/submission.csv"
done

# Data-parallel on the most different body (ViT: a token, loose parameters): 2 processes, the
# unfrozen model trains and predicts.
"$cli" fit "$work/p" --new-learner --arch vit_b_16 --size 32 --bs 16 --no-pretrained --unfreeze --lr 0.001 --cycles 1 \
  --nproc 2 > "$work/dp.log" 2>&1 || { cat "$work/dp.log"; fail "vit_b_16 --nproc 2"; }
grep -q "Data-parallel: 2 processes" "$work/dp.log" || fail "vit_b_16 --nproc 2: $(cat "$work/dp.log")"
"$cli" -q predict "$work/p" --tta 2 --out "$work/dp.csv" || fail "predict after data-parallel fit"
test "$(wc -l < "$work/dp.csv")" -eq 11 || fail "data-parallel submission rows"

# Without --size a new learner takes its architecture's default size (efficientnet_b3: 300).
"$cli" fit "$work/p" --new-learner --arch efficientnet_b3 --no-pretrained --bs 2 --cycles 0 > "$work/b3.log" 2>&1 || true
grep -q "New learner: efficientnet_b3 at 300 px" "$work/b3.log" || fail "default size: $(cat "$work/b3.log")"
# Sizes an architecture cannot take are refused, naming the sizes to use.
if "$cli" fit "$work/p" --new-learner --arch swin_t --size 100 --no-pretrained 2>"$work/err"; then fail "swin_t at 100 accepted"; fi
grep -q "multiple of 32" "$work/err" && grep -q "try 96 or 128" "$work/err" || fail "swin size message: $(cat "$work/err")"

# The architecture table.
"$cli" weights list > "$work/list.txt"
for arch in convnext_base efficientnet_v2_m regnet_y_16gf mobilenet_v3_large swin_s vit_b_16; do
  grep -qE "^$arch +" "$work/list.txt" || fail "weights list lacks $arch"
done
grep -qE '^convnext_tiny +ConvNeXt +28\.6M +4\.46 +82\.5% +224 \(236 bilinear\) +not downloaded' "$work/list.txt" \
  || fail "convnext_tiny row: $(grep convnext_tiny "$work/list.txt")"
# A benchmark's rate shows in the table afterwards.
"$cli" bench predict --arch mobilenet_v3_small --size 64 --bs 2 --steps 1 > /dev/null
"$cli" weights list --json > "$work/list.json"
python3 - "$work/list.json" <<'PY' || fail "weights list --json"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {r["arch"]: r for r in rows}
assert len(rows) == 30, len(rows)
assert by["efficientnet_b3"]["default_size"] == 300
assert by["mobilenet_v3_small"]["predict_images_per_second"] > 0
assert "predict_images_per_second" not in by["resnet34"]
PY
echo "architectures ok"
