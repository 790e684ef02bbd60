"""fleet: rolling rollout stops at a failing canary; site.yml tunes; rollback.yml restores originals.

Runs from the host via molecule/_shared/testinfra.yml before and after a reboot of both VMs.
"""
import json
import os

import pytest

EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
SAVED = "/var/lib/fleet-test/originals.before-rollback.json"
testinfra_hosts = ["ansible://all"]


def knob_value(host, path):
    text = host.file(path).content_string.strip()
    if "[" in text:
        return text.split("[", 1)[1].split("]", 1)[0]
    return " ".join(text.split())


def is_canary(host):
    return host.backend.get_hostname() == "a-canary"


def test_broken_rollout_stopped_at_the_canary(host):
    if not is_canary(host):
        pytest.skip("controller-side evidence, checked once")
    with open(os.path.join(EPHEMERAL, "broken-rollout.json")) as f:
        ev = json.load(f)
    assert ev["rc"] != 0
    tail = "\n".join(ev["stdout_tail"])
    assert "a-canary" in tail and "failed=1" in tail
    assert "b-second" not in tail  # no task ran there, it is not even in the recap
    assert ev["second_state_dir_exists"] is False
    assert ev["second_thp_before"] == ev["second_thp_after"]


def test_canary_is_tuned(host):
    if not is_canary(host):
        pytest.skip("b-second was rolled back")
    assert knob_value(host, "/sys/kernel/mm/transparent_hugepage/enabled") == "never"
    assert knob_value(host, "/sys/kernel/mm/transparent_hugepage/defrag") == "never"
    assert knob_value(host, "/sys/module/zswap/parameters/enabled") == "Y"
    assert knob_value(host, "/sys/module/zswap/parameters/compressor") == "lzo-rle"
    assert knob_value(host, "/proc/sys/vm/watermark_scale_factor") == "200"
    assert knob_value(host, "/proc/sys/vm/swappiness") == "10"
    assert host.service("vllm.service").is_running
    assert host.run("python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/health').status)\"").stdout.strip() == "200"
    journal = [json.loads(x) for x in host.file("/var/lib/medai-llmhost/journal.jsonl").content_string.splitlines() if x]
    assert any(e.get("path") == "/sys/kernel/mm/transparent_hugepage/enabled" and e.get("after") == "never" for e in journal)


SLICE = "/sys/fs/cgroup/llminference.slice"


def vllm_threads(host):
    """(comm, scheduling class, rt priority) of every thread of vllm.service's main process."""
    pid = host.check_output("systemctl show -p MainPID --value vllm.service")
    out = host.check_output("ps -L -o comm=,cls=,rtprio= -p %s" % pid)
    return pid, [tuple(line.split()) for line in out.splitlines() if line.strip()]


def test_canary_inference_in_its_partition_with_rt_engine_threads(host):
    if not is_canary(host):
        pytest.skip("b-second was rolled back")
    assert host.file(SLICE + "/cpuset.cpus.partition").content_string.strip() == "root"
    assert host.file(SLICE + "/cpuset.cpus.effective").content_string.strip() == "2-3"
    pid, threads = vllm_threads(host)
    assert "llminference.slice" in host.file("/proc/%s/cgroup" % pid).content_string
    engine = [t for t in threads if t[0].startswith("EngineCore")]
    assert engine and all(t[1:] == ("RR", "50") for t in engine), threads
    assert all(t[1] == "TS" for t in threads if not t[0].startswith("EngineCore")), threads


def test_second_partition_dissolved_and_threads_restored(host):
    if is_canary(host):
        pytest.skip("only b-second was rolled back")
    pid, threads = vllm_threads(host)
    assert threads and all(t[1] == "TS" for t in threads), threads
    if host.file(SLICE).exists:  # vLLM kept running in it (not restarted unasked): a member on every CPU
        assert host.file(SLICE + "/cpuset.cpus.partition").content_string.strip() == "member"
        assert host.file(SLICE + "/cpuset.cpus.effective").content_string.strip() == "0-3"
    assert not host.file("/etc/systemd/system/vllm.service.d/50-medai-llmhost-sched.conf").exists


