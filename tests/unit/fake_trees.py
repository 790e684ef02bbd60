# -*- coding: utf-8 -*-
"""Fake sysfs/procfs trees for unit tests, with a small kernel emulation for writes.

`FakeKernel(root, monkeypatch)` points knob.ROOT at `root` and replaces knob._write_file so that
writes behave like the kernel's: a bracketed-choice file (``always [madvise] never``) moves the
brackets to the written choice and rejects anything else with EINVAL; numeric knobs can be given
a range (EINVAL outside it); a knob can be made read-only (EACCES) or to silently not take a value.
Layouts copied from real machines live in the `layout_*` helpers.
"""
from __future__ import absolute_import, division, print_function

import errno
import os

from ansible_collections.medai.llmhost.plugins.module_utils import knob


class FakeKernel(object):

    def __init__(self, root, monkeypatch=None, release='6.1.0-28-amd64'):
        self.root = root
        self.ranges = {}
        self.sticky = {}
        self.readonly = set()
        self.writes = []
        self.hooks = {}
        if monkeypatch is not None:
            monkeypatch.setattr(knob, 'ROOT', root)
            monkeypatch.setattr(knob, '_write_file', self.write_file)
            monkeypatch.setattr(knob, 'kernel_release', lambda: self.release)
        self.release = release

    # -- building trees
    def path(self, p):
        return os.path.join(self.root, p.lstrip('/'))

    def file(self, p, content='', mode=0o644):
        hp = self.path(p)
        d = os.path.dirname(hp)
        if not os.path.isdir(d):
            os.makedirs(d)
        with open(hp, 'w') as f:
            f.write(content if content.endswith('\n') or content == '' else content + '\n')
        os.chmod(hp, mode)
        if not mode & 0o222:
            self.readonly.add(hp)
        return hp

    def symlink(self, target, p):
        hp = self.path(p)
        d = os.path.dirname(hp)
        if not os.path.isdir(d):
            os.makedirs(d)
        os.symlink(target if not target.startswith('/') else self.path(target), hp)
        return hp

    def read(self, p):
        with open(self.path(p)) as f:
            return f.read()

    def set_range(self, p, lo, hi):
        self.ranges[self.path(p)] = (lo, hi)

    def set_sticky(self, p, effective):
        """The kernel accepts writes to p but keeps reporting `effective` (written != effective)."""
        self.sticky[self.path(p)] = effective

    # -- kernel emulation
    def write_file(self, hp, data):
        value = data.strip()
        if hp in self.readonly:
            raise OSError(errno.EACCES, 'Permission denied')
        if hp in self.hooks:
            self.hooks[hp](value)
        with open(hp) as f:
            cur = f.read()
        text = cur.strip()
        if '[' in text and '\n' not in text:
            choices = [c.strip('[]') for c in text.split()]
            if value not in choices:
                raise OSError(errno.EINVAL, 'Invalid argument')
            new = ' '.join('[%s]' % c if c == value else c for c in choices)
        else:
            if hp in self.ranges:
                lo, hi = self.ranges[hp]
                try:
                    iv = int(value)
                except ValueError:
                    raise OSError(errno.EINVAL, 'Invalid argument')
                if not lo <= iv <= hi:
                    raise OSError(errno.EINVAL, 'Invalid argument')
            new = value
        if hp in self.sticky:
            new = self.sticky[hp]
        self.writes.append((hp[len(self.root):], value))
        with open(hp, 'w') as f:
            f.write(new + '\n')


# ---------------------------------------------------------------- realistic layouts

def layout_thp(fk, enabled='always [madvise] never', defrag='always defer defer+madvise [madvise] never'):
    fk.file('/sys/kernel/mm/transparent_hugepage/enabled', enabled)
    fk.file('/sys/kernel/mm/transparent_hugepage/defrag', defrag)
    fk.file('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', '2097152', mode=0o444)


