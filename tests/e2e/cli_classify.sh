#!/usr/bin/env bash
# whisker-cli classify on a torchvision weights file (random weights, made by Debian's
# python3-torchvision): one row per readable image, 1000 probabilities summing to 1, broken
# files reported and skipped. Also: the offline error for missing pretrained weights.
set -euo pipefail
cli=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Without weights and without network: a clear message naming the file and the cache.
if TORCH_HOME="$work/torch" WHISKER_WEIGHTS_URL=http://127.0.0.1:9 \
   "$cli" -q classify --arch resnet18 --images "$work" --out "$work/x.csv" 2>"$work/err"; then
  fail "classify without weights succeeded"
fi
grep -q "resnet18-f37072fd.pth" "$work/err" || fail "offline message: $(cat "$work/err")"
grep -q "$work/torch/hub/checkpoints" "$work/err" || fail "offline message names the cache: $(cat "$work/err")"

if ! /usr/bin/python3 -c "import torchvision" 2>/dev/null; then
  echo "python3-torchvision not installed: skipping the classify run"; exit 0
fi
/usr/bin/python3 -c "
import torch, torchvision
torch.manual_seed(0)
torch.save(torchvision.models.resnet18().state_dict(), '$work/r18.pth')"
"$cli" -q sample "$work/dl" --train 4 --test 6
mkdir -p "$work/images"
(cd "$work/images" && unzip -q "$work/dl/test.zip" && mv test/* . && rmdir test)
printf 'not an image' > "$work/images/broken.jpg"
"$cli" classify --arch resnet18 --weights "$work/r18.pth" --images "$work/images" --out "$work/probs.csv" --size 96 \
  2>"$work/err" | tee "$work/out"
grep -q "broken.jpg" "$work/err" || fail "broken file not reported"
grep -q "Classified 6 images" "$work/out" || fail "summary line"
/usr/bin/python3 - "$work/probs.csv" <<'PY' || fail "CSV check"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0][0] == "file" and len(rows[0]) == 1001, rows[0][:3]
assert len(rows) == 7, len(rows)
for r in rows[1:]:
    s = sum(float(x) for x in r[1:])
    assert abs(s - 1) < 1e-4, (r[0], s)
print("classify CSV ok:", len(rows) - 1, "rows")
PY
echo "e2e classify: all checks passed"
