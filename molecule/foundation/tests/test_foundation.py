"""foundation: effective kernel state after the knob modules, after a reboot, after state=absent
(and after another reboot). LAB_PHASE: before-reboot | after-reboot | after-absent | after-absent-reboot.
The guest's own values were saved by prepare.yml in /var/lib/foundation-test/before.json."""
import json
import os

import pytest

PHASE = os.environ.get("LAB_PHASE", "before-reboot")
TUNED = PHASE in ("before-reboot", "after-reboot", "verify")

EXPECTED = {
    "/sys/kernel/mm/transparent_hugepage/enabled": "never",
    "/sys/kernel/mm/transparent_hugepage/defrag": "defer+madvise",
    "/proc/sys/vm/swappiness": "10",
    "/proc/sys/vm/watermark_scale_factor": "200",
    "/sys/block/vdb/queue/scheduler": "mq-deadline",
    "/sys/block/vdb/queue/nr_requests": "64",
    "/sys/block/vdb/queue/read_ahead_kb": "1024",
    "/sys/module/zswap/parameters/enabled": "Y",
    "/sys/module/zswap/parameters/compressor": "lz4",
    "/sys/module/zswap/parameters/max_pool_percent": "25",
}
PERSISTENCE = ("/etc/tmpfiles.d/medai-llmhost.conf", "/etc/sysctl.d/90-medai-llmhost.conf",
               "/etc/udev/rules.d/60-medai-llmhost-iosched.rules")


def effective(host, path):
    text = host.file(path).content_string.strip()
    if "[" in text and "\n" not in text:
        return text.split("[", 1)[1].split("]", 1)[0]
    return text


def before(host):
    return json.loads(host.file("/var/lib/foundation-test/before.json").content_string)


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_knob(host, path):
    if TUNED:
        assert effective(host, path) == EXPECTED[path]
    else:
        orig = before(host)[path]
        assert effective(host, path) == (orig.split("[", 1)[1].split("]", 1)[0] if "[" in orig else orig)


def test_persistence_files(host):
    if TUNED:
        tmpf = host.file(PERSISTENCE[0]).content_string
        assert "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never" in tmpf
        assert "w /sys/module/zswap/parameters/compressor - - - - lz4" in tmpf
        sysctl = host.file(PERSISTENCE[1]).content_string
        assert "vm.swappiness = 10" in sysctl and "vm.watermark_scale_factor = 200" in sysctl
        rule = host.file(PERSISTENCE[2]).content_string
        assert 'KERNEL=="vdb"' in rule and 'ATTR{queue/scheduler}="mq-deadline"' in rule
        assert rule.index("queue/scheduler") < rule.index("queue/nr_requests")
    else:
        for f in PERSISTENCE:
            assert not host.file(f).exists or "medai" not in host.file(f).content_string.lower(), f


def test_originals_and_journal(host):
    orig = host.file("/var/lib/medai-llmhost/originals.json")
    journal = [json.loads(x) for x in host.file("/var/lib/medai-llmhost/journal.jsonl").content_string.splitlines() if x]
    saved = before(host)
    if TUNED:
        rec = json.loads(orig.content_string)["settings"]
        thp = rec["knob:/sys/kernel/mm/transparent_hugepage/enabled"]["original"]
        assert thp == saved["/sys/kernel/mm/transparent_hugepage/enabled"].split("[", 1)[1].split("]", 1)[0]
        assert rec["knob:/proc/sys/vm/swappiness"]["original"] == saved["/proc/sys/vm/swappiness"]
        assert any(e.get("context") == "molecule foundation" and e.get("after") == "never" for e in journal)
    else:
        left = json.loads(orig.content_string)["settings"] if orig.exists else {}
        assert left == {}
        assert any(e.get("action") == "restore" for e in journal)


def test_facts_view_matches(host):
    """The zswap warning case: zswap is enabled while the guest has no swap (documented no-op)."""
    swaps = host.file("/proc/swaps").content_string.strip().splitlines()
    assert len(swaps) == 1  # header only: the lab VM has no swap; the zswap module warned about it
