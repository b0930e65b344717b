#!/usr/bin/env bash
# A Debian 12 arm64 sysroot under build/, for cross-building and for running under qemu-user
# (make test-arm64, make deb ARCH=arm64). Usage: scripts/arm64-sysroot.sh BUILD_DIR
#
# Nothing arm64 is installed into the host: installing arm64 -dev packages with multiarch
# replaces amd64 ones (libcriterion-dev:arm64 removes libcriterion-dev:amd64 and breaks
# `make test`). Instead a private apt (its own lists, cache and an empty dpkg status, with
# APT::Architecture=arm64; the host's sources and settings) resolves the exact set of .deb
# files the libraries and all their dependencies need, downloads them into
# BUILD_DIR/arm64/debs and `dpkg -x` unpacks each into BUILD_DIR/arm64/sysroot. The host's own
# apt state and dpkg database are never touched, so no `dpkg --add-architecture` either.
#
# The resolved set (name version) is written to BUILD_DIR/arm64/packages.txt; the sysroot is
# rebuilt only when that set or this script changes. Host tools it needs (cross compiler,
# qemu-user) are installed by scripts/install-deps.sh --arm64.
set -euo pipefail

BUILD=${1:?usage: arm64-sysroot.sh BUILD_DIR}
BUILD=$(realpath -m "$BUILD")
R=$BUILD/arm64
SYSROOT=$R/sysroot
TRIPLET=aarch64-linux-gnu

# What the programs and the unit tests link (the arm64 twins of scripts/install-deps.sh's
# -dev packages), plus libc6-dev for the C runtime.
PACKAGES=(
  libc6-dev
  libsndfile1-dev libsoxr-dev libfftw3-dev libopenblas-dev libjansson-dev
  portaudio19-dev libasound2-dev libmicrohttpd-dev libinih-dev libsqlite3-dev libsystemd-dev
  libavformat-dev libavcodec-dev libswresample-dev libavutil-dev
  libmosquitto-dev libcriterion-dev
  libcurl4-openssl-dev libssl-dev libpng-dev
  libhdf5-dev libzip-dev nettle-dev
)

mkdir -p "$R/apt/state/lists/partial" "$R/apt/cache" "$R/debs/partial" "$R/apt/etc"
touch "$R/apt/status"
APT=(apt-get -q
  -o "Dir::State=$R/apt/state" -o "Dir::State::status=$R/apt/status"
  -o "Dir::Cache=$R/apt/cache" -o "Dir::Cache::archives=$R/debs"
  -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
  -o "APT::Install-Recommends=0" -o "APT::Install-Suggests=0")

# The arm64 package lists: fetched once, refreshed when older than a day or when a download
# fails (a mirror dropped an old version).
lists_fresh() {
  compgen -G "$R/apt/state/lists/*binary-arm64_Packages*" >/dev/null &&
    [ -z "$(find "$R/apt/state/lists" -maxdepth 1 -name '*binary-arm64_Packages*' -mmin +1440)" ]
}
update_lists() {
  echo "arm64-sysroot: fetching the Debian arm64 package lists" >&2
  "${APT[@]}" update >"$R/apt-update.log" 2>&1 || { cat "$R/apt-update.log" >&2; exit 1; }
}
lists_fresh || update_lists

# Resolve: apt's own resolver, as if installing the packages on an empty arm64 system.
resolve() {
  "${APT[@]}" install -s -y "${PACKAGES[@]}" >"$R/resolve.log" 2>&1 || return 1
  awk '$1 == "Inst" { v = $3; gsub(/[()]/, "", v); print $2, v }' "$R/resolve.log" | sort
}
if ! resolve >"$R/packages.new"; then
  update_lists
  resolve >"$R/packages.new" || { cat "$R/resolve.log" >&2; exit 1; }
fi
[ -s "$R/packages.new" ] || { echo "arm64-sysroot: resolved no packages" >&2; cat "$R/resolve.log" >&2; exit 1; }

