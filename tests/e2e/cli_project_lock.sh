#!/usr/bin/env bash
# Two programs, one project: while one whisker-cli fit trains, a second writer (fit, data
# prepare) is refused with the holder's name and PID, a reader (data report) works; a killed
# holder's lock is taken over. Then --new-learner keeps the trained weights as a checkpoint,
# and a recipe starting with precompute runs on a learner whose body is unfrozen.
# No network: resnet18 from scratch at 32 px.
set -euo pipefail
cli=$1
source "$(dirname "${BASH_SOURCE[0]}")/e2e_common.sh"
p=$work/p
learner=(--arch resnet18 --size 32 --bs 8 --no-pretrained)

"$cli" -q sample "$work/dl" --train 80 --test 8
"$cli" -q data prepare "$p" --from "$work/dl"
test ! -s "$p/.whisker.lock" || fail "data prepare left a holder in the lock file"

# A long fit in the background holds the project.
"$cli" fit "$p" "${learner[@]}" --lr 1e-3 --cycles 200 >"$work/long.out" 2>"$work/long.err" &
bg=$!
for _ in $(seq 1 600); do
  [ -s "$p/.whisker.lock" ] && break
  kill -0 "$bg" 2>/dev/null || { cat "$work/long.err"; fail "the long fit ended early"; }
  sleep 0.1
done
[ -s "$p/.whisker.lock" ] || fail "the long fit never took the lock"
python3 - "$p/.whisker.lock" "$bg" <<'PY' || fail "lock holder: $(cat "$p/.whisker.lock")"
import json, sys
h = json.load(open(sys.argv[1]))
assert h["program"] == "whisker-cli", h
assert h["pid"] == int(sys.argv[2]), h
assert h["action"] == "fit", h
assert len(h["since"]) == 19, h
PY

# A second writer is refused, naming the holder.
if "$cli" fit "$p" --lr 1e-2 >"$work/second.out" 2>"$work/second.err"; then fail "a second fit ran while the first held the project"; fi
grep -qF "in use by whisker-cli fit (PID $bg)" "$work/second.err" || fail "second fit's error: $(cat "$work/second.err")"
if "$cli" -q data prepare "$p" --from "$work/dl" 2>"$work/prepare.err"; then fail "data prepare ran while a fit held the project"; fi
grep -qF "in use by whisker-cli fit (PID $bg)" "$work/prepare.err" || fail "data prepare's error: $(cat "$work/prepare.err")"
# Readers are not held up.
"$cli" data report "$p" >"$work/report.out" 2>"$work/report.err" || { cat "$work/report.err"; fail "data report while locked"; }
grep -q "cat" "$work/report.out" || fail "data report output: $(cat "$work/report.out")"
kill -0 "$bg" 2>/dev/null || { cat "$work/long.err"; fail "the long fit did not outlive the refused writers"; }

# kill -9: the kernel frees the lock; the next writer takes it over.
kill -9 "$bg"
wait "$bg" 2>/dev/null || true
bg=""
"$cli" fit "$p" --lr 1e-2 --cycles 1 >"$work/after.out" 2>"$work/after.err" || { cat "$work/after.err"; fail "fit after the holder was killed"; }
grep -q "Learner: resnet18 at 32 px, from scratch" "$work/after.err" || fail "no 'Learner:' line: $(cat "$work/after.err")"
grep -qE "^ +0 +[0-9.]+ +[0-9.]+" "$work/after.out" || fail "no epoch row: $(cat "$work/after.out")"
test ! -s "$p/.whisker.lock" || fail "the finished fit left a holder in the lock file: $(cat "$p/.whisker.lock")"

# --new-learner keeps the trained weights.
"$cli" fit "$p" --new-learner "${learner[@]}" --lr 1e-2 --cycles 1 >"$work/new.out" 2>"$work/new.err" ||
  { cat "$work/new.err"; fail "fit --new-learner"; }
kept=$(sed -nE "s/.*kept as checkpoint '(before-new-[^']+)'.*/\1/p" "$work/new.err")
[ -n "$kept" ] || fail "--new-learner did not name the kept checkpoint: $(cat "$work/new.err")"
test -f "$p/models/$kept.json" && test -f "$p/models/$kept.safetensors" || fail "checkpoint $kept not written"
ls "$p"/models/before-new-*.json >/dev/null 2>&1 || fail "no models/before-new-*.json"
grep -q "New learner: resnet18 at 32 px" "$work/new.out" || fail "no 'New learner' line: $(cat "$work/new.out")"
"$cli" -q load "$p" "$kept" || fail "loading the kept checkpoint"

# A recipe starting with precompute on an unfrozen learner: the body is frozen first.
"$cli" -q fit "$p" --unfreeze --lr 1e-3 --cycles 1 >/dev/null || fail "fit --unfreeze"
"$cli" fit "$p" --lr 1e-3 --cycles 1 >/dev/null 2>"$work/unfrozen.err" || fail "fit on the unfrozen learner"
grep -q "body unfrozen" "$work/unfrozen.err" || fail "the unfrozen learner was not reopened unfrozen: $(cat "$work/unfrozen.err")"
cat >"$work/recipe.json" <<'JSON'
[{"step": "precompute", "on": true},
 {"step": "fit", "lr": 0.01, "cycles": 1},
 {"step": "predict", "split": "test", "out": "recipe.csv"}]
JSON
"$cli" run "$p" --recipe "$work/recipe.json" >"$work/run.out" 2>"$work/run.err" || { cat "$work/run.out" "$work/run.err"; fail "run"; }
grep -q "Step 1 of 3: precompute" "$work/run.out" || fail "no 'Step 1 of 3:' line: $(cat "$work/run.out")"
grep -q "froze the body" "$work/run.out" || fail "the recipe did not say it froze the body"
! grep -q "precompute needs a frozen body" "$work/run.out" "$work/run.err" || fail "precompute refused"
test "$(grep -c . "$p/recipe.csv")" -eq 9 || fail "recipe.csv rows: $(cat "$p/recipe.csv")"
test ! -s "$p/.whisker.lock" || fail "run left a holder in the lock file"
echo "e2e project lock: all checks passed"
