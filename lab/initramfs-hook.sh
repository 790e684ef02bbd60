#!/bin/sh
# initramfs-tools hook (installed as /etc/initramfs-tools/hooks/medai-lab in lab images).
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk ext4; do force_load "$m"; done
manual_add_modules virtio_net virtio_scsi virtio_rng crc32c_generic crc32c_intel
exit 0
