#!/usr/bin/env bash
# Starts the real `whisker` binary on a prepared sample project, lets it save a screenshot of
# its window and checks it quits cleanly. Uses Xvfb when available (a real X server), else
# Qt's offscreen platform.
set -euo pipefail
whisker=$1 cli=$2 out=$3
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cli" -q sample "$work/dl" --train 40 --test 10
"$cli" -q data prepare "$work/project" --from "$work/dl"
export XDG_CONFIG_HOME="$work/config"
if command -v xvfb-run >/dev/null; then
  xvfb-run -a -s "-screen 0 1280x800x24" "$whisker" --screenshot "$out/whisker_xvfb.png" "$work/project"
  shot="$out/whisker_xvfb.png"
else
  QT_QPA_PLATFORM=offscreen "$whisker" --screenshot "$out/whisker_offscreen.png" "$work/project"
  shot="$out/whisker_offscreen.png"
fi
# A real PNG of a real window size.
head -c 8 "$shot" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a"
size=$(stat -c %s "$shot")
test "$size" -gt 10000
# And it quits by itself.
QT_QPA_PLATFORM=offscreen timeout 60 "$whisker" --quit-after 300 "$work/project"
echo "screenshot: $shot ($size bytes)"
