#!/bin/sh
# mmdebstrap --essential-hook: runs after the Essential set is installed and before the kernel is,
# so the kernel's postinst already builds the small initramfs. $1 = rootfs directory.
set -eu
R=$1
HERE=$(dirname "$0")
mkdir -p "$R/etc/initramfs-tools/conf.d" "$R/etc/initramfs-tools/hooks"
cat > "$R/etc/initramfs-tools/conf.d/medai-lab" <<'CONF'
# medai lab: only the modules a QEMU virtio guest needs (6 MB instead of 36 MB).
MODULES=list
COMPRESS=zstd
CONF
install -m 0755 "$HERE/initramfs-hook.sh" "$R/etc/initramfs-tools/hooks/medai-lab"
