#!/usr/bin/env bash
# Cross-validation: `data prepare --folds` deals stratified, disjoint folds covering every
# labelled image; bad fold options fail with what to do; `fit --fold` trains a fold's own
# learner (the project's learner untouched) into a run with its out-of-fold predictions;
# `run --folds` killed mid-fit skips the finished fold and continues the interrupted one from
# its autosave; `cv` assembles out-of-fold predictions of every labelled image exactly once;
# `ensemble --folds` is scored out of fold and writes the submission.
# No network: resnet18 from scratch at 32 px on 30 sample images.
set -euo pipefail
cli=$1
source "$(dirname "${BASH_SOURCE[0]}")/e2e_common.sh"
p=$work/p
py=/usr/bin/python3

"$cli" -q sample "$work/dl" --train 30 --test 6
"$cli" -q data prepare "$work/nofolds" --from "$work/dl" --valid-per-class 4
"$cli" fit "$work/nofolds" --fold 0 --arch resnet18 --size 32 --no-pretrained 2>"$work/err" && fail "fit --fold without folds"
grep -q "no cross-validation folds" "$work/err" && grep -q "data folds" "$work/err" || fail "no-folds message: $(cat "$work/err")"
"$cli" data prepare "$p" --from "$work/dl" --valid-per-class 4 --folds 16 2>"$work/err" && fail "16 folds of 15 per class"
grep -q "fewer" "$work/err" && grep -q -- "--folds 15 or fewer" "$work/err" || fail "too-many-folds message: $(cat "$work/err")"
"$cli" data prepare "$p" --from "$work/dl" --valid-per-class 4 --folds 3 >"$work/prepare.out"
grep -q "3 folds of 10 images, stratified by class" "$work/prepare.out" || fail "prepare output: $(cat "$work/prepare.out")"

# Stratified (each fold's class count within one image of an equal share), disjoint, covering
# every labelled image of train and valid, none of test.
$py - "$p/dataset.json" <<'PY' || fail "the folds are not stratified, disjoint and covering"
import json, sys, collections
d = json.load(open(sys.argv[1]))
k = d["split"]["folds"]; assert k == 3, k
labelled = [im for im in d["images"] if im["split"] != "test"]
assert all(0 <= im["fold"] < k for im in labelled), "an image without a fold"
assert all("fold" not in im for im in d["images"] if im["split"] == "test"), "a test image in a fold"
per_class = collections.Counter(im["labels"][0] for im in labelled)
for f in range(k):
    members = [im for im in labelled if im["fold"] == f]
    for c, n in per_class.items():
        got = sum(1 for im in members if im["labels"][0] == c)
        assert abs(got - n / k) < 1, (f, c, got, n / k)
assert len(labelled) == 30 and sum(1 for im in labelled if "fold" in im) == 30
PY

"$cli" --threads 2 fit "$p" --fold 7 --arch resnet18 --size 32 --no-pretrained 2>"$work/err" && fail "fit --fold 7 of 3"
grep -q "there is no fold 7: the dataset has 3 folds, numbered 0 to 2" "$work/err" || fail "--fold 7 message: $(cat "$work/err")"

# 1: fit --fold 1 (creates the project's learner, which stays untrained).
"$cli" --threads 2 fit "$p" --fold 1 --arch resnet18 --size 32 --bs 8 --no-pretrained --lr 1e-2 --cycles 1 >"$work/fit.out" 2>&1 \
  || { cat "$work/fit.out"; fail "fit --fold 1"; }
grep -q "Fold 1 of 3 (run #1): 10 images out of fold" "$work/fit.out" || fail "fit --fold output: $(cat "$work/fit.out")"
"$cli" runs "$p" show 1 --json | $py -c '
import json, sys
r = json.load(sys.stdin)
assert r["fold"] == 1 and r["folds"] == 3 and r["checkpoint"] == "run-0001" and r["oof"] == "folds/k3/oof/run-0001.csv", r
assert r["data"]["valid"] == 10 and r["data"]["train"] == 20, r["data"]
' || fail "run 1 is not fold 1's"
test -f "$p/models/run-0001.safetensors" || fail "fold run 1 kept no checkpoint"
test -f "$p/models/autosave.json" && fail "the fold's fit wrote the project's autosave"