stamp=$( (cat "$R/packages.new"; cat "$0") | sha256sum | cut -d' ' -f1)
if [ -f "$SYSROOT/.stamp" ] && [ "$(cat "$SYSROOT/.stamp")" = "$stamp" ]; then
  mv "$R/packages.new" "$R/packages.txt"
  exit 0
fi

# Download (cached in $R/debs: a .deb already there is not fetched again).
if ! "${APT[@]}" install -y --download-only "${PACKAGES[@]}" >"$R/download.log" 2>&1; then
  update_lists
  "${APT[@]}" install -y --download-only "${PACKAGES[@]}" >"$R/download.log" 2>&1 ||
    { cat "$R/download.log" >&2; exit 1; }
fi
mv "$R/packages.new" "$R/packages.txt"
echo "arm64-sysroot: unpacking $(wc -l <"$R/packages.txt") packages into $SYSROOT" >&2

rm -rf "$SYSROOT"
mkdir -p "$SYSROOT"
while read -r name version; do
  # apt names an archive NAME_VERSION_ARCH.deb with the epoch's ':' as %3a
  v=${version//:/%3a}
  deb=$(compgen -G "$R/debs/${name}_${v}_*.deb" | head -n1) ||
    { echo "arm64-sysroot: $name $version was not downloaded" >&2; exit 1; }
  dpkg-deb -x "$deb" "$SYSROOT"
done <"$R/packages.txt"

# Debian 12 is merged-/usr: /lib, /bin and /sbin are links into /usr. Packages still ship
# some files under /lib (the dynamic loader, libc), so merge them as the system would.
for d in lib bin sbin; do
  if [ -d "$SYSROOT/$d" ] && [ ! -L "$SYSROOT/$d" ]; then
    mkdir -p "$SYSROOT/usr/$d"
    cp -a "$SYSROOT/$d/." "$SYSROOT/usr/$d/"
    rm -rf "${SYSROOT:?}/$d"
  fi
  ln -sfn "usr/$d" "$SYSROOT/$d"
done

# What the maintainer scripts would have done: OpenBLAS's update-alternatives links (the
# libraries and openblas.pc live in openblas-pthread/), made relative.
ob=usr/lib/$TRIPLET/openblas-pthread
for f in libopenblas.so.0 libopenblas.so libblas.so.3 libblas.so liblapack.so.3 liblapack.so; do
  [ -e "$SYSROOT/$ob/$f" ] && ln -sfn "openblas-pthread/$f" "$SYSROOT/usr/lib/$TRIPLET/$f"
done
[ -e "$SYSROOT/$ob/pkgconfig/openblas.pc" ] || [ -e "$SYSROOT/$ob/pkgconfig/blas-openblas.pc" ] || {
  echo "arm64-sysroot: no openblas.pc under $ob/pkgconfig" >&2; exit 1; }
mkdir -p "$SYSROOT/usr/lib/$TRIPLET/pkgconfig"
if [ -e "$SYSROOT/$ob/pkgconfig/openblas.pc" ]; then
  ln -sfn "../openblas-pthread/pkgconfig/openblas.pc" "$SYSROOT/usr/lib/$TRIPLET/pkgconfig/openblas.pc"
else
  ln -sfn "../openblas-pthread/pkgconfig/blas-openblas.pc" "$SYSROOT/usr/lib/$TRIPLET/pkgconfig/openblas.pc"
fi

# Absolute symlinks point into the host: make them relative inside the sysroot.
find "$SYSROOT" -type l -lname '/*' -print0 | while IFS= read -r -d '' l; do
  t=$(readlink "$l")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$SYSROOT$t")" "$l"
done

echo "$stamp" >"$SYSROOT/.stamp"
echo "arm64-sysroot: ready ($(du -sh "$SYSROOT" | cut -f1))" >&2
