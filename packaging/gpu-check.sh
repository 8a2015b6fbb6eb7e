#!/usr/bin/env bash
# The GPU check: for a machine with an NVIDIA GPU and a CUDA PyTorch (pip or conda) installed.
#   bash packaging/gpu-check.sh [BUILD_DIR]        (default: build-gpu beside build/)
# 1. says what the machine has (GPU, driver, PyTorch, CUDA, the toolkit LibTorch's CMake files need);
# 2. builds what it can against that PyTorch's LibTorch — whisker_core, whisker-cli and the GPU
#    tests (no GUI) — and says what it could not build and why (a missing library, say);
# 3. runs the GPU tests (ctest -L gpu);
# 4. times `bench train` and `bench predict` for resnet50 and convnext_tiny at 224 px against the
#    same networks in that machine's PyTorch, at the same precision (and PyTorch in fp32), and
#    prints one table.
# WHISKER_LIBTORCH=DIR uses another LibTorch (as quickstart.sh), WHISKER_PYTHON another Python.
# Needs no network. Meant to finish in under 10 minutes on a current GPU (the build is most of it).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-gpu}
py=${WHISKER_PYTHON:-python3}
jobs=$(nproc)
bs=${WHISKER_GPU_CHECK_BS:-64}
steps=${WHISKER_GPU_CHECK_STEPS:-20}
problems=()
say() { printf 'gpu-check: %s\n' "$*"; }
problem() { problems+=("$*"); say "PROBLEM: $*"; }
started=$(date +%s)

echo "== The machine"
if nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null; then :
else problem "no NVIDIA GPU answers (nvidia-smi failed or is missing)"; fi
torch_info=$("$py" - <<'PY' 2>&1
import torch
print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "GPU available", torch.cuda.is_available(),
      "C++11 ABI", torch._C._GLIBCXX_USE_CXX11_ABI)
print("CMAKE", torch.utils.cmake_prefix_path)
PY
)
echo "$torch_info" | grep -v '^CMAKE'
torch_prefix=$(echo "$torch_info" | sed -n 's/^CMAKE //p')
if [[ -n "${WHISKER_LIBTORCH:-}" ]]; then torch_prefix=$WHISKER_LIBTORCH; fi
torch_dir=""
if [[ -n "$torch_prefix" ]]; then
  found=$(find -L "$torch_prefix" -maxdepth 5 -name TorchConfig.cmake -print -quit 2>/dev/null)
  [[ -n "$found" ]] && torch_dir=$(dirname "$found")
fi
[[ -z "$torch_dir" ]] && problem "no LibTorch CMake files found ($py has no torch, and WHISKER_LIBTORCH is not set)"
if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  problem "no CUDA toolkit (nvcc): a CUDA LibTorch's CMake files need it to configure; install the toolkit matching torch.version.cuda"
fi
command -v cmake >/dev/null || problem "cmake is missing"
generator=(-G Ninja); command -v ninja >/dev/null || generator=()

echo "== Build ($build, against ${torch_dir:-nothing})"
built=0
if [[ -n "$torch_dir" ]] && command -v cmake >/dev/null; then
  mkdir -p "$build"
  if cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DWHISKER_BUILD_GUI=OFF \
       -DWHISKER_BUILD_TESTS=ON -DTorch_DIR="$torch_dir" >"$build/configure.log" 2>&1; then
    grep -h "LibTorch .* from" "$build/configure.log" | sed 's/^-- /gpu-check: /'
    if cmake --build "$build" -j "$jobs" --target whisker-cli test_gpu >"$build/build.log" 2>&1; then
      built=1
      say "built whisker_core, whisker-cli and test_gpu"
    else
      problem "the build failed; the first errors (all of it in $build/build.log):"
      grep -m 15 -E "error|Error" "$build/build.log"
    fi
  else
    problem "CMake could not configure Whisker here; what is missing (all of it in $build/configure.log):"
    grep -E "Could NOT find|not found|Could not find|FATAL_ERROR|CMake Error|package configuration file" \
      "$build/configure.log" | sort -u | head -20
    say "Whisker's core needs OpenCV 4.5+, Qt 6 Core, QuaZip (Qt 6), libcurl, OpenSSL, libturbojpeg, libexif,"
    say "nlohmann-json, fmt, spdlog, CLI11 and GoogleTest (Debian 12: bash packaging/install-deps.sh --test --no-libtorch)"
  fi
fi

echo "== GPU tests"
if ((built)); then
  (cd "$build" && ctest -L gpu --output-on-failure --timeout 600) || problem "GPU tests failed (above)"
else
  say "not run: nothing was built"
fi

echo "== Speed: whisker-cli bench against PyTorch, 224 px, batch $bs, $steps timed steps (images/s)"
cli="$build/app/whisker-cli"
precision=fp32
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1)
[[ -n "$cap" ]] && { if [[ ${cap%%.*} -ge 8 ]]; then precision=bf16; else precision=fp16; fi; }
peer() {  # arch mode precision [--channels-last]
  "$py" "$root/tests/benchmarks/pytorch_train_step.py" --arch "$1" --mode "$2" --precision "$3" --device cuda \
    --size 224 --bs "$bs" --steps "$steps" --threads "$jobs" "${@:4}" 2>/dev/null |
    sed -n 's/.*"images_per_second": \([0-9.]*\).*/\1/p'
}
ours() {  # arch mode precision [--channels-last | --no-channels-last]
  ((built)) || return 0
  "$cli" -q bench "$2" --arch "$1" --size 224 --bs "$bs" --steps "$steps" --precision "$3" --no-record --json "${@:4}" 2>/dev/null |
    sed -n 's/.*"images_per_second":\([0-9.]*\).*/\1/p'
}
ratio() { [[ -n "$1" && -n "$2" ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' || echo "-"; }
say "whisker, PyTorch: contiguous (NCHW) weights and batch; c-last: channels-last (NHWC); PyT fp32: contiguous"
printf '%-14s %-8s %-6s %12s %12s %7s %14s %12s %7s\n' arch mode prec whisker PyTorch ratio "whisker c-last" "PyTorch c-last" "PyT fp32"
for arch in resnet50 convnext_tiny; do
  for mode in train predict; do
    # Contiguous against contiguous, channels-last against channels-last: the bench's default
    # format is the one a fit would use, so both are named.
    w=$(ours "$arch" "$mode" "$precision" --no-channels-last); p=$(peer "$arch" "$mode" "$precision")
    wcl=$(ours "$arch" "$mode" "$precision" --channels-last); pcl=$(peer "$arch" "$mode" "$precision" --channels-last)
    p32=$(peer "$arch" "$mode" fp32)
    printf '%-14s %-8s %-6s %12s %12s %7s %14s %12s %7s\n' "$arch" "$mode" "$precision" "${w:--}" "${p:--}" \
      "$(ratio "$w" "$p")" "${wcl:--}" "${pcl:--}" "${p32:--}"
  done
done

echo "== Done in $(( $(date +%s) - started )) s"
if ((${#problems[@]})); then
  say "${#problems[@]} problem(s):"
  printf '  - %s\n' "${problems[@]}"
  exit 1
fi
