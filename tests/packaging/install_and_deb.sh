#!/usr/bin/env bash
# Packaging: `cmake --install` into a temporary root, then (where dpkg-deb is present) the .deb
# from `cpack -G DEB`: its files, its Depends, and that the binaries in it run. Builds nothing.
#   install_and_deb.sh BUILD_DIR GUI(0|1) APP_ID VERSION
set -euo pipefail
build=$1 gui=$2 appid=$3 version=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export QT_QPA_PLATFORM=offscreen

# The files every install must hold, under ROOT (a DESTDIR or an extracted .deb).
check_tree() {
  local root=$1 what=$2 usr=$1/usr
  test -x "$usr/bin/whisker-cli" || fail "$what: bin/whisker-cli missing or not executable"
  test -f "$usr/share/doc/whisker/README.md" || fail "$what: share/doc/whisker/README.md"
  test -f "$usr/share/doc/whisker/docs/projects.md" || fail "$what: share/doc/whisker/docs/projects.md"
  out=$("$usr/bin/whisker-cli" --version 2>&1) || fail "$what: whisker-cli --version exits $?: $out"
  grep -qF "$version" <<<"$out" || fail "$what: whisker-cli --version says '$out', not $version"
  "$usr/bin/whisker-cli" --help >/dev/null || fail "$what: whisker-cli --help"
  [[ $gui == 1 ]] || return 0

  test -x "$usr/bin/whisker" || fail "$what: bin/whisker missing or not executable"
  out=$("$usr/bin/whisker" --version 2>&1) || fail "$what: whisker --version exits $?: $out"
  grep -qF "$version" <<<"$out" || fail "$what: whisker --version says '$out'"

  local desktop=$usr/share/applications/$appid.desktop
  test -f "$desktop" || fail "$what: $desktop"
  grep -Eq '^Exec=whisker( |$)' "$desktop" || fail "$what: Exec= is not whisker"
  grep -qx "Icon=$appid" "$desktop" || fail "$what: Icon= is not $appid"
  grep -qx "Type=Application" "$desktop" || fail "$what: Type=Application"

  local svg=$usr/share/icons/hicolor/scalable/apps/$appid.svg
  test -s "$svg" && grep -q "<svg" "$svg" || fail "$what: scalable icon $svg"
  local png=$usr/share/icons/hicolor/256x256/apps/$appid.png
  if [[ -e $png ]]; then
    [[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "$what: $png is no PNG"
  fi

  local meta=$usr/share/metainfo/$appid.metainfo.xml
  test -f "$meta" || fail "$what: $meta"
  grep -q "<id>$appid</id>" "$meta" || fail "$what: metainfo id"
  grep -q "<launchable type=\"desktop-id\">$appid.desktop</launchable>" "$meta" || fail "$what: metainfo launchable"
  grep -q "<binary>whisker-cli</binary>" "$meta" || fail "$what: metainfo provides whisker-cli"
  grep -q "<release version=\"$version\"" "$meta" || fail "$what: metainfo release $version"
  if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$desktop" || fail "$what: desktop-file-validate"
  else echo "(desktop-file-validate not installed: packaging/install-deps.sh --test)"; fi
  if command -v appstreamcli >/dev/null; then
    appstreamcli validate --no-net "$meta" || fail "$what: appstreamcli validate"
  else echo "(appstreamcli not installed: packaging/install-deps.sh --test)"; fi
}

echo "== cmake --install into a temporary root"
DESTDIR=$work/root cmake --install "$build" --prefix /usr >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
check_tree "$work/root" "cmake --install"
echo "installed:"; (cd "$work/root" && find . -type f | sort)

if ! command -v dpkg-deb >/dev/null || ! command -v cpack >/dev/null; then
  echo "dpkg-deb or cpack not found: the .deb part is skipped"; exit 0
fi
echo "== cpack -G DEB"
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/deb") >"$work/cpack.log" 2>&1 \
  || { cat "$work/cpack.log"; fail "cpack -G DEB"; }
deb=$(find "$work/deb" -maxdepth 1 -name "whisker_${version}_*.deb")
[[ -n $deb && $(wc -l <<<"$deb") == 1 ]] || { cat "$work/cpack.log"; fail "no whisker_${version}_*.deb"; }
dpkg-deb -I "$deb"
contents=$(dpkg-deb -c "$deb")
grep -q '\./usr/bin/whisker-cli$' <<<"$contents" || fail ".deb lacks /usr/bin/whisker-cli"
for field in Package Version Maintainer Description Section Homepage; do
  [[ -n $(dpkg-deb -f "$deb" "$field") ]] || fail ".deb has no $field"
done
[[ $(dpkg-deb -f "$deb" Package) == whisker && $(dpkg-deb -f "$deb" Version) == "$version" ]] || fail ".deb name/version"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in libtorch libqt6core6 libopencv-core libquazip1-qt6 libcurl libturbojpeg libc6; do
  grep -q "$lib" <<<"$depends" || fail ".deb Depends lacks $lib"
done
if [[ $gui == 1 ]]; then
  for lib in libqt6widgets6 libqt6gui6 libqcustomplot libqt6svg6; do
    grep -q "$lib" <<<"$depends" || fail ".deb Depends lacks $lib"
  done
  grep -q "\./usr/share/applications/$appid\.desktop$" <<<"$contents" || fail ".deb lacks the .desktop file"
fi
dpkg-deb -x "$deb" "$work/deb-root"
check_tree "$work/deb-root" ".deb"
echo "OK: install tree and $(basename "$deb")"
