#!/usr/bin/env bash
# The README's two Quick start commands. Idempotent: packages already installed and an
# up-to-date build cost only seconds.
#   bash packaging/quickstart.sh demo   install what is missing, build (Release), run the main
#                                       job on the built-in sample competition
#   bash packaging/quickstart.sh test   install what is missing (test tools too), build, run
#                                       the whole test suite
set -euo pipefail
mode=${1:-demo}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${WHISKER_BUILD_DIR:-$root/build}
jobs=$(nproc)

case $mode in
  demo) bash "$root/packaging/install-deps.sh" ;;
  test) bash "$root/packaging/install-deps.sh" --test ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

# Keep CMake's own cache when it is there, so an unchanged tree rebuilds nothing.
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWHISKER_BUILD_TESTS=ON
fi
cmake --build "$build" -j "$jobs"

cli="$build/app/whisker-cli"
case $mode in
  demo)
    work=${WHISKER_DEMO_DIR:-$root/build/demo}
    echo "== Built-in sample competition in $work"
    "$cli" sample "$work/download"
    "$cli" data prepare "$work/project" --from "$work/download"
    "$cli" data report "$work/project"
    # The seed's 8 steps (precompute, lr_find, fit, unfreeze, differential rates, SGDR with
    # cycle_mult 2, TTA) in a configuration a CPU runs in about a minute; with no pretrained
    # weights offline it trains from scratch and says so.
    "$cli" run "$work/project" --new-learner --arch resnet18 --size 64 --bs 32
    echo "== Done: $work/project/submission.csv. Open the project in the workbench: $build/app/whisker $work/project"
    ;;
  test)
    cd "$build"
    QT_QPA_PLATFORM=offscreen ctest --output-on-failure -j "$jobs" --timeout 900
    ;;
esac
