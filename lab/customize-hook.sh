#!/bin/sh
# mmdebstrap --customize-hook: configure the lab guest. $1 = rootfs directory.
# Environment from scripts/lab_image.py: LAB_PUBKEY, LAB_PYTHON_ROOTFS (path or empty).
set -eu
R=$1

echo lab > "$R/etc/hostname"
cat > "$R/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
127.0.1.1	lab
::1		localhost ip6-localhost ip6-loopback
HOSTS
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$R/etc/fstab"
# QEMU user networking: DHCP from 10.0.2.2, DNS at 10.0.2.3.
rm -f "$R/etc/resolv.conf"
echo 'nameserver 10.0.2.3' > "$R/etc/resolv.conf"
mkdir -p "$R/etc/systemd/network"
cat > "$R/etc/systemd/network/50-lab.network" <<'NET'
[Match]
# Only the virtio NIC: Type=ether would also catch docker's veth peers and pull them off docker0.
Driver=virtio_net

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
mkdir -p "$R/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat > "$R/etc/systemd/system/systemd-networkd-wait-online.service.d/lab.conf" <<'WO'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
WO
systemctl --root="$R" enable systemd-networkd.service
# Nothing in the lab should wait for NTP or apt timers while a test runs.
systemctl --root="$R" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true

# docker (bookworm flavour): socket-activated, so it costs no boot time (30 s of a 50 s TCG boot);
# the first `docker` call starts it. A role that needs it at boot enables docker.service itself.
if [ -e "$R/lib/systemd/system/docker.service" ]; then
  systemctl --root="$R" disable docker.service containerd.service
  systemctl --root="$R" enable docker.socket
fi

# root ssh with the lab key only.
install -d -m 0700 "$R/root/.ssh"
printf '%s\n' "$LAB_PUBKEY" > "$R/root/.ssh/authorized_keys"
chmod 0600 "$R/root/.ssh/authorized_keys"
mkdir -p "$R/etc/ssh/sshd_config.d"
cat > "$R/etc/ssh/sshd_config.d/medai-lab.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
MaxStartups 50:30:100
SSHD

# The kernel is booted directly by QEMU (vmlinuz/initrd next to the image): a kernel upgrade in the
# guest would leave the running kernel without its modules.
chroot "$R" apt-mark hold linux-image-amd64 >/dev/null
# shellcheck disable=SC2016  # ${Package} is dpkg-query's format, not a shell expansion
for p in $(chroot "$R" dpkg-query -W -f='${Package}\n' 'linux-image-[0-9]*'); do chroot "$R" apt-mark hold "$p" >/dev/null; done

# Quieter, faster journald on the serial console; keep logs in RAM and on disk.
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nForwardToConsole=no\n' > "$R/etc/systemd/journald.conf.d/lab.conf"

if [ -n "${LAB_PYTHON_ROOTFS:-}" ]; then
  install -d "$R/opt/medai-lab"
  cp "$LAB_PYTHON_ROOTFS" "$R/opt/medai-lab/python-rootfs.tar"
fi
# Generated at first boot (saved-state VMs share it; see docs/lab.md).
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
