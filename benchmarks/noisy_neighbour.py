"""Noisy-neighbour benchmark: what the scheduling role buys a CPU-bound inference service that shares its host
with a "backup" job (CPU spinners + an I/O writer).

    bash benchmarks/noisy_neighbour.sh                   # the full run (README numbers)
    bash benchmarks/noisy_neighbour.sh --reps 2 --requests 60 --out /tmp/nn-dev   # a short development run

One lab VM (scripts/lab.py, 4 vCPUs on 2 NUMA nodes) runs the stand-in inference service
(tests/fixtures/vllm_standin.py as vllm-standin.service: a fixed amount of CPU work per request on its engine
threads) and, in the loaded conditions, backup-hogs.service (stress-ng: CPU spinners + one disk writer, default
priority). Load is driven from the HOST through QEMU's port forward straight to the service and latency is measured
end-to-end at the client (plugins/module_utils/latency.py, the code of the latency_probe module).

Conditions, interleaved (every repetition runs each condition at each concurrency; order reversed every other
repetition):
  idle     service alone
  untuned  service + hogs
  tuned    service + hogs, with the medai.llmhost.scheduling role (defaults: cgroup v2 partition on node 1 for the
           service, housekeeping CPUs for the rest, RT off) applied by benchmarks/playbooks/tune.yml and removed
           again by benchmarks/playbooks/untune.yml
Per run: host contention = CPU used on the host by everything except this VM's QEMU and this driver
(/proc/stat busy minus both processes' CPU time); a run where that exceeds --max-other-cores is discarded and
counted (and retried up to --retries times). Before each run the guest reports the effective settings
(benchmarks/guest_check.py): partition state, the service's cgroup and CPUs, policy per thread, where the hogs may
run, the NIC IRQ affinity.

Writes <out>/: runs.csv, runs.json (every run incl. discarded, all samples), checks.json, summary.json,
summary.md (the table), command.txt.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = [sys.executable, str(ROOT / "scripts" / "lab.py")]
SERVICE = "vllm-standin.service"
HOGS = "backup-hogs.service"
GUEST_PORT = 8000
HZ = os.sysconf("SC_CLK_TCK")


def load_latency():
    spec = importlib.util.spec_from_file_location("medai_latency", ROOT / "plugins/module_utils/latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


latency = load_latency()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- host contention
def host_busy_ticks():
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user
    return v[0] + v[1] + v[2] + v[5] + v[6]


def proc_ticks(pid):
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    f = s[s.rfind(")") + 2:].split()
    return int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)


def qemu_count():
    n = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"qemu-system" in (p / "cmdline").read_bytes().split(b"\0")[0]:
                    n += 1
            except OSError:
                pass
    return n


class Contention:
    def __init__(self, qemu_pid):
        self.qemu_pid = qemu_pid

    def __enter__(self):
        self.t0 = time.monotonic()
        self.busy0 = host_busy_ticks()
        self.q0 = proc_ticks(self.qemu_pid)
        self.s0 = proc_ticks(os.getpid())
        self.qc0 = qemu_count()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.t0
        busy = (host_busy_ticks() - self.busy0) / HZ
        q = (proc_ticks(self.qemu_pid) - self.q0) / HZ
        s = (proc_ticks(os.getpid()) - self.s0) / HZ
        self.result = {
            "wall_s": round(wall, 2),
            "host_busy_cores": round(busy / wall, 3),
            "qemu_cores": round(q / wall, 3),
            "driver_cores": round(s / wall, 3),
            "other_cores": round(max(0.0, busy - q - s) / wall, 3),
            "loadavg": Path("/proc/loadavg").read_text().split()[0],
            "qemu_processes": max(self.qc0, qemu_count()),
        }
        return False


# ----------------------------------------------------------------------------- VM plumbing
class VM:
    def __init__(self, name, flavour, reuse=False):
        self.name, self.flavour, self.reuse = name, flavour, reuse
        self.info = None

    def up(self):
        out = subprocess.run(LAB + ["up", self.name, "--flavour", self.flavour, "--forward", f"0:{GUEST_PORT}",
                                    "--json"] + (["--reuse"] if self.reuse else []), capture_output=True, text=True,
                             check=False)
        if out.returncode != 0:
            raise SystemExit(f"lab.py up failed:\n{out.stderr[-3000:]}")
        self.info = json.loads(out.stdout.strip().splitlines()[-1])
        self.pid = int(self.info["pid"])
        self.http_port = next(f["host"] for f in self.info["forwards"] if f["guest"] == GUEST_PORT)
        log(f"VM {self.name} up: ssh 127.0.0.1:{self.info['port']}, service 127.0.0.1:{self.http_port} "
            f"(mode {self.info['mode']}, accel {self.info['accel']})")

    def ssh_argv(self):
        return ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
                "-i", self.info["identity_file"], "-p", str(self.info["port"]), "root@127.0.0.1"]

    def sh(self, cmd, inp=None, timeout=300, check=True):
        r = subprocess.run(self.ssh_argv() + [cmd], input=inp, capture_output=True, text=True, timeout=timeout,
                           check=False)
        if check and r.returncode != 0:
            raise RuntimeError(f"guest command failed ({r.returncode}): {cmd}\n{r.stderr[-2000:]}")
        return r.stdout

    def put(self, path, content, mode="0644"):
        self.sh(f"install -D -m {mode} /dev/stdin {shlex.quote(path)}", inp=content)

    def down(self):
        subprocess.run(LAB + ["down", self.name], capture_output=True, text=True, check=False)


SERVICE_UNIT = """[Unit]
Description=vLLM stand-in inference service (noisy-neighbour benchmark)
After=network.target

