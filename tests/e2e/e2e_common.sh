# Sourced by the end-to-end scripts that start whisker-cli in the background: a scratch folder
# $work, one background process $bg killed on exit (a failed check must not leave a training
# running), and fail(). The caller sets `set -euo pipefail` itself.
work=$(mktemp -d)
bg=""
cleanup() {
  if [ -n "$bg" ]; then kill -9 "$bg" 2>/dev/null || true; wait "$bg" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
