#!/usr/bin/env bash
# Every run recorded, and ensembles: fits (one with snapshots per SGDR cycle), an lr-find, a
# valid prediction and a submission each leave a record in PROJECT/runs/ that `runs` lists,
# shows and compares; a fit killed mid-way reads as interrupted and its resume as a second run
# linked to it; `ensemble` of two architectures (and a snapshot) reports each member's and the
# ensemble's validation log loss and writes a submission in the competition's format.
# No network: resnet18 and mobilenet_v3_small from scratch at 32 px.
set -euo pipefail
cli=$1
source "$(dirname "${BASH_SOURCE[0]}")/e2e_common.sh"
p=$work/p
py=/usr/bin/python3

"$cli" -q sample "$work/dl" --train 40 --test 8
"$cli" -q data prepare "$p" --from "$work/dl" --valid-per-class 5
"$cli" -q runs "$p" | grep -q "No runs recorded" || fail "a new project lists runs"

# 1: resnet18, SGDR 1+2+4 epochs with snapshots.
"$cli" --threads 2 fit "$p" --arch resnet18 --size 32 --bs 8 --no-pretrained --lr 1e-2 --cycles 3 --cycle-len 1 \
  --cycle-mult 2 --snapshots --json >"$work/fit1.json" 2>/dev/null
# 2: lr-find; 3: valid prediction; 4: test prediction writing a submission file (kind predict:
# a submission run is what goes to Kaggle).
"$cli" -q --threads 2 lr-find "$p" >/dev/null 2>&1
"$cli" -q --threads 2 predict "$p" --split valid >/dev/null
"$cli" -q --threads 2 predict "$p" --out "$work/sub1.csv"
ls "$p/runs" | sort >"$work/files"
diff <(printf '0001-fit.json\n0002-lr_find.json\n0003-predict.json\n0004-predict.json\n') "$work/files" \
  || fail "run files: $(cat "$work/files")"
for n in 1 2 3; do test -f "$p/models/snapshot-0001-$n.safetensors" || fail "snapshot $n missing"; done
test -f "$p/models/snapshot-0001-4.json" && fail "a fourth snapshot"
test -f "$p/models/run-0001.safetensors" || fail "run 1 kept no checkpoint"

# The record's epochs are the printed ones.
"$cli" runs "$p" show 1 --json >"$work/run1.json"
$py - "$work/fit1.json" "$work/run1.json" <<'PY' || fail "run 1's record differs from its epoch lines"
import json, sys
printed = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"') and '"epoch"' in l and '"event":"epoch"' in l.replace(" ", "")]
run = json.load(open(sys.argv[2]))
epochs = run["fits"][0]["epochs"]
assert len(printed) == 7 == len(epochs), (len(printed), len(epochs))
for a, b in zip(printed, epochs):
    for k in ("trn_loss", "val_loss", "accuracy", "log_loss"):
        assert a[k] == b[k], (k, a[k], b[k])
assert run["status"] == "finished" and run["checkpoint"] == "run-0001", run["status"]
assert run["fits"][0]["snapshots"] == ["snapshot-0001-1", "snapshot-0001-2", "snapshot-0001-3"]
assert run["learner"]["arch"] == "resnet18" and run["data"]["valid"] == 10
PY
"$cli" runs "$p" show 4 --json | $py -c 'import json,sys; r=json.load(sys.stdin); assert r["parent"]==1 and r["submission"].endswith("sub1.csv"), r' \
  || fail "the submission file's prediction is not linked to run 1"

# 5: a fit killed mid-way is interrupted; 6: its resume is a second run linked to it.
"$cli" --threads 2 fit "$p" --lr 1e-3 --cycles 200 >"$work/long.out" 2>&1 &
bg=$!
for _ in $(seq 1 900); do
  grep -q '^ *1 ' "$work/long.out" 2>/dev/null && break
  kill -0 "$bg" 2>/dev/null || { cat "$work/long.out"; fail "the long fit ended early"; }
  sleep 0.1
done
kill -9 "$bg"; wait "$bg" 2>/dev/null || true; bg=""
"$cli" runs "$p" | grep -E '^ +5 +fit +interrupted' >/dev/null || { "$cli" runs "$p"; fail "run 5 is not interrupted"; }
"$cli" -q --threads 2 fit "$p" --resume >/dev/null 2>&1 &
bg=$!
for _ in $(seq 1 900); do
  [ -f "$p/runs/0006-fit.json" ] && grep -q '"epochs": \[$' "$p/runs/0006-fit.json" && grep -q '"trn_loss"' "$p/runs/0006-fit.json" && break
  sleep 0.1
done
kill -INT "$bg"; wait "$bg" 2>/dev/null || true; bg=""
"$cli" runs "$p" show 6 --json | $py -c '
import json, sys
r = json.load(sys.stdin)
assert r["resumed"] and r["parent"] == 5, (r["resumed"], r["parent"])
assert r["status"] == "stopped", r["status"]
assert r["fits"][0]["resumed"] and r["fits"][0]["schedule"] == "constant, 200 epochs", r["fits"][0]["schedule"]
' || fail "run 6 is not the resume of run 5"
"$cli" runs "$p" | grep -E '^ +6 .*resumes #5' >/dev/null || fail "the list does not say run 6 resumes run 5"

# 7: another architecture.
"$cli" -q --threads 2 fit "$p" --arch mobilenet_v3_small --size 32 --bs 8 --no-pretrained --new-learner --lr 1e-2 \
  --cycles 2 >/dev/null 2>&1
"$cli" runs "$p" compare 1 7 >"$work/compare.txt"
grep -E '^\* arch +resnet18 +mobilenet_v3_small' "$work/compare.txt" >/dev/null || { cat "$work/compare.txt"; fail "compare: arch"; }
grep -E 'best log_loss' "$work/compare.txt" >/dev/null || fail "compare: metrics"

# 8: the ensemble.
"$cli" --threads 2 ensemble "$p" --from 1 --from 7 --from snapshot-0001-2 --weights 2 1 1 --out "$work/ens.csv" \
  >"$work/ens.out" 2>/dev/null || { cat "$work/ens.out"; fail "ensemble failed"; }
grep -E '^ensemble +weighted mean +[0-9.]+ +[0-9.]+$' "$work/ens.out" >/dev/null || { cat "$work/ens.out"; fail "no ensemble score"; }
$py - "$work/ens.csv" "$p/sample_submission.csv" "$p/runs/0008-ensemble.json" "$work/ens.out" <<'PY' || fail "the ensemble's submission or record"
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))
sample = list(csv.reader(open(sys.argv[2])))
assert rows[0] == sample[0], (rows[0], sample[0])
assert sorted(r[0] for r in rows[1:]) == sorted(r[0] for r in sample[1:])
assert all(0 <= float(r[1]) <= 1 for r in rows[1:])
run = json.load(open(sys.argv[3]))
assert [m["source"] for m in run["members"]] == ["#1", "#7", "snapshot-0001-2"], run["members"]
assert [m["weight"] for m in run["members"]] == [2, 1, 1]
valid = [q for q in run["predictions"] if q["split"] == "valid"][0]
printed = [l.split() for l in open(sys.argv[4]) if l.startswith("ensemble")][0]
assert abs(float(printed[-1]) - valid["log_loss"]) < 5e-5, (printed, valid)
assert run["status"] == "finished" and run["submission"].endswith("ens.csv")
PY
echo "cli_runs: ok"
