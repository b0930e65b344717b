#!/usr/bin/env bash
# Build the Debian package (make deb, make deb ARCH=arm64) with dpkg-deb from packaging/deb/.
# Usage: scripts/make-deb.sh ARCH BIN_DIR OUT_DIR [SYSROOT]
#   ARCH     amd64 or arm64
#   BIN_DIR  the build holding birdsong and birdsongd (build, or build/arm64/out)
#   OUT_DIR  where birdsong_<version>_<arch>.deb goes (build/deb)
#   SYSROOT  arm64 only: the sysroot of scripts/arm64-sysroot.sh, for dpkg-shlibdeps
# Depends: comes from dpkg-shlibdeps on the two programs. For arm64 the libraries are not
# installed on the host, so their shlibs files (from the .debs the sysroot was unpacked from)
# are handed to dpkg-shlibdeps as shlibs.local, and it searches the sysroot's library dirs.
# Then lintian: an error fails the build (the warnings kept are explained in
# docs/operations.md, "The Debian package").
set -euo pipefail
ARCH=${1:?usage: make-deb.sh ARCH BIN_DIR OUT_DIR [SYSROOT]}
BIN=$(realpath "${2:?}")
OUT=$(realpath -m "${3:?}")
SYSROOT=${4:+$(realpath -m "$4")}
cd "$(dirname "$0")/.."
PKG=packaging/deb

case $ARCH in
  amd64) STRIP=strip ;;
  arm64) STRIP=aarch64-linux-gnu-strip
         [ -n "$SYSROOT" ] && [ -d "$SYSROOT" ] || { echo "make-deb: arm64 needs the sysroot (make arm64)" >&2; exit 1; } ;;
  *) echo "make-deb: ARCH must be amd64 or arm64, not '$ARCH'" >&2; exit 2 ;;
esac
for p in birdsong birdsongd; do
  [ -x "$BIN/$p" ] || { echo "make-deb: $BIN/$p is missing (build it first)" >&2; exit 1; }
done

# The version: the changelog's, whose upstream part must be the programs' own.
VERSION=$(sed -n '1s/^birdsong (\([^)]*\)).*/\1/p' $PKG/changelog)
UPSTREAM=$(sed -n 's/^#define BIRDSONG_VERSION "\(.*\)"/\1/p' include/birdsong/version.h | head -n1)
[ "${VERSION%-*}" = "$UPSTREAM" ] || {
  echo "make-deb: packaging/deb/changelog is at $VERSION but the programs say $UPSTREAM: add a changelog entry" >&2
  exit 1; }

R=$OUT/root-$ARCH
rm -rf "$R"
install -d "$R/DEBIAN" "$R/usr/bin" "$R/lib/systemd/system" "$R/etc/birdsong" \
  "$R/usr/share/birdsong/models" "$R/usr/share/man/man1" "$R/usr/share/man/man8" "$R/usr/share/doc/birdsong"

for p in birdsong birdsongd; do
  install -m 0755 "$BIN/$p" "$R/usr/bin/$p"
  $STRIP --remove-section=.comment --remove-section=.note --strip-unneeded "$R/usr/bin/$p"
done
sed 's|@PREFIX@|/usr|g' systemd/birdsongd.service >"$R/lib/systemd/system/birdsongd.service"
# Installed, the configuration names the model by its absolute place, whatever the
# working directory of whoever runs birdsongd with it.
sed 's|^model = models/demo.bsm$|model = /usr/share/birdsong/models/demo.bsm|' etc/birdsongd.conf \
  >"$R/etc/birdsong/birdsongd.conf"
grep -qx 'model = /usr/share/birdsong/models/demo.bsm' "$R/etc/birdsong/birdsongd.conf" || {
  echo "make-deb: etc/birdsongd.conf has no 'model = models/demo.bsm' line to point at the installed model" >&2
  exit 1; }
