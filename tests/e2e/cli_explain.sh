#!/usr/bin/env bash
# whisker-cli explain on the sample competition after a short training from scratch: the
# overlay PNGs it reports exist and are PNGs, explain.csv lists them, the contact sheet is a
# PNG with one tile per image; --images and --class on the test split; mistakes the user can fix.
set -euo pipefail
cli=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$cli" -q sample "$work/dl" --train 120 --test 6
"$cli" -q data prepare "$work/p" --from "$work/dl"
# Before any learner: a message that says what to do.
if "$cli" explain "$work/p" --out "$work/none" 2>"$work/err"; then fail "explain without a learner"; fi
grep -q "fit" "$work/err" || fail "no-learner message: $(cat "$work/err")"

"$cli" -q fit "$work/p" --arch resnet18 --size 64 --bs 16 --no-pretrained --lr 1e-3 --cycles 1 >/dev/null

# The highest-loss mistakes of the valid split (a model this young makes some).
"$cli" explain "$work/p" --mistakes 5 --out "$work/out" | tee "$work/log"
grep -q "contact_sheet.png" "$work/log" || fail "summary line: $(cat "$work/log")"
/usr/bin/python3 - "$work/out" "$work/log" <<'PY' || fail "explain outputs"
import csv, math, os, re, sys
from PIL import Image
out, log = sys.argv[1], open(sys.argv[2]).read()
m = re.search(r"Explained (\d+) valid images? .*: (\d+) overlay PNGs? and the contact sheet (\S+) \((\d+) tiles\)", log)
assert m, log
images, pngs, sheet, tiles = int(m[1]), int(m[2]), m[3], int(m[4])
assert 1 <= images <= 5 and tiles == images, (images, tiles)
rows = list(csv.DictReader(open(os.path.join(out, "explain.csv"))))
assert len(rows) == pngs, (len(rows), pngs)
assert len({r["rank"] for r in rows}) == images
for r in rows:
    assert r["actual"] != r["predicted"], r          # mistakes only
    assert r["class"] in (r["actual"], r["predicted"])
    png = Image.open(os.path.join(out, r["overlay"]))
    assert png.format == "PNG" and png.mode == "RGB" and max(png.size) <= 512, (r["overlay"], png.size)
    assert 0 <= float(r["heat_probability"]) <= 1
# Mistakes get both maps: the predicted class's and the actual class's.
assert pngs == 2 * images, (pngs, images)
files = sorted(f for f in os.listdir(out) if f.endswith(".png") and f != "contact_sheet.png")
assert len(files) == pngs, files
# The sheet: a grid of (2 x 256 + 16) x (256 + 16 + 3 caption lines) cells (a mistake's two maps
# side by side), ceil(sqrt(n)) columns; exactly n of them hold an image (non-white pixels).
s = Image.open(sheet)
assert s.format == "PNG", s.format
cols = min(8, math.ceil(math.sqrt(images)))
nrows = math.ceil(images / cols)
cw, ch = 2 * 256 + 16, 256 + 16 + 3 * 18
assert s.size == (cols * cw, nrows * ch), (s.size, cols, nrows)
px = s.convert("RGB").load()
filled = 0
for i in range(cols * nrows):
    x0, y0 = (i % cols) * cw + 8, (i // cols) * ch + 8
    if any(px[x, y] != (255, 255, 255) for x in range(x0, x0 + 512, 4) for y in range(y0, y0 + 256, 4)):
        filled += 1
assert filled == images, (filled, images)
print(f"explain ok: {images} images, {pngs} overlays, sheet {s.size[0]}x{s.size[1]} with {filled} tiles")
PY

# Named test images, one class for all: one overlay per image.
"$cli" -q explain "$work/p" --split test --images 1.jpg "$work/p/data/test/2.jpg" --class dog --out "$work/test" \
  2>"$work/err" || fail "explain --images: $(cat "$work/err")"
test -f "$work/test/contact_sheet.png" || fail "no contact sheet for --images"
test "$(ls "$work/test" | grep -c '_dog\.png$')" -eq 2 || fail "overlays of --images: $(ls "$work/test")"
/usr/bin/python3 -c "
from PIL import Image
s = Image.open('$work/test/contact_sheet.png')
# Two tiles of one map each, side by side: 2 x (256 + 16) wide, one row (3 caption lines).
assert s.format == 'PNG' and s.size == (2 * 272, 272 + 3 * 18), s.size" || fail "contact sheet of --images"

# Mistakes the user can fix.
if "$cli" explain "$work/p" --split test --out "$work/x" 2>"$work/err"; then fail "mistakes of the unlabelled test split"; fi
grep -q "no labels" "$work/err" || fail "test-split message: $(cat "$work/err")"
if "$cli" explain "$work/p" --images nosuch.jpg --out "$work/x" 2>"$work/err"; then fail "unknown image accepted"; fi
grep -q "nosuch.jpg" "$work/err" || fail "unknown-image message: $(cat "$work/err")"
if "$cli" explain "$work/p" --class wolf --out "$work/x" 2>"$work/err"; then fail "unknown class accepted"; fi
grep -q "wolf" "$work/err" || fail "unknown-class message: $(cat "$work/err")"
echo "e2e explain: all checks passed"
