#!/usr/bin/env bash
# End to end: whisker-cli data duplicates on the sample competition with planted copies —
# an exact copy across train and valid, a halved + recompressed copy within train, the same
# picture under the other class, a training picture upscaled into test — each found in the
# right kind of group; the actions are marks that --undo takes back; the distinct sample makes
# no group; errors say what to do.
set -euo pipefail
cli=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
py=/usr/bin/python3

"$cli" -q sample "$work/dl" --train 60 --test 12 --seed 5
"$cli" -q data prepare "$work/p" --from "$work/dl" --valid-per-class 6
out=$("$cli" data duplicates "$work/p")
echo "$out"
grep -q "Scanned 72 images" <<<"$out" || fail "scan count"
grep -q "No copies found" <<<"$out" || fail "a false group among the sample's distinct images"

# A folder tree with its own valid/ split, and the planted copies.
mkdir -p "$work/tree/train/cat" "$work/tree/train/dog" "$work/tree/valid/cat" "$work/tree/valid/dog" "$work/tree/test"
(cd "$work/dl" && unzip -q train.zip && unzip -q test.zip)
for i in $(seq 0 29); do
  dest=train; if [ "$i" -ge 24 ]; then dest=valid; fi
  cp "$work/dl/train/cat.$i.jpg" "$work/tree/$dest/cat/"
  cp "$work/dl/train/dog.$i.jpg" "$work/tree/$dest/dog/"