[Service]
Environment=VLLM_STANDIN_WORK_MS={work_ms} VLLM_STANDIN_WORK_CLOCK=cpu VLLM_STANDIN_ENGINE_THREADS={engines}
Environment=VLLM_STANDIN_RECORD=/var/lib/vllm-standin/record.json
ExecStart=/usr/bin/python3 /usr/local/bin/vllm serve bench-model --host 0.0.0.0 --port {port}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

HOGS_UNIT = """[Unit]
Description=co-located backup job stand-in: {cpu} CPU spinners + {io} disk writer(s) (noisy-neighbour benchmark)

[Service]
StateDirectory=backup-hogs
WorkingDirectory=/var/lib/backup-hogs
ExecStart=/usr/bin/stress-ng --cpu {cpu} --hdd {io} --hdd-bytes 64M --timeout 0 --quiet
"""

NIC_PIN = ("for i in $(grep -E 'virtio[0-9]+-(input|output)' /proc/interrupts | cut -d: -f1); do "
           "echo {cpus} > /proc/irq/$i/smp_affinity_list; done; true")


def setup_guest(vm, a):
    log("guest: installing the stand-in service, the hogs unit and the check script")
    vm.put("/usr/local/bin/vllm", (ROOT / "tests/fixtures/vllm_standin.py").read_text(), "0755")
    vm.put("/usr/local/sbin/nn-check", (ROOT / "benchmarks/guest_check.py").read_text(), "0644")
    vm.put(f"/etc/systemd/system/{SERVICE}", SERVICE_UNIT.format(work_ms=a.work_ms, engines=a.engine_threads,
                                                                 port=GUEST_PORT))
    vm.put(f"/etc/systemd/system/{HOGS}", HOGS_UNIT.format(cpu=a.hog_cpus, io=a.hog_io))
    vm.sh(f"systemctl daemon-reload && systemctl enable --now {SERVICE} && systemctl stop {HOGS} || true; "
          "systemctl stop irqbalance 2>/dev/null || true; " + NIC_PIN.format(cpus=a.nic_cpus))
    deadline = time.time() + 60
    while time.time() < deadline:
        if vm.sh(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{GUEST_PORT}/health",
                 check=False).strip() == "200":
            break
        time.sleep(1)
    else:
        raise SystemExit("stand-in service did not answer /health within 60 s")
    info = {"kernel": vm.sh("uname -r").strip(), "nproc": vm.sh("nproc").strip(),
            "numa": vm.sh("numactl -H | head -3", check=False).strip(),
            "stress_ng": vm.sh("stress-ng --version", check=False).strip()}
    return info