SWITCHER = "/usr/local/sbin/medai-llmhost-profile"
DIRTY = ("/proc/sys/vm/dirty_ratio", "/proc/sys/vm/dirty_background_ratio")


def switcher(host, *args):
    out = host.check_output(" ".join((SWITCHER,) + args))
    return json.loads(out)


def test_canary_switches_profiles_on_the_host(host):
    if not is_canary(host):
        pytest.skip("b-second was rolled back")
    assert host.service("medai-llmhost-profile.timer").is_enabled
    assert host.service("medai-llmhost-profile.timer").is_running
    # the switcher imports the engine from the library file_set installed beside it
    assert host.file("/usr/local/lib/medai-llmhost/ansible_collections/medai/llmhost/plugins/module_utils/knob.py").exists
    profiles = json.loads(host.file("/etc/medai-llmhost/profiles.json").content_string)["profiles"]
    # the role's default windows: peak 07:00-19:00, off-peak otherwise
    assert switcher(host, "which", "--at", "08:00")["profile"] == "peak"
    assert switcher(host, "which", "--at", "20:00")["profile"] == "offpeak"
    for name in ("peak", "offpeak"):
        out = switcher(host, "apply", name, "--context", "fleet-test")
        assert out["profile"] == name and not out["failed"], out
        for path in DIRTY:
            assert knob_value(host, path) == profiles[name]["knobs"][path], (name, path)
    # back to the profile of the guest's clock, as the timer keeps it
    now = switcher(host, "which")["profile"]
    out = switcher(host, "apply", "--auto", "--context", "fleet-test")
    assert out["profile"] == now
    assert json.loads(host.file("/var/lib/medai-llmhost/profile-active.json").content_string)["profile"] == now
    for path in DIRTY:
        assert knob_value(host, path) == profiles[now]["knobs"][path]
    status = switcher(host, "status")
    assert status["active_profile"] == now and status["drift"] == [], status


def test_second_is_back_at_its_originals(host):
    if is_canary(host):
        pytest.skip("only b-second was rolled back")
    saved = json.loads(host.file(SAVED).content_string)["settings"]
    knobs = [r for r in saved.values() if r["kind"] == "knob"]
    assert any(r["key"] == "/sys/kernel/mm/transparent_hugepage/enabled" for r in knobs)
    for r in knobs:
        assert knob_value(host, r["key"]) == " ".join(str(r["original"]).split()), r["key"]
    # the switcher's knobs were recorded under the modules' kind, so they are among those restored
    assert {r["key"] for r in knobs} >= set(DIRTY)
    for f in (SWITCHER, "/etc/systemd/system/medai-llmhost-profile.timer", "/etc/medai-llmhost/profiles.json",
              "/usr/local/lib/medai-llmhost"):
        assert not host.file(f).exists, f
    # nothing of the collection's persistence is left for those knobs
    for f in ("/etc/tmpfiles.d/medai-llmhost.conf", "/etc/sysctl.d/90-medai-llmhost.conf"):
        text = host.file(f).content_string if host.file(f).exists else ""
        for r in knobs:
            assert r["key"] not in text
            assert r["key"].replace("/proc/sys/", "").replace("/", ".") + " =" not in text
    # the collection's record of them is consumed, and the journal says who restored them
    orig = host.file("/var/lib/medai-llmhost/originals.json")
    left = json.loads(orig.content_string)["settings"] if orig.exists else {}
    assert not [k for k, v in left.items() if v["kind"] == "knob"]
    journal = [json.loads(x) for x in host.file("/var/lib/medai-llmhost/journal.jsonl").content_string.splitlines() if x]
    assert any(e.get("action") == "restore" and "rollback.yml" in (e.get("context") or "") for e in journal)
