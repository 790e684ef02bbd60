# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge-cost benchmark: what site.yml and audit.yml cost on one lab VM, per area.

One run on one fresh lab VM (scripts/lab.py), in this order: a bare gather_facts play (twice), the first
site.yml converge with the lab's field_report profile, an idempotent re-run, then audit.yml (check mode).
For each: wall time, tasks (banners), module invocations (host results that ran, loop items counted), and the
time per area (the role a task belongs to), from ansible.posix.profile_tasks' timestamps. The host's load is
recorded before and after every run (other VMs on the same cores distort every number).

    bash benchmarks/converge_cost.sh [--name cost] [--flavour bookworm] [--out DIR] [--keep]

Output in DIR (default benchmarks/results/converge-<UTC date>): summary.md, summary.json, one log per run,
command.txt.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = [sys.executable, str(ROOT / "scripts" / "lab.py")]

BANNER_RE = re.compile(r"^(TASK|RUNNING HANDLER) \[(.*)\]")
STAMP_RE = re.compile(r"^\w+day \d+ \w+ \d{4}\s+[\d:]+ [+-]\d{4} \([\d:.]+\)\s+(\d+):(\d+):([\d.]+)\s*\**\s*$")
RESULT_RE = re.compile(r"^(ok|changed|failed|fatal|skipping): \[[^\]]+\]")
RECAP_RE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


def log(msg):
    print("[converge_cost %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def area_of(task_name):
    """'medai.llmhost.memory : Set THP' -> 'memory'; tasks of the playbooks themselves -> 'playbook'."""
    head, sep, _rest = task_name.partition(" : ")
    if sep and head.startswith("medai.llmhost."):
        return head[len("medai.llmhost."):]
    return "playbook"


def parse_log(text):
    """Tasks with their start (elapsed s), results that ran and were skipped, and the recap."""
    tasks, end, recap = [], None, {}
    for line in text.splitlines():
        line = line.rstrip()
        m = BANNER_RE.match(line)
        if m:
            tasks.append({"name": m.group(2), "area": area_of(m.group(2)), "start": None, "ran": 0, "skipped": 0})
            continue
        m = STAMP_RE.match(line.strip())
        if m:
            elapsed = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            if tasks and tasks[-1]["start"] is None:
                tasks[-1]["start"] = elapsed
            end = elapsed
            continue
        m = RESULT_RE.match(line.strip())
        if m and tasks:
            if m.group(1) == "skipping":
                tasks[-1]["skipped"] += 1
            else:  # one line per host, or per loop item
                tasks[-1]["ran"] += 1
            continue
        m = RECAP_RE.match(line.strip())
        if m:
            recap[m.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed", "skipped"),
                                         (int(x) for x in m.groups()[1:])))
    for i, t in enumerate(tasks):
        nxt = tasks[i + 1]["start"] if i + 1 < len(tasks) else end
        t["seconds"] = round((nxt or 0) - (t["start"] or 0), 2) if t["start"] is not None else 0.0
    return tasks, recap


def summarize(tasks):
    areas = {}
    for t in tasks:
        a = areas.setdefault(t["area"], {"tasks": 0, "invocations": 0, "seconds": 0.0})
        a["tasks"] += 1
        a["invocations"] += t["ran"]
        a["seconds"] = round(a["seconds"] + t["seconds"], 2)
    slowest = sorted(tasks, key=lambda t: -t["seconds"])[:8]
    return {"tasks": len(tasks), "invocations": sum(t["ran"] for t in tasks), "areas": areas,
            "slowest": [{"task": t["name"], "seconds": t["seconds"], "invocations": t["ran"]} for t in slowest]}