# ----------------------------------------------------------------------------- conditions
class Conditions:
    def __init__(self, vm, a, inventory):
        self.vm, self.a, self.inventory = vm, a, inventory
        self.tuned = None  # unknown
        self.hogs = None
        self.toggle_log = []

    def ansible(self, playbook, extra=None):
        t0 = time.monotonic()
        argv = ["ansible-playbook", "-i", str(self.inventory), str(ROOT / "benchmarks/playbooks" / playbook)]
        if extra:
            argv += ["-e", extra if isinstance(extra, str) else json.dumps(extra)]
        r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
        secs = round(time.monotonic() - t0, 1)
        self.toggle_log.append({"playbook": playbook, "seconds": secs, "rc": r.returncode})
        if r.returncode != 0:
            raise SystemExit(f"{playbook} failed (rc {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}")
        log(f"{playbook}: ok in {secs} s")

    def set(self, cond):
        want_tuned = cond in ("tuned", "tuned_rt")
        want_hogs = cond != "idle"
        if want_tuned and self.tuned != cond:
            if self.tuned == "tuned_rt":
                # the RR threads and the role's thread watcher must go before plain "tuned" (partition only)
                self.ansible("untune.yml", {"nn_reset_policy": True})
                self.tuned = "untuned"
            result = self.inventory.parent / f"scheduling_result_{cond}.json"
            # retune.yml re-applies the partition only: the RT variant always runs the whole role (policy + watcher)
            if cond == "tuned" and result.exists() and not self.a.full_role_every_time:
                self.ansible("retune.yml", "@" + str(result))
            else:
                extra = {"nn_result_file": str(result)}
                if cond == "tuned_rt":
                    extra["nn_scheduling_units"] = [{"name": "vllm-standin", "policy": "rr", "priority": 10,
                                                     "thread_regex": "^EngineCore"}]
                    extra["scheduling_rt_allowlist"] = ["vllm-standin.service"]
                self.ansible("tune.yml", extra)
            self.tuned = cond
        elif not want_tuned and self.tuned != "untuned":
            self.ansible("untune.yml", {"nn_reset_policy": self.tuned == "tuned_rt"} if self.tuned else {})
            self.tuned = "untuned"
        if want_hogs != self.hogs:
            self.vm.sh(f"systemctl {'start' if want_hogs else 'stop'} {HOGS}")
            self.hogs = want_hogs
        # same NIC IRQ pinning in every condition (a restarted service does not move IRQs, but be sure)
        self.vm.sh(NIC_PIN.format(cpus=self.a.nic_cpus), check=False)
        time.sleep(self.a.settle_s)

    def check(self):
        out = self.vm.sh(f"python3 /usr/local/sbin/nn-check {SERVICE} {HOGS} llminference.slice")
        return json.loads(out)


def verify(cond, chk):
    """Did the condition's settings take effect? -> list of problems ([] = yes)."""
    bad = []
    eng = [t for t in chk.get("threads", []) if (t["comm"] or "").startswith("EngineCore")]
    if not eng:
        bad.append("no EngineCore threads")
    if cond == "idle" and chk.get("hogs_active") == "active":
        bad.append("hogs running in idle condition")
    if cond != "idle" and chk.get("hogs_active") != "active":
        bad.append("hogs not running")
    if cond in ("tuned", "tuned_rt"):
        if not (chk.get("service_cgroup") or "").startswith("/llminference.slice/"):
            bad.append(f"service not in llminference.slice ({chk.get('service_cgroup')})")
        if (chk.get("partition") or "") != "root":
            bad.append(f"partition is {chk.get('partition')!r}, not root")
        if chk.get("service_cpus_allowed") != chk.get("slice_cpus_effective"):
            bad.append("service CPUs differ from the partition")
        if any(set(parse_cpus(h)) & set(parse_cpus(chk.get("slice_cpus_effective") or "")) for h in
               chk.get("hogs_cpus_allowed", []) if h != "?"):
            bad.append(f"hogs may run on partition CPUs ({chk.get('hogs_cpus_allowed')})")
        want = "rr" if cond == "tuned_rt" else "other"
        if any(t["policy"] != want for t in eng):
            bad.append(f"EngineCore policy {[t['policy'] for t in eng]} != {want}")
    else:
        if (chk.get("service_cgroup") or "").startswith("/llminference.slice/"):
            bad.append("service still in the partition")
        if chk.get("partition") == "root":
            bad.append("partition still root")
        if any(t["policy"] != "other" for t in chk.get("threads", [])):
            bad.append("service threads not SCHED_OTHER")
    return bad


def parse_cpus(s):
    out = []
    for part in (s or "").split(","):
        part = part.strip()
        if not part:
            continue
        a, _sep, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


