#!/usr/bin/env bash
# Installs every Debian 12 package Whisker needs to build (and, with --test, to run its tests).
# Idempotent: it asks apt only for what is missing, so a second run takes about a second.
#   packaging/install-deps.sh          build + run dependencies
#   packaging/install-deps.sh --test   also what the test suite needs (Xvfb, python3-torchvision
#                                      for reference files and the loader benchmark peer,
#                                      desktop-file-validate and appstreamcli for the packaging test)
#   packaging/install-deps.sh --no-libtorch   without Debian's LibTorch (and Gloo): the build uses
#                                      another LibTorch (WHISKER_LIBTORCH, a CUDA PyTorch)
# libqt6svg6 draws the SVG window icon; librsvg2-bin renders the PNG icon; dpkg-dev and file let
# `cpack -G DEB` compute the package's Depends (dpkg-shlibdeps).
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config
  qt6-base-dev libqcustomplot-dev libquazip1-qt6-dev
  libqt6svg6 librsvg2-bin dpkg-dev file
  libtorch-dev libgloo-dev libopenblas0-pthread
  libopencv-dev libturbojpeg0-dev libexif-dev
  libcurl4-openssl-dev libssl-dev
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
test_packages=(
  xvfb xauth unzip python3-torch python3-torchvision python3-pil
  desktop-file-utils appstream
)

with_tests=0 with_libtorch=1
for arg in "$@"; do
  case $arg in
    --test) with_tests=1 ;;
    --no-libtorch) with_libtorch=0 ;;
    *) echo "usage: $0 [--test] [--no-libtorch]" >&2; exit 2 ;;
  esac
done
want=()
for p in "${build_packages[@]}"; do
  if ((with_libtorch == 0)) && [[ $p == libtorch-dev || $p == libgloo-dev ]]; then continue; fi
  want+=("$p")
done
if ((with_tests)); then want+=("${test_packages[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run this script as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's LibTorch runs matrix products through the BLAS alternative; make sure that is the
# OpenBLAS pthread build (about 20x the reference BLAS on a 2-core machine).
if command -v update-alternatives >/dev/null; then
  arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
  for alt in "libblas.so.3-$arch" "liblapack.so.3-$arch"; do
    lib=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-pthread | head -n1 || true)
    if [[ -n "$lib" ]] && [[ "$(readlink -f /etc/alternatives/$alt)" != "$(readlink -f "$lib")" ]]; then
      update-alternatives --set "$alt" "$lib" >/dev/null
    fi
  done
fi
