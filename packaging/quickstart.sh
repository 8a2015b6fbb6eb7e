#!/usr/bin/env bash
# The README's two Quick start commands. Idempotent: packages already installed and an
# up-to-date build cost only seconds.
#   bash packaging/quickstart.sh demo   install what is missing, build (Release), run the main
#                                       job on the built-in sample competition
#   bash packaging/quickstart.sh test   install what is missing (test tools too), build, run
#                                       the whole test suite
# Which LibTorch it builds against, in this order:
#   WHISKER_LIBTORCH=DIR   a LibTorch you name: the unpacked archive from pytorch.org, or a
#                          PyTorch's cmake folder (python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
#   on a machine with an NVIDIA GPU, a CUDA-enabled PyTorch that python3 (or $WHISKER_PYTHON) imports
#   otherwise Debian's libtorch-dev (CPU only)
# WHISKER_LIBTORCH=debian forces Debian's. It says which one it used and whether it has CUDA.
set -euo pipefail
mode=${1:-demo}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${WHISKER_BUILD_DIR:-$root/build}
jobs=$(nproc)

case $mode in
  demo|test) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

# The folder holding TorchConfig.cmake inside $1 (a LibTorch archive, a prefix or the folder itself).
torch_config_dir() {
  local found
  found=$(find -L "$1" -maxdepth 5 -name TorchConfig.cmake -print -quit 2>/dev/null || true)
  [[ -n "$found" ]] && dirname "$found"
}

# A CUDA-enabled PyTorch's cmake folder, from the first Python that has one.
find_cuda_pytorch() {
  local py out
  for py in ${WHISKER_PYTHON:-} python3 python "${CONDA_PREFIX:+$CONDA_PREFIX/bin/python}"; do
    [[ -n "$py" ]] && command -v "$py" >/dev/null 2>&1 || continue
    out=$("$py" -c 'import torch
if torch.version.cuda: print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
    if [[ -n "$out" ]]; then echo "$out"; return 0; fi
  done
  return 1
}

torch_dir=""
torch_source="Debian's libtorch-dev (CPU only)"
if [[ -n "${WHISKER_LIBTORCH:-}" && "${WHISKER_LIBTORCH}" != debian ]]; then
  torch_dir=$(torch_config_dir "$WHISKER_LIBTORCH") || {
    echo "quickstart: WHISKER_LIBTORCH=$WHISKER_LIBTORCH holds no TorchConfig.cmake; point it at the unpacked" \
         "LibTorch archive (the folder with share/cmake/Torch) or at torch.utils.cmake_prefix_path" >&2
    exit 1
  }
  torch_source="WHISKER_LIBTORCH=$WHISKER_LIBTORCH"
elif [[ -z "${WHISKER_LIBTORCH:-}" ]] && { [[ -e /dev/nvidiactl ]] || nvidia-smi -L >/dev/null 2>&1; }; then
  if prefix=$(find_cuda_pytorch) && torch_dir=$(torch_config_dir "$prefix"); then
    torch_source="the CUDA PyTorch in $prefix (found because this machine has an NVIDIA GPU)"
  else
    torch_dir=""
    echo "quickstart: this machine has an NVIDIA GPU but no CUDA-enabled PyTorch that python3 imports;" \
         "building with Debian's CPU-only LibTorch. For the GPU: pip install torch (2.7 or later), or unpack" \
         "LibTorch (cxx11 ABI, CUDA) from pytorch.org and set WHISKER_LIBTORCH to its folder." >&2
  fi
fi

deps_args=()
[[ $mode == test ]] && deps_args+=(--test)
[[ -n "$torch_dir" ]] && deps_args+=(--no-libtorch)
bash "$root/packaging/install-deps.sh" "${deps_args[@]}"

# Keep CMake's own cache when it is there and was made with the same LibTorch, so an unchanged
# tree rebuilds nothing; another LibTorch starts the configuration afresh (its libraries are cached).
want_torch=${torch_dir:-debian}
if [[ -f "$build/CMakeCache.txt" && "$(cat "$build/whisker-libtorch" 2>/dev/null)" != "$want_torch" ]]; then
  echo "quickstart: the LibTorch changed ($(cat "$build/whisker-libtorch" 2>/dev/null || echo unknown) -> $want_torch); configuring $build afresh"
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
if [[ ! -f "$build/build.ninja" || ! -f "$build/CMakeCache.txt" ]]; then
  torch_args=()
  [[ -n "$torch_dir" ]] && torch_args+=("-DTorch_DIR=$torch_dir")
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWHISKER_BUILD_TESTS=ON "${torch_args[@]}"
  echo "$want_torch" >"$build/whisker-libtorch"
fi
echo "== LibTorch: $torch_source"
grep -h "^WHISKER_TORCH_SUMMARY:" "$build/CMakeCache.txt" | sed 's/^[^=]*=/== /' || true
cmake --build "$build" -j "$jobs"

cli="$build/app/whisker-cli"
case $mode in
  demo)
    work=${WHISKER_DEMO_DIR:-$root/build/demo}
    echo "== Built-in sample competition in $work"
    # 2,000 training images (1,600 train, 400 valid) and 200 test images: enough for a network
    # trained from scratch to learn the sample visibly (about 0.85 valid accuracy).
    "$cli" sample "$work/download" --train 2000 --test 200
    "$cli" data prepare "$work/project" --from "$work/download"
    "$cli" data report "$work/project"
    # The seed's 8 steps (precompute, lr_find, fit, unfreeze, differential rates, SGDR with
    # cycle_mult 2, TTA) with resnet18 at 64 px. With no pretrained weights offline it trains
    # from scratch, says so, and runs the steps adapted to that (about 2 minutes on 2 cores).
    "$cli" run "$work/project" --new-learner --arch resnet18 --size 64 --bs 32
    echo "== Done: $work/project/submission.csv. Open the project in the workbench: $build/app/whisker $work/project"
    ;;
  test)
    cd "$build"
    # The GPU tests (label gpu) run where the build has CUDA and a GPU answers; elsewhere they
    # would only report that they did not run. The across-hosts tests (label netns: ranks in
    # network namespaces) run by hand with `ctest -L netns`: two of their checks still fail
    # (a rank can take 20 s instead of --dist-timeout to end after a link goes down; --resume on
    # another number of hosts differs by ~1e-3), see docs/training.md.
    label_args=(-LE "gpu|netns")
    if grep -q "^WHISKER_TORCH_CUDA:[A-Z]*=ON" CMakeCache.txt && nvidia-smi -L >/dev/null 2>&1; then label_args=(-LE netns); fi
    QT_QPA_PLATFORM=offscreen ctest --output-on-failure -j "$jobs" --timeout 900 "${label_args[@]}"
    ;;
esac
