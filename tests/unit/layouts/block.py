# -*- coding: utf-8 -*-
"""Block layouts on top of fake_trees.layout_block (vda, vdb virtio; nvme0n1, nvme1n1 NVMe; sda rotational SATA):
models, removable flags, partitions, loop/zram devices that the facts skip, and /dev/disk/by-id links."""
from __future__ import absolute_import, division, print_function

import os

from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_block

MODELS = {
    'nvme0n1': 'SAMSUNG MZQL23T8HCLS-00A07               ',
    'nvme1n1': 'SAMSUNG MZQL23T8HCLS-00A07               ',
    'sda': 'ST8000NM017B-2TJ',
}
BY_ID = (
    ('nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R612345', 'nvme0n1'),
    ('nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R612345-part1', 'nvme0n1p1'),
    ('nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R612345-part2', 'nvme0n1p2'),
    ('nvme-eui.36344830526123450025384500000001', 'nvme0n1'),
    ('nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R698765', 'nvme1n1'),
    ('nvme-eui.36344830526987650025384500000001', 'nvme1n1'),
    ('ata-ST8000NM017B-2TJ103_WWZ1ABCD', 'sda'),
    ('wwn-0x5000c500d1234567', 'sda'),
    ('wwn-0x5000c500d1234567-part1', 'sda1'),
    ('virtio-data01', 'vdb'),
)


def layout_block_full(fk):
    devs = layout_block(fk)
    for name, (real, _sched, _rot, _nr) in devs.items():
        fk.file(real + '/removable', '0', mode=0o444)
        if name.startswith('nvme'):
            ctrl = os.path.dirname(real)  # .../nvme/nvme0
            fk.file(ctrl + '/model', MODELS[name], mode=0o444)
            fk.symlink(ctrl, real + '/device')
        elif name == 'sda':
            scsi = os.path.dirname(os.path.dirname(real))  # .../0:0:0:0
            fk.file(scsi + '/model', MODELS[name], mode=0o444)
            fk.file(scsi + '/vendor', 'ATA     ', mode=0o444)
            fk.symlink(scsi, real + '/device')
    fk.file(devs['nvme0n1'][0] + '/nvme0n1p1/partition', '1', mode=0o444)
    # sda is 8 TB (15628053168 sectors); nvme 3.84 TB (7501476528 sectors)
    fk.file(devs['sda'][0] + '/size', '15628053168', mode=0o444)
    fk.file(devs['nvme0n1'][0] + '/size', '7501476528', mode=0o444)
    fk.file(devs['nvme1n1'][0] + '/size', '7501476528', mode=0o444)
    # skipped devices: a loop device and zram swap
    for name, sched in (('loop0', 'none'), ('zram0', 'none')):
        real = '/sys/devices/virtual/block/' + name
        fk.file(real + '/queue/scheduler', sched)
        fk.file(real + '/queue/rotational', '0')
        fk.file(real + '/size', '0')
        fk.symlink(real, '/sys/block/' + name)
    # a device-mapper device (bio-based: scheduler file says plain "none")
    real = '/sys/devices/virtual/block/dm-0'
    fk.file(real + '/queue/scheduler', 'none')
    fk.file(real + '/queue/rotational', '0')
    fk.file(real + '/queue/nr_requests', '128')
    fk.file(real + '/queue/read_ahead_kb', '128')
    fk.file(real + '/removable', '0')
    fk.file(real + '/size', '419430400')
    fk.symlink(real, '/sys/block/dm-0')
    os.makedirs(fk.path('/dev/disk/by-id'))
    for link, target in BY_ID:
        os.symlink('../../' + target, fk.path('/dev/disk/by-id/' + link))
    os.symlink('../../dm-0', fk.path('/dev/disk/by-id/dm-name-vg0-models'))
    return devs
