#!/bin/sh
# Installs the Debian packages the build and tests need, only where missing.
# Usage: scripts/deps.sh build|test|demo|bench|fuzz [--check]
# --check installs nothing: it names what is missing and fails (plain `make`).
set -eu
pkgs="build-essential pkg-config libltdl-dev libconfig-dev libopenblas-dev libopenmpi-dev openmpi-bin \
libjpeg62-turbo-dev libpng-dev libyajl-dev libxml2-dev"
# protoc-c generates the protocol buffer code of proto/ (TensorBoard events, ONNX models)
pkgs="$pkgs libprotobuf-c-dev protobuf-c-compiler"
# drawing (core/visualization/draw.c): cairo, pango and the font it names
pkgs="$pkgs libcairo2-dev libpango1.0-dev fonts-dejavu-core"
case "${1:-build}" in
  test) pkgs="$pkgs libcriterion-dev valgrind" ;;
  bench) pkgs="$pkgs python3-torch python3-torchvision python3-numpy" ;;
  fuzz) pkgs="$pkgs clang libclang-rt-14-dev libomp-dev" ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "${2:-}" = --check ]; then
  echo "deps: missing packages:$missing" >&2
  echo "deps: install them with apt-get install$missing, or run make deps as root (make test and make demo install what they need)" >&2
  exit 1
fi
echo "deps: installing$missing"
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing; run as root or install them with apt-get" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
