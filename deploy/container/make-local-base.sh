#!/bin/sh
# Make a local base image for deploy/container/Dockerfile from Debian's packages, on a
# machine that reaches a Debian mirror but no container registry (as root, with
# mmdebstrap installed):
#   deploy/container/make-local-base.sh [podman|docker]
#   podman build --build-arg BASE=localhost/fruit-python-base:bookworm \
#       -f deploy/container/Dockerfile -t fruit-catalog .
# Debian 12's Python is 3.11, the oldest the scripts support; apt stays in the image
# because the Dockerfile installs the fonts with it.
set -eu
engine=${1:-podman}
image=localhost/fruit-python-base:bookworm
rootfs=$(mktemp --suffix=.tar)
trap 'rm -f "$rootfs"' EXIT
mmdebstrap --variant=apt --include=python3,python3-venv,passwd,ca-certificates \
    bookworm "$rootfs"
"$engine" import --change 'CMD ["python3"]' "$rootfs" "$image"
echo "$image"
