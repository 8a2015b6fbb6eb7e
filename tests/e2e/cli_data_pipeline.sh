#!/usr/bin/env bash
# End to end through the command line: sample -> prepare -> report -> every loader view ->
# materialize -> resize cache, plus the errors a user sees for bad input.
set -euo pipefail
cli=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$cli" -q sample "$work/dl" --train 60 --test 12 --seed 5
test -f "$work/dl/train.zip" && test -f "$work/dl/test.zip" && test -f "$work/dl/sample_submission.csv" || fail "sample files"
"$cli" -q sample "$work/dl2" --train 60 --test 12 --seed 5
cmp "$work/dl/train.zip" "$work/dl2/train.zip" || fail "same seed must give the same bytes"

out=$("$cli" data prepare "$work/p" --from "$work/dl" --valid-per-class 6 --seed 3)
echo "$out"
grep -q "2 classes, 48 train, 12 valid, 12 test images; 0 files skipped" <<<"$out" || fail "prepare summary"

report=$("$cli" data report "$work/p")
echo "$report"
grep -Eq "^cat +24 +6" <<<"$report" || fail "report counts for cat"
grep -Eq "^total +48 +12 +12" <<<"$report" || fail "report totals"
grep -q "Skipped files: none" <<<"$report" || fail "report skipped"

for view in train valid fix aug test test_aug; do
  json=$("$cli" bench loader "$work/p" --view "$view" --size 64 --bs 8 --epochs 1 --json)
  case $view in train|fix) want=48 ;; valid|aug) want=12 ;; *) want=12 ;; esac
  grep -q "\"images\": $want," <<<"$json" || fail "view $view: $json"
  grep -q "\"failures\": 0" <<<"$json" || fail "view $view failures: $json"
done

"$cli" -q data materialize "$work/p" "$work/layout"
test "$(ls "$work/layout/valid/dog" | wc -l)" -eq 6 || fail "materialized valid/dog"
test "$(ls "$work/layout/test" | wc -l)" -eq 12 || fail "materialized test"
"$cli" data resize "$work/p" --size 64 | grep -q "Resize cache" || fail "resize cache"
json=$("$cli" bench loader "$work/p" --size 64 --bs 8 --epochs 1 --resize-cache --json)
grep -q "\"images\": 48," <<<"$json" || fail "loader with resize cache: $json"

# Errors say what to do, and exit non-zero.
if "$cli" data report "$work/nothing" 2>"$work/err"; then fail "report of a missing project succeeded"; fi
grep -q "hint: run: whisker-cli data prepare" "$work/err" || fail "missing-project hint: $(cat "$work/err")"
if "$cli" data prepare "$work/q" --from "$work/does-not-exist" 2>"$work/err"; then fail "prepare from nothing succeeded"; fi
grep -q "does not exist" "$work/err" || fail "missing source message"
if "$cli" data prepare "$work/q" --from "$work/dl" --valid-per-class 3 --valid-frac 0.1 2>/dev/null; then
  fail "conflicting split options were accepted"
fi
echo "e2e data pipeline: all checks passed"
