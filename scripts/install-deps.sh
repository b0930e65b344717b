#!/usr/bin/env bash
# Install the Debian 12 packages birdsong needs to build, test and run.
# Idempotent: when every package is already installed it calls no apt command at all.
# Usage: scripts/install-deps.sh [--bench] [--arm64]
#   --bench  what `make bench` needs
#   --arm64  the cross compiler and qemu-user for `make test-arm64` (host packages only: the
#            arm64 libraries are unpacked into a sysroot, never installed; arm64-sysroot.sh)
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libsndfile1-dev libsoxr-dev libfftw3-dev libopenblas-dev libjansson-dev
  portaudio19-dev libasound2-dev libmicrohttpd-dev libinih-dev libsqlite3-dev libsystemd-dev
  libavformat-dev libavcodec-dev libswresample-dev libavutil-dev
  libcriterion-dev libmosquitto-dev mosquitto chromium
  python3 python3-numpy python3-pytest python3-yaml espeak-ng python3-h5py
  libcurl4-openssl-dev libssl-dev libpng-dev
  libhdf5-dev libzip-dev nettle-dev
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  # the ffmpeg CLI: real stream servers in the tests (a test tool: not linked, not in the arm64 sysroot)
  ffmpeg
  clang libclang-rt-14-dev
  openmpi-bin libopenmpi-dev
  systemd
  dpkg-dev lintian
)
for opt in "$@"; do
  case $opt in
    --bench) PACKAGES+=(wrk time) ;;
    --arm64) PACKAGES+=(gcc-aarch64-linux-gnu qemu-user) ;;
    *) echo "install-deps: unknown option $opt" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  case "$status" in
    ii*) ;;
    *) missing+=("$p") ;;
  esac
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${#missing[@]} Debian package(s): ${missing[*]}" >&2

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
  SUDO=(sudo)
else
  echo "install-deps: these packages are missing and I am neither root nor able to use sudo:" >&2
  echo "  ${missing[*]}" >&2
  echo "Ask an administrator to run:  apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# An old or empty package list makes apt-get install fail for packages it cannot find.
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/birdsong-apt.log 2>&1; then
  "${SUDO[@]}" apt-get update -q >/dev/null
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "install-deps: done" >&2
