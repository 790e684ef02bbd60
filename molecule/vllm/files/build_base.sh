#!/bin/sh
# TEST FIXTURE: build the base image medai-lab/python-slim:1 inside the lab guest from the guest's own
# files: python3.11 + its standard library with its compiled .pyc (without them every start compiles the
# imports again: seconds under TCG) minus test/IDE/tk parts + the shared libraries
# it needs + /usr/bin/env (the stand-in's shebang). ~35 MB: `docker import` takes ~15 s under TCG,
# against ~70 s for /opt/medai-lab/python-rootfs.tar (python3-minimal, which also lacks http.server and
# urllib.request that the stand-in needs). Idempotent: does nothing when the image exists.
set -eu
IMAGE=medai-lab/python-slim:1
if docker image inspect "$IMAGE" >/dev/null 2>&1; then echo "exists: $IMAGE"; exit 0; fi
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PY=/usr/bin/python3.11
LIBS=$( { ldd "$PY"; for f in /usr/lib/python3.11/lib-dynload/*.so; do ldd "$f"; done; } 2>/dev/null \
  | awk '/=>/ && $3 ~ /^\// {print $3}' | sort -u \
  | grep -E '/(libc|libm|libz|libexpat|libffi|libssl|libcrypto|libbz2|liblzma|libuuid)\.so' )
X=usr/lib/python3.11
# shellcheck disable=SC2086
# shellcheck disable=SC2046  # the library list is split into arguments on purpose
tar -C / -ch -f "$STAGE/base.tar" \
  --exclude='*.opt-1.pyc' --exclude='*.opt-2.pyc' --exclude=$X/test --exclude=$X/idlelib --exclude=$X/lib2to3 --exclude=$X/pydoc_data \
  --exclude=$X/tkinter --exclude=$X/ensurepip --exclude=$X/distutils --exclude=$X/turtledemo \
  --exclude=$X/config-3.11-x86_64-linux-gnu \
  ${PY#/} usr/bin/env $X lib64/ld-linux-x86-64.so.2 $(echo "$LIBS" | sed 's|^/||')
mkdir -p "$STAGE/root/usr/bin" "$STAGE/root/tmp"
ln -s python3.11 "$STAGE/root/usr/bin/python3"
chmod 1777 "$STAGE/root/tmp"
tar -C "$STAGE/root" -rf "$STAGE/base.tar" usr/bin/python3 tmp
docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'ENV LANG=C.UTF-8' "$STAGE/base.tar" "$IMAGE"
echo "imported: $IMAGE"