# run --folds, killed during fold 1's fit, then run again: fold 0 skipped, fold 1 continued.
cat >"$work/recipe.json" <<'EOF'
[{"step": "fit", "lr": 0.01, "cycles": 3},
 {"step": "predict", "split": "valid", "tta": 1},
 {"step": "predict", "split": "test"}]
EOF
"$cli" --threads 2 run "$p" --folds --recipe "$work/recipe.json" >"$work/run1.out" 2>&1 &
bg=$!
for _ in $(seq 1 1200); do
  grep -A3 "=== Fold 1 of 3" "$work/run1.out" 2>/dev/null | grep -q '^ *0 ' && break
  kill -0 "$bg" 2>/dev/null || { cat "$work/run1.out"; fail "run --folds ended early"; }
  sleep 0.1
done
kill -9 "$bg"; wait "$bg" 2>/dev/null || true; bg=""
grep -q "Fold 0 done (run #2)" "$work/run1.out" || fail "fold 0 did not finish: $(cat "$work/run1.out")"
"$cli" --threads 2 run "$p" --folds --recipe "$work/recipe.json" >"$work/run2.out" 2>&1 || { cat "$work/run2.out"; fail "run --folds again"; }
grep -q "=== Fold 0 of 3 skipped: done in run #2" "$work/run2.out" || fail "fold 0 not skipped: $(cat "$work/run2.out")"
grep -q "=== Fold 1 of 3: resumes after step 0 of 3 (run #3 was interrupted), continuing its interrupted fit" "$work/run2.out" \
  || fail "fold 1 not resumed: $(cat "$work/run2.out")"
grep -q "skipped in a fold run" "$work/run2.out" || fail "a fold run predicted the test set"
test -f "$p/submission.csv" && fail "a fold run wrote the project's submission"
"$cli" runs "$p" show 4 --json | $py -c '
import json, sys
r = json.load(sys.stdin)
assert r["resumed"] and r["parent"] == 3 and r["fold"] == 1 and r["status"] == "finished", (r["resumed"], r["parent"], r["status"])
' || fail "run 4 is not the resume of fold 1's run 3"

# cv: every labelled image exactly once, in its own fold, scored.
"$cli" cv "$p" --oof "$work/oof.csv" >"$work/cv.out"
grep -q "Out of fold: 30 images" "$work/cv.out" || fail "cv: $(cat "$work/cv.out")"
$py - "$p/dataset.json" "$work/oof.csv" <<'PY' || fail "the out-of-fold predictions do not cover every training image once"
import csv, json, sys
d = json.load(open(sys.argv[1]))
fold_of = {im["path"]: im["fold"] for im in d["images"] if im["split"] != "test"}
rows = list(csv.DictReader(open(sys.argv[2])))
paths = [r["path"] for r in rows]
assert sorted(paths) == sorted(fold_of), (len(paths), len(fold_of))
assert all(int(r["fold"]) == fold_of[r["path"]] for r in rows)
assert all(abs(float(r["p_cat"]) + float(r["p_dog"]) - 1) < 1e-4 for r in rows)
PY
"$cli" cv "$p" --json | $py -c '
import json, sys
s = json.load(sys.stdin)
assert s["complete"] and s["images"] == 30 and [f["run"] for f in s["per_fold"]] == [2, 4, 5], s
' || fail "cv --json"

# Ensemble of the folds: out-of-fold validation, averaged test predictions.
"$cli" --threads 2 ensemble "$p" --folds --out "$work/sub.csv" >"$work/ens.out" 2>/dev/null
grep -q "(out of fold: each member on its own fold, the ensemble on all 30 labelled images)" "$work/ens.out" || fail "ensemble: $(cat "$work/ens.out")"
test "$(wc -l <"$work/sub.csv")" = 7 || fail "submission rows: $(wc -l <"$work/sub.csv")"
"$cli" runs "$p" show 6 --json | $py -c '
import json, sys
r = json.load(sys.stdin)
v = [p for p in r["predictions"] if p["split"] == "valid"][0]
assert v["rows"] == 30 and len(r["members"]) == 3, (v, r["members"])
' || fail "the ensemble run is not scored out of fold"
echo "cli_folds: ok"
