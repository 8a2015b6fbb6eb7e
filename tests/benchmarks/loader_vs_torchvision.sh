#!/usr/bin/env bash
# Whisker's loader against PyTorch's (ImageFolder + DataLoader) on the same files, the same
# transforms (fastai 0.7's side-on training augmentation at 224 px, the train view) and the same
# number of cores, in one run, on two sets of images:
#   sample  the sample competition (small drawings, enlarged to 224 px);
#   photos  2000x1500 photograph-like JPEGs (quality 90) made from the sample's drawings, where
#           Whisker decodes at a reduced DCT scale.
# Each case is measured REPEATS times, Whisker and torchvision alternating (both see the same
# machine load); the script prints every round and the median ratios, of images per second
# (wall clock) and of images per CPU-second (user + system of all threads and worker processes,
# which is steadier on a machine other people are using).
#   tests/benchmarks/loader_vs_torchvision.sh build/app/whisker-cli [THREADS]
# Environment: REPEATS (3), SAMPLE_IMAGES (2000: a 1,600-image train view), PHOTOS (240),
# PROFILE=1 (also print Whisker's per-stage profile of each case), RESIZE_CACHE=1 (also time
# Whisker with its resize cache, which reads re-encoded 291 px copies instead).
# Needs Debian's python3-torchvision and python3-pil (packaging/install-deps.sh --test).
set -euo pipefail
cli=$(realpath "$1")
threads=${2:-$(nproc)}
repeats=${REPEATS:-3}
sample_images=${SAMPLE_IMAGES:-2000}
photos=${PHOTOS:-240}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "making the sample competition ($sample_images images) and $photos photos of 2000x1500 ..."
"$cli" -q sample "$work/dl" --train "$sample_images" --test 0
"$cli" -q data prepare "$work/sample" --from "$work/dl"
"$cli" -q data materialize "$work/sample" "$work/sample-layout"

"$py" - "$work/sample/data/train" "$work/photo-src" "$photos" <<'PY'
import functools, os, sys
import numpy as np
from multiprocessing import Pool
from PIL import Image

# Photograph-like 2000x1500 JPEGs (quality 90): each drawing enlarged (smooth shapes and edges)
# with texture at several scales (fur, grass, sensor grain), so the files carry about as much
# detail as a camera's (~1.9 bits per pixel, ~700 kB) and decoding costs what a photo costs.
W, H = 2000, 1500
src_dir, out_dir, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sources = sorted(os.path.join(r, f) for r, _, fs in os.walk(src_dir) for f in fs if f.endswith(".jpg"))

@functools.lru_cache(maxsize=2)
def texture(seed):
    rng = np.random.default_rng(seed)
    t = np.zeros((H + 64, W + 64), np.float32)
    for cells, amp in ((8, 18), (40, 10), (200, 7), (1000, 5)):
        small = Image.fromarray(rng.normal(0, 1, (cells * 3 // 4 + 1, cells + 1)).astype(np.float32), mode="F")
        t += amp * np.asarray(small.resize((W + 64, H + 64), Image.BICUBIC))
    grain = rng.normal(0, 4.5, (H + 64, W + 64, 3)).astype(np.float32)
    return t, grain

def make(i):
    tex, grain = texture(1000 + i // 16)   # one texture per 16 photos, shifted for each
    dy, dx = (i * 7) % 64, (i * 13) % 64
    src = sources[(i * 37) % len(sources)]
    base = Image.open(src).convert("RGB").resize((W, H), Image.BICUBIC)
    img = np.asarray(base, np.float32) + tex[dy:dy + H, dx:dx + W, None] + grain[dy:dy + H, dx:dx + W]
    cls = "cat" if os.path.basename(src).startswith("cat") else "dog"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(f"{out_dir}/train/{cls}/{cls}.{i}.jpg", quality=90)

if __name__ == "__main__":
    for cls in ("cat", "dog"):
        os.makedirs(f"{out_dir}/train/{cls}", exist_ok=True)
    with Pool(os.cpu_count()) as pool:
        pool.map(make, range(count), chunksize=16)
PY
"$cli" -q data prepare "$work/photos" --from "$work/photo-src"
"$cli" -q data materialize "$work/photos" "$work/photos-layout"
echo "photos: $(du -sh "$work/photo-src" | cut -f1) in $(find "$work/photo-src" -name '*.jpg' | wc -l) files"

# Page cache warm for both: one untimed pass over the files.
cat "$work"/sample-layout/train/*/* "$work"/photos-layout/train/*/* >/dev/null

field() { sed -E "s/.*\"$1\": ([0-9.]+).*/\\1/"; }
results=$work/results.txt
: >"$results"
run_case() {  # name project layout epochs round
  local name=$1 project=$2 layout=$3 epochs=$4 round=$5 w t
  local whisker=("$cli" --threads "$threads" bench loader "$project" --size 224 --bs 64 --epochs "$epochs" --json)
  local peer=("$py" "$here/torchvision_loader.py" "$layout/train" --size 224 --bs 64 --workers "$threads" --epochs "$epochs")
  if (( round % 2 )); then t=$("${peer[@]}"); w=$("${whisker[@]}"); else w=$("${whisker[@]}"); t=$("${peer[@]}"); fi
  echo "$name round $round  whisker: $w"
  echo "$name round $round  torchvision: $t"
  echo "$name $(field images_per_second <<<"$w") $(field images_per_second <<<"$t") $(field images_per_cpu_second <<<"$w") $(field images_per_cpu_second <<<"$t")" >>"$results"
}
for ((r = 1; r <= repeats; r++)); do
  run_case sample "$work/sample" "$work/sample-layout" 2 "$r"
  run_case photos "$work/photos" "$work/photos-layout" 3 "$r"
done
if [[ "${RESIZE_CACHE:-0}" == 1 ]]; then  # the optional pre-shrunk copies (not the same files: re-encoded)
  for c in sample photos; do
    echo "$c with --resize-cache: $("$cli" --threads "$threads" bench loader "$work/$c" --size 224 --bs 64 --epochs 2 --resize-cache --json)"
  done
fi
if [[ "${PROFILE:-0}" == 1 ]]; then
  "$cli" --threads "$threads" bench loader "$work/sample" --size 224 --bs 64 --epochs 2 --profile
  "$cli" --threads "$threads" bench loader "$work/photos" --size 224 --bs 64 --epochs 3 --profile
fi

python3 - "$results" "$threads" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print(f"\ntrain view, side-on augmentation, 224 px, {sys.argv[2]} threads/workers; medians of {len(rows) // 2} rounds")
for name, target in (("sample", 2.0), ("photos", 4.0)):
    r = [[float(v) for v in row[1:]] for row in rows if row[0] == name]
    med = lambda i: statistics.median(x[i] for x in r)
    ratio = statistics.median(x[0] / x[1] for x in r)
    cpu_ratio = statistics.median(x[2] / x[3] for x in r)
    print(f"{name:7s} images/s: whisker {med(0):6.1f}  torchvision {med(1):6.1f}  ratio {ratio:4.2f}"
          f"   | per CPU-second: whisker {med(2):6.1f}  torchvision {med(3):6.1f}  ratio {cpu_ratio:4.2f}"
          f"   (target >= {target:g})")
PY