install -m 0644 models/demo.bsm "$R/usr/share/birdsong/models/demo.bsm"
gzip -9n <docs/man/birdsong.1 >"$R/usr/share/man/man1/birdsong.1.gz"
gzip -9n <docs/man/birdsongd.8 >"$R/usr/share/man/man8/birdsongd.8.gz"
install -m 0644 $PKG/copyright "$R/usr/share/doc/birdsong/copyright"
gzip -9n <$PKG/changelog >"$R/usr/share/doc/birdsong/changelog.Debian.gz"
gzip -9n <models/demo-credits.tsv >"$R/usr/share/doc/birdsong/demo-credits.tsv.gz"
gzip -9n <models/README.md >"$R/usr/share/doc/birdsong/demo-model.md.gz"
chmod 0644 "$R"/lib/systemd/system/* "$R"/etc/birdsong/* "$R"/usr/share/man/man*/* "$R"/usr/share/doc/birdsong/*

install -m 0644 $PKG/conffiles "$R/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$PKG/$s" "$R/DEBIAN/$s"; done

# Depends from the shared libraries the programs link.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/debian"
printf 'Source: birdsong\n\nPackage: birdsong\nArchitecture: any\n' >"$T/debian/control"
shlibdeps=(dpkg-shlibdeps -O)
if [ "$ARCH" = arm64 ]; then
  # the shlibs of every package unpacked into the sysroot
  for deb in "$(dirname "$SYSROOT")"/debs/*.deb; do
    dpkg-deb --info "$deb" shlibs 2>/dev/null || true
  done >"$T/debian/shlibs.local"
  shlibdeps+=(-l"$SYSROOT/usr/lib/aarch64-linux-gnu" -l"$SYSROOT/usr/lib/aarch64-linux-gnu/openblas-pthread")
  export DEB_HOST_ARCH=arm64
fi
deps=$(cd "$T" && "${shlibdeps[@]}" "$R/usr/bin/birdsong" "$R/usr/bin/birdsongd" 2>"$T/shlibdeps.log") || {
  cat "$T/shlibdeps.log" >&2; exit 1; }
grep -v "no dependency information found\|can't extract name and version\|not used by\|binaries to analyze should already be installed in their package's directory" \
  "$T/shlibdeps.log" >&2 || true
DEPENDS=${deps#shlibs:Depends=}
[ -n "$DEPENDS" ] && [ "$DEPENDS" != "$deps" ] || { echo "make-deb: dpkg-shlibdeps gave no Depends: $deps" >&2; exit 1; }
# deb-systemd-helper and deb-systemd-invoke, called by the maintainer scripts
DEPENDS="$DEPENDS, init-system-helpers (>= 1.52)"
# FFmpeg's libraries are loaded only for network sources (daemon/netsource.c), libcurl only for
# webhooks (daemon/webhook.c), with dlopen: the sonames the daemon asks for, as Debian packages
# (libavformat.so.59 -> libavformat59, libcurl.so.4 -> libcurl4)
RECOMMENDS=$(strings "$R/usr/bin/birdsongd" | sed -n -E 's/^.*\<(lib(avformat|avcodec|swresample|avutil|curl))\.so\.([0-9]+)$/\1\3/p' |
  sort -u | paste -sd, - | sed 's/,/, /g')
case "$RECOMMENDS" in
  *libavformat*libcurl*|*libcurl*libavformat*) ;;
  *) echo "make-deb: found no FFmpeg or libcurl soname in birdsongd: '$RECOMMENDS'" >&2; exit 1 ;;
esac

SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$SIZE|" -e "s|@DEPENDS@|$DEPENDS|" \
  -e "s|@RECOMMENDS@|$RECOMMENDS|" \
  $PKG/control.in >"$R/DEBIAN/control"
(cd "$R" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$R/DEBIAN/md5sums"
chmod 0644 "$R/DEBIAN/md5sums" "$R/DEBIAN/control"

DEB=$OUT/birdsong_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >/dev/null
echo "make-deb: $DEB"
echo "make-deb: Depends: $DEPENDS"
echo "make-deb: Recommends: $RECOMMENDS"

if command -v lintian >/dev/null; then
  lintian --fail-on error "$DEB" && echo "make-deb: lintian: no errors"
else
  echo "make-deb: lintian not installed (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