done
cp "$work/dl/test/"*.jpg "$work/tree/test/"
cp "$work/tree/train/cat/cat.1.jpg" "$work/tree/valid/cat/cat.1001.jpg"                       # exact, train+valid
cp "$work/tree/train/cat/cat.3.jpg" "$work/tree/train/dog/dog.1003.jpg"                       # other label
$py - "$work/tree" <<'EOF'
import sys
from PIL import Image
root = sys.argv[1]
im = Image.open(f"{root}/train/dog/dog.2.jpg")
im.resize((im.width // 2, im.height // 2), Image.BILINEAR).save(f"{root}/train/dog/dog.1002.jpg", quality=60)
im = Image.open(f"{root}/train/cat/cat.4.jpg")
im.resize((int(im.width * 1.6), int(im.height * 1.6)), Image.BICUBIC).save(f"{root}/test/1004.jpg", quality=80)
EOF
"$cli" -q data prepare "$work/q" --from "$work/tree"

out=$("$cli" data duplicates "$work/q" --csv "$work/dups.csv")
echo "$out"
grep -q "Scanned 76 images" <<<"$out" || fail "scan count with the copies"
grep -q "4 groups of copies, 4 to act on — 1 inflate the validation score, 1 with different labels, 1 leak into test" <<<"$out" \
  || fail "summary line"
grep -Eq "^Group [0-9]+ · exact copies · 2 images · inflates validation$" <<<"$out" || fail "exact train/valid group"
grep -Eq "^Group [0-9]+ · exact copies · 2 images · labels differ, repeated$" <<<"$out" || fail "label conflict group"
grep -Eq "^Group [0-9]+ · near copies \(similarity >= (0\.9[89][0-9]+|1\.0+)\) · 2 images · repeated$" <<<"$out" || fail "near copy group"
grep -Eq "^Group [0-9]+ · near copies .* · test leak$" <<<"$out" || fail "test leak group"
test "$(wc -l <"$work/dups.csv")" -eq 9 || fail "csv rows: $(cat "$work/dups.csv")"
head -1 "$work/dups.csv" | grep -q "^group,kinds,exact,similarity,split,label,marked,path$" || fail "csv header"

json=$("$cli" data duplicates "$work/q" --json)
$py - <<EOF || fail "json report"
import json
r = json.loads('''$json''')
assert len(r["groups"]) == 4 and r["inflate_validation"] == 1 and r["labels_differ"] == 1 and r["test_leaks"] == 1, r
EOF
inflating=$($py -c "import json,sys; r=json.loads(sys.stdin.read()); print([g['id'] for g in r['groups'] if g['inflates_validation']][0])" <<<"$json")
conflict=$($py -c "import json,sys; r=json.loads(sys.stdin.read()); print([g['id'] for g in r['groups'] if g['labels_differ']][0])" <<<"$json")

# Keep the train/valid group in train: its valid copy is excluded, nothing else changes.
before=$(md5sum "$work/tree/valid/cat/cat.1001.jpg")
out=$("$cli" data duplicates "$work/q" --keep "$inflating=train")
echo "$out"
grep -q "group $inflating kept in train: 1 image(s) changed" <<<"$out" || fail "keep message"
grep -q "3 to act on — 0 inflate the validation score" <<<"$out" || fail "keep did not resolve the group"
grep -q '"excluded": true' "$work/q/dataset.json" || fail "no exclusion mark in the manifest"
test "$before" = "$(md5sum "$work/tree/valid/cat/cat.1001.jpg")" || fail "an image file was touched"
"$cli" data report "$work/q" | grep -Eq "^cat +24 +6" || fail "valid count after keep: $("$cli" data report "$work/q")"
"$cli" data duplicates "$work/q" --all | grep -q "resolved by your marks (--undo $inflating" || fail "resolved group listed with --all"

# Relabel the conflicting pair as cat; then undo both groups.
"$cli" -q data duplicates "$work/q" --relabel "$conflict=cat" | grep -q "0 with different labels" || fail "relabel"
grep -q '"relabelled_from"' "$work/q/dataset.json" || fail "no relabel mark"
out=$("$cli" data duplicates "$work/q" --undo "$inflating" --undo "$conflict")
grep -q "4 to act on — 1 inflate the validation score, 1 with different labels" <<<"$out" || fail "undo: $out"
grep -q '"excluded": true' "$work/q/dataset.json" && fail "undo left an exclusion"
grep -q '"relabelled_from"' "$work/q/dataset.json" && fail "undo left a relabel"

# Exact copies only.
"$cli" data duplicates "$work/q" --threshold 1.5 | grep -q "2 groups of copies" || fail "exact only"

# Errors say what to do.
if "$cli" data duplicates "$work/q" --keep 99=train 2>"$work/err"; then fail "unknown group accepted"; fi
grep -q "there is no group 99" "$work/err" && grep -q "hint: groups are numbered 1 to 4" "$work/err" || fail "group hint: $(cat "$work/err")"
if "$cli" data duplicates "$work/q" --keep "$inflating=test" 2>"$work/err"; then fail "keep in test accepted"; fi
grep -q "not in test" "$work/err" || fail "keep in test message"
if "$cli" data duplicates "$work/q" --relabel "$conflict=horse" 2>"$work/err"; then fail "unknown class accepted"; fi
grep -q "no class named 'horse'" "$work/err" || fail "class message"

# The map of the data: every image of every split, from the learner's pooled features.
if "$cli" data map "$work/q" --out "$work/map.csv" 2>"$work/err"; then fail "map without a learner"; fi
grep -q "hint: create one first" "$work/err" || fail "map hint: $(cat "$work/err")"
"$cli" -q fit "$work/q" --arch resnet18 --size 32 --bs 16 --no-pretrained --cycles 1 >/dev/null
out=$("$cli" data map "$work/q" --out "$work/map.csv")
echo "$out"
grep -q "Wrote the map of 76 images" <<<"$out" || fail "map summary"
grep -q "UMAP" <<<"$out" || fail "map method"
test "$(wc -l <"$work/map.csv")" -eq 77 || fail "map rows"
head -1 "$work/map.csv" | grep -q "^path,split,actual,predicted,mistake,x,y,pca_x,pca_y$" || fail "map header"
test "$(grep -c ',test,,' "$work/map.csv")" -eq 13 || fail "test rows of the map"
ls "$work/q/cache/explain/"embeddings-*.safetensors >/dev/null || fail "embeddings cache"
"$cli" data map "$work/q" --out "$work/map2.csv" >/dev/null
cmp "$work/map.csv" "$work/map2.csv" || fail "the cached map differs"
echo "e2e duplicates: all checks passed"