# ----------------------------------------------------------------------------- measurement
def measure(vm, a, conc):
    url = f"http://127.0.0.1:{vm.http_port}/v1/completions"
    send = latency.make_sender(url, method="POST", payload={"prompt": "ping", "max_tokens": 1},
                               timeout=a.timeout, use_proxy=False)
    latency.run_load(send, requests=a.warmup, concurrency=conc)  # warm-up, outside the contention window
    with Contention(vm.pid) as c:
        run = latency.run_load(send, requests=a.requests, concurrency=conc)
    res = latency.result_from_samples(run["samples"], run["wall_s"], conc)
    res["contention"] = c.result
    res["samples_ms"] = [s["ms"] for s in run["samples"] if s["ok"]]
    return res


def med_range(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    return latency.median(xs), min(xs), max(xs)


def summarize(runs, conditions, concs):
    kept = [r for r in runs if not r["discarded"]]
    out = {}
    for conc in concs:
        for cond in conditions:
            rs = [r for r in kept if r["condition"] == cond and r["concurrency"] == conc]
            d = {"runs": len(rs), "discarded": sum(1 for r in runs if r["discarded"] and r["condition"] == cond
                                                   and r["concurrency"] == conc)}
            for k in ("p50", "p95", "p99", "mean", "max"):
                m, lo, hi = med_range([r["latency_ms"][k] for r in rs])
                d[k] = {"median": m, "min": lo, "max": hi}
            d["throughput_rps"] = med_range([r["throughput_rps"] for r in rs])[0]
            d["errors"] = sum(r["errors"] for r in rs)
            oc = [r["contention"]["other_cores"] for r in rs]
            d["other_cores"] = {"median": med_range(oc)[0], "max": max(oc) if oc else None}
            out[f"{cond}@{conc}"] = d
        # ratios of medians, paired ratios per repetition, and dominance
        for num, den in (("tuned", "untuned"), ("tuned", "idle"), ("untuned", "idle"), ("tuned_rt", "untuned"),
                         ("tuned_rt", "tuned")):
            if num not in conditions or den not in conditions:
                continue
            a, b = out[f"{num}@{conc}"], out[f"{den}@{conc}"]
            rat = {}
            for k in ("p50", "p95", "p99"):
                if a[k]["median"] and b[k]["median"]:
                    rat[k] = round(a[k]["median"] / b[k]["median"], 3)
                pa = {r["rep"]: r["latency_ms"][k] for r in kept if r["condition"] == num and r["concurrency"] == conc}
                pb = {r["rep"]: r["latency_ms"][k] for r in kept if r["condition"] == den and r["concurrency"] == conc}
                paired = [pa[i] / pb[i] for i in pa if i in pb and pb[i]]
                rat[k + "_paired_median"] = round(latency.median(paired), 3) if paired else None
                rat[k + "_paired_range"] = [round(min(paired), 3), round(max(paired), 3)] if paired else None
                rat[k + "_every_run_better"] = (max(pa.values()) < min(pb.values())) if pa and pb else None
            out[f"{num}/{den}@{conc}"] = rat
    return out


def fmt(x, nd=0):
    return "–" if x is None else f"{x:.{nd}f}"


def cell_table(L, summary, conditions, concs):
    L.append("| clients | condition | runs | P50 | P95 | P99 | req/s | other host load (cores, median/max) |")
    L.append("|---|---|---|---|---|---|---|---|")
    for conc in concs:
        for cond in conditions:
            d = summary[f"{cond}@{conc}"]
            cells = [f"{fmt(d[k]['median'])} [{fmt(d[k]['min'])}–{fmt(d[k]['max'])}]" if d["runs"] else "–"
                     for k in ("p50", "p95", "p99")]
            L.append(f"| {conc} | {cond} | {d['runs']} (+{d['discarded']} disc.) | " + " | ".join(cells) +
                     f" | {fmt(d['throughput_rps'], 1)} | {fmt(d['other_cores']['median'], 2)} / "
                     f"{fmt(d['other_cores']['max'], 2)} |")


def ratio_table(L, summary, concs):
    L.append("| clients | ratio | P50 | P95 | P99 | P99 paired | P99 all better |")
    L.append("|---|---|---|---|---|---|---|")
    for conc in concs:
        for key in ("tuned/untuned", "tuned/idle", "untuned/idle", "tuned_rt/untuned", "tuned_rt/tuned"):
            r = summary.get(f"{key}@{conc}")
            if not r:
                continue
            pr = r.get("p99_paired_range")
            L.append(f"| {conc} | {key} | {fmt(r.get('p50'), 2)} | {fmt(r.get('p95'), 2)} | {fmt(r.get('p99'), 2)} | "
                     + (f"{fmt(r.get('p99_paired_median'), 2)} [{fmt(pr[0], 2)}–{fmt(pr[1], 2)}]" if pr else "–")
                     + f" | {'yes' if r.get('p99_every_run_better') else ('no' if pr else '–')} |")


def markdown(summary, conditions, concs, meta, summary_all=None):
    L = []
    L.append(f"# Noisy-neighbour benchmark, {meta['date']}")
    L.append("")
    L.append(f"Command: `{meta['command']}`")
    L.append("")
    L.append(f"Lab VM: {meta['guest']['nproc']} vCPUs / 2 NUMA nodes, TCG, kernel {meta['guest']['kernel']}; host: "
             f"{meta['host']['nproc']} cores. Service: stand-in, {meta['args']['work_ms']} ms CPU per request on "
             f"{meta['args']['engine_threads']} engine threads; hogs: {meta['args']['hog_cpus']} CPU spinners + "
             f"{meta['args']['hog_io']} disk writer (stress-ng). {meta['reps_done']} interleaved repetitions x "
             f"{meta['args']['requests']} requests (+{meta['args']['warmup']} warm-up) per condition and concurrency, "
             "driven from the host through the QEMU port forward, end-to-end latency at the client. "
             f"Runs with other host processes > {meta['args']['max_other_cores']} core were discarded "
             f"({meta['discarded']} discarded, {meta['kept']} kept).")
    L.append("")
    L.append("Latency in ms: median of runs [min–max of runs].")
    L.append("")
    cell_table(L, summary, conditions, concs)
    L.append("")
    L.append("Ratios (ratio of medians; paired = median [range] of per-repetition ratios; "
             "'all' = every run of the first condition beat every run of the second):")
    L.append("")
    ratio_table(L, summary, concs)
    if summary_all is not None:
        L.append("")
        L.append("For transparency, the same over ALL runs including the discarded (contended) ones:")
        L.append("")
        cell_table(L, summary_all, conditions, concs)
        L.append("")
        ratio_table(L, summary_all, concs)
    L.append("")
    return "\n".join(L) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--concurrency", default="4,8", help="comma-separated (about 2x and 4x the partition's CPUs)")
    p.add_argument("--conditions", default="idle,untuned,tuned", help="of idle, untuned, tuned, tuned_rt")
    p.add_argument("--work-ms", type=float, default=10, help="CPU ms per request on an engine thread")
    p.add_argument("--engine-threads", type=int, default=2)
    p.add_argument("--hog-cpus", type=int, default=6)
    p.add_argument("--hog-io", type=int, default=1)
    p.add_argument("--nic-cpus", default="0", help="guest CPUs for the virtio NIC IRQs (every condition)")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--settle-s", type=float, default=3)
    p.add_argument("--max-other-cores", type=float, default=0.1)
    p.add_argument("--full-role-every-time", action="store_true",
                   help="run the whole scheduling role for every tuned interval (default: the role the first time, "
                        "then its cpuset call with the arguments the role used: benchmarks/playbooks/retune.yml)")
    p.add_argument("--retries", type=int, default=1, help="re-runs of a discarded run (immediately)")
    p.add_argument("--deadline-utc", default=None, metavar="HH:MM",
                   help="start no further repetition when the previous one's duration would end after this UTC time "
                        "(the summary says how many repetitions ran)")
    p.add_argument("--vm-name", default="nn-bench")
    p.add_argument("--flavour", default="bookworm")
    p.add_argument("--keep-vm", action="store_true", help="leave the VM running (development)")
    p.add_argument("--reuse-vm", action="store_true", help="reuse a running VM of that name (development)")
    p.add_argument("--out", default=None, help="default benchmarks/results/<UTC date>")
    a = p.parse_args()

    concs = [int(x) for x in a.concurrency.split(",")]
    conditions = [c.strip() for c in a.conditions.split(",")]
    for c in conditions:
        if c not in ("idle", "untuned", "tuned", "tuned_rt"):
            p.error(f"unknown condition {c}")
    now = dt.datetime.now(dt.timezone.utc)
    out = Path(a.out).resolve() if a.out else ROOT / "benchmarks" / "results" / now.strftime("%Y-%m-%d")
    out.mkdir(parents=True, exist_ok=True)
    command = "bash benchmarks/noisy_neighbour.sh" + "".join(" " + shlex.quote(x) for x in sys.argv[1:])
    (out / "command.txt").write_text(command + "\n")
    log(f"results -> {out}; host loadavg {Path('/proc/loadavg').read_text().split()[:3]}, "
        f"{qemu_count()} qemu process(es) before start")

    vm = VM(a.vm_name, a.flavour, a.reuse_vm)
    t_start = time.monotonic()
    vm.up()
    try:
        guest = setup_guest(vm, a)
        inv = out / "inventory.json"
        inv.write_text(subprocess.run(LAB + ["inventory", a.vm_name], capture_output=True, text=True,
                                      check=True).stdout)
        conds = Conditions(vm, a, inv)
        runs, checks = [], []
        deadline = None
        if a.deadline_utc:
            hh, mm = (int(x) for x in a.deadline_utc.split(":"))
            deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        rep_secs = 0.0
        reps_done = 0
        for rep in range(1, a.reps + 1):
            if deadline and dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=rep_secs) > deadline:
                log(f"deadline {a.deadline_utc} UTC: stopping after {reps_done} repetition(s)")
                break
            t_rep = time.monotonic()
            order = conditions if rep % 2 else list(reversed(conditions))
            corder = concs if rep % 2 else list(reversed(concs))
            for cond in order:
                conds.set(cond)
                chk = conds.check()
                problems = verify(cond, chk)
                checks.append({"rep": rep, "condition": cond, "check": chk, "problems": problems})
                if problems:
                    raise SystemExit(f"settings of condition {cond} did not take effect: {problems}\n"
                                     f"{json.dumps(chk, indent=1)}")
                for conc in corder:
                    for attempt in range(a.retries + 1):
                        res = measure(vm, a, conc)
                        c = res["contention"]
                        disc = c["other_cores"] > a.max_other_cores
                        row = {"rep": rep, "condition": cond, "concurrency": conc, "attempt": attempt,
                               "discarded": disc, **res}
                        runs.append(row)
                        log(f"rep {rep} {cond:8} c={conc:<2} P50 {res['latency_ms']['p50']:7.1f} "
                            f"P95 {res['latency_ms']['p95']:7.1f} P99 {res['latency_ms']['p99']:7.1f} ms "
                            f"err {res['errors']} | other {c['other_cores']:.2f} qemu {c['qemu_cores']:.2f} "
                            f"drv {c['driver_cores']:.2f} cores{' DISCARDED' if disc else ''}")
                        if not disc:
                            break
            rep_secs = time.monotonic() - t_rep
            reps_done = rep
        wall = round(time.monotonic() - t_start)
    finally:
        if not a.keep_vm:
            vm.down()

    summary = summarize(runs, conditions, concs)
    summary_all = summarize([dict(r, discarded=False) for r in runs], conditions, concs) \
        if any(r["discarded"] for r in runs) else None
    meta = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "command": command, "args": vars(a), "guest": guest,
            "host": {"nproc": os.cpu_count(), "uname": os.uname().release},
            "discarded": sum(r["discarded"] for r in runs), "kept": sum(not r["discarded"] for r in runs),
            "wall_s": wall, "reps_done": reps_done, "toggles": conds.toggle_log, "vm": {k: vm.info.get(k) for k in ("mode", "accel", "kernel")}}
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["rep", "condition", "concurrency", "attempt", "discarded", "requests", "errors", "mean_ms",
                    "p50_ms", "p95_ms", "p99_ms", "max_ms", "throughput_rps", "wall_s", "other_cores", "qemu_cores",
                    "driver_cores", "host_loadavg", "qemu_processes"])
        for r in runs:
            L, c = r["latency_ms"], r["contention"]
            w.writerow([r["rep"], r["condition"], r["concurrency"], r["attempt"], int(r["discarded"]), r["requests"],
                        r["errors"], L["mean"], L["p50"], L["p95"], L["p99"], L["max"], r["throughput_rps"],
                        c["wall_s"], c["other_cores"], c["qemu_cores"], c["driver_cores"], c["loadavg"],
                        c["qemu_processes"]])
    (out / "runs.json").write_text(json.dumps(runs) + "\n")
    (out / "checks.json").write_text(json.dumps(checks, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps({"meta": meta, "summary": summary, "summary_all_runs": summary_all},
                                                 indent=1) + "\n")
    md = markdown(summary, conditions, concs, meta, summary_all)
    (out / "summary.md").write_text(md)
    print(md)
    log(f"done in {wall} s; {meta['kept']} runs kept, {meta['discarded']} discarded; {out}")


if __name__ == "__main__":
    main()