class Bench(object):
    def __init__(self, a):
        self.a = a
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.inv = None
        self.runs = []

    def lab(self, *args, check=True):
        return subprocess.run(LAB + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=check)

    def up(self):
        log("lab VM %s (%s): up" % (self.a.name, self.a.flavour))
        self.lab("up", self.a.name, "--flavour", self.a.flavour)
        hosts = json.loads(self.lab("inventory", self.a.name).stdout)["all"]["hosts"]
        inv = {"all": {"children": {"lab": {"hosts": hosts}}}}
        self.inv = self.out / "inventory.json"
        self.inv.write_text(json.dumps(inv, indent=1))

    def playbook(self, label, playbook, timed=True):
        # ANSIBLE_CACHE_PLUGIN=memory: every run gathers its own facts (the repo's ansible.cfg caches them in a
        # file, which made the second bare gather_facts run gather nothing)
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CACHE_PLUGIN="memory",
                   ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks,medai.llmhost.drift_report",
                   MEDAI_LLMHOST_REPORT_DIR=str(self.out / "reports"))
        argv = ["ansible-playbook", "-i", str(ROOT / "inventories" / "profiles"), "-i", str(ROOT / "inventories" / "lab"),
                "-i", str(self.inv), str(playbook)]
        load_before = loadavg()
        t0 = time.monotonic()
        run = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT),
                             check=False)
        wall = round(time.monotonic() - t0, 1)
        (self.out / ("%s.log" % label)).write_text(run.stdout)
        if run.returncode != 0:
            raise SystemExit("%s failed (rc %d); log: %s" % (label, run.returncode, self.out / ("%s.log" % label)))
        if not timed:
            return None
        tasks, recap = parse_log(run.stdout)
        rec = dict(summarize(tasks), label=label, wall_seconds=wall, recap=recap, load_before=load_before,
                   load_after=loadavg())
        self.runs.append(rec)
        log("%-14s %7.1f s  tasks %3d  invocations %3d  recap %s  load %s -> %s"
            % (label, wall, rec["tasks"], rec["invocations"], recap, " ".join(load_before), " ".join(rec["load_after"])))
        return rec

    def run(self):
        self.up()
        try:
            self.playbook("lab_prepare", ROOT / "playbooks" / "lab_prepare.yml", timed=False)
            with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
                f.write("- name: Bare fact gathering\n  hosts: lab\n  gather_facts: true\n  tasks: []\n")
                facts = f.name
            try:
                self.playbook("gather_facts_1", facts)
                self.playbook("gather_facts_2", facts)
            finally:
                os.unlink(facts)
            self.playbook("site_first", ROOT / "playbooks" / "site.yml")
            self.playbook("site_rerun", ROOT / "playbooks" / "site.yml")
            self.playbook("audit", ROOT / "playbooks" / "audit.yml")
        finally:
            if not self.a.keep:
                self.lab("down", self.a.name, check=False)
        self.write()

    def write(self, generated_at=None):
        facts = min(r["wall_seconds"] for r in self.runs if r["label"].startswith("gather_facts"))
        summary = {"generated_at": generated_at or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "vm": {"name": self.a.name, "flavour": self.a.flavour}, "gather_facts_seconds": facts,
                   "runs": self.runs}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        lines = ["# Converge cost (%s, lab VM %s)" % (summary["generated_at"], self.a.flavour), "",
                 "| run | wall s | x gather_facts | tasks | invocations | changed | load 1-min before/after |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.runs:
            changed = sum(h["changed"] for h in r["recap"].values())
            lines.append("| %s | %.1f | %.1f | %d | %d | %d | %s / %s |" % (
                r["label"], r["wall_seconds"], r["wall_seconds"] / facts, r["tasks"], r["invocations"], changed,
                r["load_before"][0], r["load_after"][0]))
        for r in self.runs:
            if r["label"].startswith("gather_facts"):
                continue
            lines += ["", "## %s: per area" % r["label"], "", "| area | tasks | invocations | seconds |", "|---|---|---|---|"]
            for area, a in sorted(r["areas"].items(), key=lambda kv: -kv[1]["seconds"]):
                lines.append("| %s | %d | %d | %.1f |" % (area, a["tasks"], a["invocations"], a["seconds"]))
            lines += ["", "slowest tasks: " + "; ".join("%s %.1f s" % (s["task"], s["seconds"]) for s in r["slowest"][:5])]
        (self.out / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


def resummarize(out):
    """Re-parse the logs of a finished run in `out` (wall times and loads from its summary.json)."""
    old = json.loads((Path(out) / "summary.json").read_text())
    bench = Bench(argparse.Namespace(out=out, name=old["vm"]["name"], flavour=old["vm"]["flavour"], keep=True))
    for r in old["runs"]:
        tasks, recap = parse_log((Path(out) / ("%s.log" % r["label"])).read_text())
        bench.runs.append(dict(r, **dict(summarize(tasks), recap=recap)))
    bench.write(old["generated_at"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--name", default="cost")
    p.add_argument("--flavour", default="bookworm")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / ("converge-" + time.strftime("%Y-%m-%d"))))
    p.add_argument("--keep", action="store_true", help="leave the VM running")
    p.add_argument("--resummarize", action="store_true", help="only re-parse the logs of a finished run in --out")
    a = p.parse_args()
    a.out = os.path.abspath(a.out)
    if a.resummarize:
        resummarize(a.out)
        return
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "command.txt").write_text(" ".join(sys.argv) + "\n")
    Bench(a).run()


if __name__ == "__main__":
    main()