def layout_vm_sysctls(fk):
    fk.file('/proc/sys/vm/swappiness', '60')
    fk.set_range('/proc/sys/vm/swappiness', 0, 200)
    fk.file('/proc/sys/vm/min_free_kbytes', '67584')
    fk.file('/proc/sys/vm/watermark_scale_factor', '10')
    fk.set_range('/proc/sys/vm/watermark_scale_factor', 1, 3000)
    fk.file('/proc/sys/vm/watermark_boost_factor', '15000')
    fk.file('/proc/sys/kernel/numa_balancing', '1')
    fk.file('/proc/sys/kernel/sched_rt_runtime_us', '950000')
    fk.file('/proc/sys/kernel/sched_rt_period_us', '1000000')
    fk.file('/proc/cmdline', 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=1234 ro quiet', mode=0o444)


def layout_meminfo(fk, total_kb=16777216):
    """A /proc/meminfo with MemTotal `total_kb` (16 GiB by default): sysfs_param's vm.min_free_kbytes bound."""
    fk.file('/proc/meminfo', 'MemTotal:       %d kB\nMemFree:        %d kB\n' % (total_kb, total_kb // 2))


def layout_zswap(fk, with_newer=False, compressor='lzo', zpool='zbud'):
    base = '/sys/module/zswap/parameters/'
    fk.file(base + 'enabled', 'N')
    fk.file(base + 'compressor', compressor)
    fk.file(base + 'max_pool_percent', '20')
    fk.set_range(base + 'max_pool_percent', 0, 100)
    fk.file(base + 'zpool', zpool)
    fk.file(base + 'accept_threshold_percent', '90')
    fk.set_range(base + 'accept_threshold_percent', 0, 100)
    if with_newer:
        fk.file(base + 'shrinker_enabled', 'N')
    fk.file('/proc/crypto', '\n'.join(
        'name         : %s\ndriver       : %s-generic\nmodule       : kernel\ntype         : %s\n' % (n, n, t)
        for n, t in (('lzo', 'scomp'), ('lz4', 'scomp'), ('deflate', 'scomp'), ('crc32c', 'shash'),
                     ('zstd', 'scomp'), ('lzo-rle', 'scomp'))))
    fk.file('/proc/swaps', 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n')


def layout_block(fk):
    """virtio (vda, vdb), NVMe (nvme0n1, nvme1n1) and a rotational SATA disk (sda), as on a real host."""
    devs = {
        'vda': ('/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda', '[none] mq-deadline', '0', '256'),
        'vdb': ('/sys/devices/pci0000:00/0000:00:05.0/virtio2/block/vdb', '[none] mq-deadline', '0', '256'),
        'nvme0n1': ('/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1',
                    '[none] mq-deadline kyber bfq', '0', '1023'),
        'nvme1n1': ('/sys/devices/pci0000:80/0000:80:1d.0/0000:bd:00.0/nvme/nvme1/nvme1n1',
                    '[none] mq-deadline kyber bfq', '0', '1023'),
        'sda': ('/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda',
                'none [mq-deadline] kyber bfq', '1', '64'),
    }
    for name, (real, sched, rot, nr) in devs.items():
        q = real + '/queue/'
        fk.file(q + 'scheduler', sched)
        fk.file(q + 'rotational', rot)
        fk.file(q + 'nr_requests', nr)
        fk.set_range(q + 'nr_requests', 4, int(nr) if sched.startswith('[none]') and name.startswith('nvme') else 10000)
        fk.file(q + 'read_ahead_kb', '128')
        fk.set_range(q + 'read_ahead_kb', 0, 65536)
        fk.file(real + '/dev', '254:0')
        fk.file(real + '/size', '209715200')
        fk.symlink(real, '/sys/class/block/' + name)
        fk.symlink(real, '/sys/block/' + name)
    return devs


def layout_block_extra(fk):
    """Beside layout_block(): a partition (nvme0n1p1), a bio-based device-mapper volume without an I/O
    scheduler (dm-0 reads plain `none`), a loop device, and /dev/disk/by-id symlinks as udev makes them."""
    nv = '/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1'
    fk.file(nv + '/nvme0n1p1/partition', '1')
    fk.file(nv + '/nvme0n1p1/dev', '259:1')
    fk.symlink(nv + '/nvme0n1p1', '/sys/class/block/nvme0n1p1')
    fk.file('/sys/devices/virtual/block/dm-0/queue/scheduler', 'none')
    fk.file('/sys/devices/virtual/block/dm-0/queue/rotational', '0')
    fk.symlink('/sys/devices/virtual/block/dm-0', '/sys/class/block/dm-0')
    fk.symlink('/sys/devices/virtual/block/dm-0', '/sys/block/dm-0')
    fk.file('/sys/devices/virtual/block/loop0/queue/scheduler', '[none] mq-deadline')
    fk.file('/sys/devices/virtual/block/loop0/queue/rotational', '1')
    fk.file('/sys/devices/virtual/block/loop0/queue/nr_requests', '128')
    fk.file('/sys/devices/virtual/block/loop0/queue/read_ahead_kb', '128')
    fk.symlink('/sys/devices/virtual/block/loop0', '/sys/class/block/loop0')
    fk.symlink('/sys/devices/virtual/block/loop0', '/sys/block/loop0')
    os.makedirs(fk.path('/dev/disk/by-id'))
    os.symlink('../../nvme0n1', fk.path('/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R123456'))
    os.symlink('../../nvme0n1p1', fk.path('/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R123456-part1'))
    os.symlink('../../sda', fk.path('/dev/disk/by-id/ata-ST8000NM000A-2KE101_WSD0ABCD'))


def emulate_scheduler_reset(fk, devs, sched_max=2048):
    """Like the kernel: switching a device's I/O scheduler resets its nr_requests (to the hardware tag
    depth with `none`, to 2 x min(depth, 128) with a scheduler) and changes nr_requests' allowed range
    (<= tag depth with `none`, <= `sched_max` with a scheduler). `devs` is layout_block()'s return value;
    the tag depth is each device's initial nr_requests when it starts on `none`, else 64."""
    for name, (real, sched, _rot, nr) in devs.items():
        depth = int(nr) if sched.startswith('[none]') else 64
        q = real + '/queue/'

        def hook(value, q=q, depth=depth):
            cur = fk.read(q + 'scheduler')
            if '[%s]' % value in cur:
                return
            if value == 'none':
                fk.set_range(q + 'nr_requests', 4, depth)
                new = depth
            else:
                fk.set_range(q + 'nr_requests', 4, sched_max)
                new = 2 * min(depth, 128)
            with open(fk.path(q + 'nr_requests'), 'w') as f:
                f.write('%d\n' % new)
        fk.hooks[fk.path(q + 'scheduler')] = hook
