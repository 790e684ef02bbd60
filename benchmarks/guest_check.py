"""Runs INSIDE the lab VM (copied there by noisy_neighbour.py): prints one JSON object describing whether the
settings of the current condition took effect - the service's cgroup, effective CPUs, policy and priority of
every thread, the partition state of the inference slice, where the hogs may and do run, and the NIC's IRQ
affinity. Read-only."""
import json
import os
import subprocess
import sys

SERVICE = sys.argv[1] if len(sys.argv) > 1 else 'vllm-standin.service'
HOGS = sys.argv[2] if len(sys.argv) > 2 else 'backup-hogs.service'
SLICE = sys.argv[3] if len(sys.argv) > 3 else 'llminference.slice'
POLICIES = {0: 'other', 1: 'fifo', 2: 'rr', 3: 'batch', 5: 'idle', 6: 'deadline'}


def read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None


def main_pid(unit):
    out = subprocess.run(['systemctl', 'show', '-p', 'MainPID', '--value', unit], capture_output=True, text=True, check=False)
    try:
        return int(out.stdout.strip())
    except ValueError:
        return 0


def status_field(pid, key):
    for line in (read('/proc/%d/status' % pid) or '').splitlines():
        if line.startswith(key + ':'):
            return line.split(':', 1)[1].strip()
    return None


def threads(pid):
    out = []
    for tid in sorted(os.listdir('/proc/%d/task' % pid), key=int):
        st = read('/proc/%d/task/%s/stat' % (pid, tid)) or ''
        fields = st[st.rfind(')') + 2:].split()
        # fields[0] is field 3 (state): rt_priority is field 40, policy 41, processor 39
        out.append({'tid': int(tid), 'comm': read('/proc/%d/task/%s/comm' % (pid, tid)),
                    'policy': POLICIES.get(int(fields[38]), fields[38]) if len(fields) > 38 else None,
                    'rt_priority': int(fields[37]) if len(fields) > 37 else None,
                    'last_cpu': int(fields[36]) if len(fields) > 36 else None,
                    'cpus_allowed': status_field(pid, 'Cpus_allowed_list')})
    return out


def cgroup_of(pid):
    line = read('/proc/%d/cgroup' % pid) or ''
    return line.split('::', 1)[-1] if '::' in line else line


def unit_pids(unit):
    cg = subprocess.run(['systemctl', 'show', '-p', 'ControlGroup', '--value', unit], capture_output=True,
                        text=True, check=False).stdout.strip()
    procs = read('/sys/fs/cgroup%s/cgroup.procs' % cg) if cg else None
    return cg, [int(x) for x in (procs or '').split()]


def nic_irqs():
    out = {}
    for line in (read('/proc/interrupts') or '').splitlines():
        if 'virtio' in line and ('input' in line or 'output' in line or 'config' in line):
            irq = line.split(':', 1)[0].strip()
            name = line.split()[-1]
            if name.startswith('virtio') and irq.isdigit():
                out[name] = read('/proc/irq/%s/smp_affinity_list' % irq)
    return out


def main():
    res = {'service': SERVICE, 'slice': SLICE}
    pid = main_pid(SERVICE)
    res['service_pid'] = pid
    if pid:
        res['service_cgroup'] = cgroup_of(pid)
        res['service_cpus_allowed'] = status_field(pid, 'Cpus_allowed_list')
        res['service_mems_allowed'] = status_field(pid, 'Mems_allowed_list')
        res['threads'] = threads(pid)
        cg = '/sys/fs/cgroup' + res['service_cgroup']
        res['service_cpuset_effective'] = read(cg + '/cpuset.cpus.effective')
    sl = '/sys/fs/cgroup/' + SLICE
    res['slice_exists'] = os.path.isdir(sl)
    res['partition'] = read(sl + '/cpuset.cpus.partition')
    res['slice_cpus_effective'] = read(sl + '/cpuset.cpus.effective')
    res['system_slice_cpus_effective'] = read('/sys/fs/cgroup/system.slice/cpuset.cpus.effective')
    res['root_cpus_effective'] = read('/sys/fs/cgroup/cpuset.cpus.effective')
    active = subprocess.run(['systemctl', 'is-active', HOGS], capture_output=True, text=True, check=False).stdout.strip()
    res['hogs_active'] = active
    cg, pids = unit_pids(HOGS) if active == 'active' else ('', [])
    res['hogs_cgroup'] = cg
    res['hogs_procs'] = len(pids)
    res['hogs_cpus_allowed'] = sorted(set(status_field(p, 'Cpus_allowed_list') or '?' for p in pids))
    res['hogs_policy'] = sorted(set(t['policy'] for p in pids if os.path.isdir('/proc/%d' % p) for t in threads(p)))
    res['nic_irq_affinity'] = nic_irqs()
    res['rt_runtime_us'] = read('/proc/sys/kernel/sched_rt_runtime_us')
    res['loadavg'] = read('/proc/loadavg')
    print(json.dumps(res))


if __name__ == '__main__':
    main()
