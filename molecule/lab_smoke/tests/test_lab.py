"""lab_smoke: the lab guest has the shape the other scenarios rely on, before and after a reboot.

Runs from the host via molecule/_shared/testinfra.yml (pytest-testinfra, molecule's inventory).
LAB_PHASE is "before-reboot" or "after-reboot".
"""
import os
import time

PHASE = os.environ.get("LAB_PHASE", "verify")
MARK = "/var/lib/lab-smoke/boot_id"


def test_two_numa_nodes_with_two_cpus_each(host):
    nodes = host.check_output("ls -d /sys/devices/system/node/node[0-9]*").split()
    assert [n.rsplit("/", 1)[1] for n in nodes] == ["node0", "node1"]
    assert host.file("/sys/devices/system/node/node0/cpulist").content_string.strip() == "0-1"
    assert host.file("/sys/devices/system/node/node1/cpulist").content_string.strip() == "2-3"
    assert "available: 2 nodes (0-1)" in host.check_output("numactl --hardware")


def test_cgroup_v2_unified(host):
    assert host.check_output("stat -fc %T /sys/fs/cgroup") == "cgroup2fs"
    controllers = host.file("/sys/fs/cgroup/cgroup.controllers").content_string.split()
    assert {"cpuset", "cpu", "memory", "io"} <= set(controllers)


def test_data_disk_by_id(host):
    link = host.file("/dev/disk/by-id/virtio-medai-data")
    assert link.is_symlink
    assert host.check_output("readlink -f /dev/disk/by-id/virtio-medai-data") == "/dev/vdb"
    sectors = int(host.file("/sys/block/vdb/size").content_string)
    assert sectors * 512 == 4 * 2**30
    assert host.run("findmnt -S /dev/vdb").rc != 0  # blank, unmounted: scenarios format it


def test_guest_clock_matches_host(host):
    assert abs(int(host.check_output("date +%s")) - time.time()) < 120


def test_reboot_is_real(host):
    boot_id = host.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    if PHASE == "before-reboot":
        host.run_expect([0], f"mkdir -p /var/lib/lab-smoke && echo {boot_id} > {MARK}")
    elif PHASE == "after-reboot":
        recorded = host.file(MARK)
        assert recorded.exists, "marker written before the reboot is gone: the disk did not persist"
        assert recorded.content_string.strip() != boot_id, "boot_id unchanged: the guest did not reboot"
