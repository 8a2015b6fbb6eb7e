#!/usr/bin/env bash
# Whisker's training step against PyTorch's (Debian's python3-torch, same LibTorch, same
# threads) for the same network and batch. Prints both rates and the ratio (target >= 1.0).
#   tests/benchmarks/train_vs_pytorch.sh build/app/whisker-cli [ARCH] [SIZE] [BS] [STEPS]
set -euo pipefail
cli=$1 arch=${2:-resnet34} size=${3:-224} bs=${4:-16} steps=${5:-10}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
threads=$(nproc)
rate() { sed -E 's/.*"images_per_second": ?([0-9.]+).*/\1/'; }
w=$("$cli" --threads "$threads" bench train --arch "$arch" --size "$size" --bs "$bs" --steps "$steps" --precision fp32 --no-record --json)
p=$(/usr/bin/python3 "$here/pytorch_train_step.py" --arch "$arch" --size "$size" --bs "$bs" --steps "$steps" --threads "$threads")
echo "whisker : $w"
echo "pytorch : $p"
python3 -c "
w, p = float('$(rate <<<"$w")'), float('$(rate <<<"$p")')
print(f'train step images/s, $arch at $size px, batch $bs, $threads threads: whisker {w:.2f}, pytorch {p:.2f}, ratio {w / p:.2f} (target >= 1.0)')"
