#!/usr/bin/env bash
# Whisker against PyTorch (Debian's python3-torch, same LibTorch, same threads, same batch,
# fp32) for training steps and predictions of whole networks (body + fastai head), one
# architecture after the other in one run. Prints a table of images/s and the ratios
# (target >= 1.0 for each), and each process's peak memory (resident set, MiB: the network,
# its optimiser state and the step's activations, plus the runtime: Python's is larger).
#   [PRECISION=fp32|bf16] tests/benchmarks/arch_vs_pytorch.sh build/app/whisker-cli [SIZE] [BS] [STEPS] [ARCH...]
# PRECISION (default fp32) applies to both sides (bf16: autocast on the CPU).
set -euo pipefail
cli=$1 size=${2:-224} bs=${3:-16} steps=${4:-5} precision=${PRECISION:-fp32}
shift $(( $# < 4 ? $# : 4 ))
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(convnext_tiny efficientnet_b0 regnet_y_800mf mobilenet_v3_large swin_t resnet34)
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time for the memory columns: apt-get install time" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
threads=$(nproc)
rate() { sed -E 's/.*"images_per_second": ?([0-9.]+).*/\1/'; }
mem=$(mktemp)
trap 'rm -f "$mem"' EXIT
printf '%-20s %-8s %10s %10s %6s %12s %12s\n' arch mode whisker pytorch ratio "whisker MiB" "pytorch MiB"
for arch in "${archs[@]}"; do
  for mode in train predict; do
    w=$(/usr/bin/time -f %M -o "$mem" "$cli" --threads "$threads" bench "$mode" --arch "$arch" --size "$size" --bs "$bs" \
          --steps "$steps" --precision "$precision" --no-record --json | rate)
    wm=$(tail -1 "$mem")
    p=$(/usr/bin/time -f %M -o "$mem" /usr/bin/python3 "$here/pytorch_train_step.py" --mode "$mode" --arch "$arch" \
          --size "$size" --bs "$bs" --steps "$steps" --threads "$threads" --precision "$precision" | rate)
    pm=$(tail -1 "$mem")
    python3 -c "print(f'%-20s %-8s %10.2f %10.2f %6.2f %12d %12d' % ('$arch', '$mode', $w, $p, $w / $p, $wm // 1024, $pm // 1024))"
  done
done
echo "($size px, batch $bs, $steps timed steps after 2 warm-up, $threads threads, $precision; images/s)"
