#!/usr/bin/env bash
# Whisker's loader against PyTorch's (ImageFolder + DataLoader) on the same files, the same
# transforms and the same number of cores. Prints both rates and their ratio.
#   tests/benchmarks/loader_vs_torchvision.sh build/app/whisker-cli [PROJECT] [THREADS]
# Without PROJECT, a sample competition of 1,000 images is made in a temporary folder.
# Needs Debian's python3-torchvision (packaging/install-deps.sh --test installs it).
set -euo pipefail
cli=$(realpath "$1")
project=${2:-}
threads=${3:-$(nproc)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z "$project" ]]; then
  project=$work/project
  "$cli" -q sample "$work/dl" --train 1000 --test 0
  "$cli" -q data prepare "$project" --from "$work/dl"
fi
"$cli" -q data materialize "$project" "$work/layout"

rate() { sed -E 's/.*"images_per_second": ([0-9.]+).*/\1/'; }
# Page cache warm for both: one untimed pass over the files.
cat "$work"/layout/train/*/* >/dev/null
w=$("$cli" --threads "$threads" bench loader "$project" --size 224 --bs 64 --epochs 2 --json)
wc=$("$cli" --threads "$threads" bench loader "$project" --size 224 --bs 64 --epochs 2 --resize-cache --json)
t=$(/usr/bin/python3 "$here/torchvision_loader.py" "$work/layout/train" --size 224 --bs 64 --workers "$threads" --epochs 2)
echo "whisker            : $w"
echo "whisker (cache)    : $wc"
echo "torchvision        : $t"
python3 - "$(rate <<<"$w")" "$(rate <<<"$wc")" "$(rate <<<"$t")" "$threads" <<'PY'
import sys
w, wc, t, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"train-view images/s with {n} threads: whisker {w:.0f}, whisker+resize-cache {wc:.0f}, torchvision {t:.0f}")
print(f"ratio whisker/torchvision = {w / t:.2f}  (with the resize cache: {wc / t:.2f}); target >= 2.0")
PY
