# -*- coding: utf-8 -*-
"""Fakes for chrt_priority / cpuset tests: a scheduler syscall layer, fake /proc processes,
a recording systemctl, and a runner that calls a module's main() with patch_module_args."""
from __future__ import absolute_import, division, print_function

import errno
import os
import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.medai.llmhost.plugins.module_utils import sched

_POL = sched.POLICIES


class FakeSched(object):
    """Threads: tid -> {'policy': int, 'priority': int, 'cpus': set}. Records every setter call."""

    def __init__(self, ncpus=8):
        self.threads = {}
        self.ncpus = ncpus
        self.calls = []          # setter calls only
        self.eperm_rt = set()    # tids whose RT requests fail with EPERM
        self.allowed_cpus = {}   # tid -> set: affinity is intersected with it (a cpuset)

    def add(self, tid, policy='other', priority=0, cpus=None):
        self.threads[tid] = {'policy': _POL[policy], 'priority': priority,
                             'cpus': set(cpus if cpus is not None else range(self.ncpus))}

    def _get(self, tid):
        if tid not in self.threads:
            raise OSError(errno.ESRCH, 'No such process')
        return self.threads[tid]

    def getscheduler(self, tid):
        return self._get(tid)['policy']

    def getparam(self, tid):
        return self._get(tid)['priority']

    def getaffinity(self, tid):
        return set(self._get(tid)['cpus'])

    def setscheduler(self, tid, policy, priority):
        self.calls.append(('setscheduler', tid, policy, priority))
        t = self._get(tid)
        if policy in (sched.SCHED_FIFO, sched.SCHED_RR):
            if not 1 <= priority <= 99:
                raise OSError(errno.EINVAL, 'Invalid argument')
            if tid in self.eperm_rt:
                raise OSError(errno.EPERM, 'Operation not permitted')
        elif priority != 0:
            raise OSError(errno.EINVAL, 'Invalid argument')
        t['policy'], t['priority'] = policy, priority

    def setaffinity(self, tid, cpus):
        self.calls.append(('setaffinity', tid, sorted(cpus)))
        t = self._get(tid)
        eff = set(cpus) & self.allowed_cpus.get(tid, set(range(self.ncpus)))
        if not eff:
            raise OSError(errno.EINVAL, 'Invalid argument')
        t['cpus'] = eff

    def state(self, tid):
        t = self.threads[tid]
        return (sched.POLICY_NAMES[t['policy']], t['priority'])


def stat_line(tid, comm, ppid=1, starttime=1000, policy=0, rt_priority=0):
    fields = ['S', str(ppid)] + ['0'] * 17 + [str(starttime)] + ['0'] * 17 + [str(rt_priority), str(policy)] + ['0'] * 11
    return '%d (%s) %s' % (tid, comm, ' '.join(fields))


def make_proc(fake, fsched, pid, comm, cmdline, threads=None, cgroup='/user.slice', ppid=1, starttime=1000,
              policy='other', priority=0):
    """A process in the fake /proc with threads {tid: comm} (the main thread pid is added)."""
    threads = dict(threads or {})
    threads.setdefault(pid, comm)
    fake.file('/proc/%d/comm' % pid, comm)
    fake.file('/proc/%d/cmdline' % pid, '')
    with open(fake.path('/proc/%d/cmdline' % pid), 'wb') as f:
        f.write(b'\0'.join(a.encode() for a in cmdline) + (b'\0' if cmdline else b''))
    fake.file('/proc/%d/status' % pid, 'Name:\t%s\nPid:\t%d\nPPid:\t%d\n' % (comm, pid, ppid))
    fake.file('/proc/%d/cgroup' % pid, '0::%s' % cgroup)
    for tid, tcomm in threads.items():
        fake.file('/proc/%d/task/%d/comm' % (pid, tid), tcomm)
        fake.file('/proc/%d/task/%d/stat' % (pid, tid), stat_line(tid, tcomm, ppid, starttime + tid))
        fsched.add(tid, policy, priority)


class FakeSystemctl(object):
    """run_command stand-in: `systemctl show` answers from `units`; other commands are recorded."""

    def __init__(self, units=None, on_command=None):
        self.units = units or {}
        self.commands = []
        self.on_command = on_command

    def __call__(self, module, args, **kwargs):
        args = list(args)
        self.commands.append(args[1:])
        if args[1] == 'show':
            unit = args[-1]
            props = [args[i + 1] for i, a in enumerate(args) if a == '-p']
            info = self.units.get(unit, {'LoadState': 'not-found', 'ActiveState': 'inactive', 'MainPID': '0',
                                         'ControlGroup': ''})
            return 0, ''.join('%s=%s\n' % (p, info.get(p, '')) for p in props), ''
        if self.on_command:
            return self.on_command(args[1:])
        return 0, '', ''

    def mutating(self):
        return [c for c in self.commands if c[0] != 'show']


class ModuleRunner(object):
    def __init__(self, monkeypatch, capsys, systemctl):
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.systemctl = systemctl

        def run_command(module, args, **kwargs):
            return systemctl(module, args, **kwargs)
        monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
        monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                            lambda m, name, *a, **kw: '/usr/bin/%s' % name if name == 'systemctl' else None)
        self.warnings = []
        monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda m, msg, **kw: self.warnings.append(msg))

    def __call__(self, mod, args, check=False, diff=False):
        args = dict(args)
        self.warnings = []
        if check:
            args['_ansible_check_mode'] = True
        if diff:
            args['_ansible_diff'] = True
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                mod.main()
        out = self.capsys.readouterr().out
        res = json.loads(out)
        res['warnings'] = list(self.warnings)  # AnsibleModule.warn is captured (controller-side in-process)
        return res


class FakeCgroupFS(object):
    """A cgroup v2 tree under the fake root with kernel-like behaviour for the files cpuset uses:
    cgroup.subtree_control (+/- controllers), cpuset.cpus/mems -> *.effective, cpuset.cpus.partition
    (valid, or '<kind> invalid (<reason>)' when `invalid_reason` is set), cgroup.procs (moves a pid and
    updates /proc/<pid>/cgroup). mkdir/rmdir of cgroups go through cgroup2.mkdir/rmdir (patched here)."""

    ROOT = '/sys/fs/cgroup'

    def __init__(self, fake, monkeypatch, online='0-7', nodes='0-1', v2=True):
        from ansible_collections.medai.llmhost.plugins.module_utils import cgroup2
        self.fake = fake
        self.online = online
        self.nodes = nodes
        self.invalid_reason = None
        self.removed = []
        fake.file('/sys/devices/system/cpu/online', online)
        fake.file('/sys/devices/system/node/online', nodes)
        if not v2:
            fake.file('/sys/fs/cgroup/cpuset/cpuset.cpus', online)
            return
        r = self.ROOT
        fake.file(r + '/cgroup.controllers', 'cpuset cpu io memory hugetlb pids rdma misc')
        fake.file(r + '/cgroup.subtree_control', 'cpu io memory pids')
        fake.file(r + '/cgroup.procs', '1')
        fake.file(r + '/cpuset.cpus.effective', online, mode=0o444)
        fake.file(r + '/cpuset.mems.effective', nodes, mode=0o444)
        fake.hooks[fake.path(r + '/cgroup.subtree_control')] = self._subtree_hook(r)
        monkeypatch.setattr(cgroup2, 'mkdir', lambda hp: self.mk(hp[len(fake.root):]))
        monkeypatch.setattr(cgroup2, 'rmdir', self._rmdir)

    def _rmdir(self, hp):
        import shutil
        self.removed.append(hp[len(self.fake.root):])
        shutil.rmtree(hp)

    def _subtree_hook(self, cg):
        hp = self.fake.path(cg + '/cgroup.subtree_control')

        def hook(value):
            cur = self.fake.read(cg + '/cgroup.subtree_control').split()
            for tok in value.split():
                name = tok[1:]
                if tok.startswith('+') and name not in cur:
                    cur.append(name)
                if tok.startswith('-') and name in cur:
                    cur.remove(name)
            self.fake.sticky[hp] = ' '.join(cur)
            # children get the controller's files
            if 'cpuset' in cur:
                for child in os.listdir(self.fake.path(cg)):
                    if os.path.isdir(self.fake.path(cg + '/' + child)):
                        self._cpuset_files(cg + '/' + child)
        return hook

    def parent_eff(self, cg, what='cpus'):
        parent = cg.rsplit('/', 1)[0]
        return self.fake.read(parent + '/cpuset.%s.effective' % what).strip()

    def _cpuset_files(self, cg, cpus='', mems='', partition='member'):
        f = self.fake
        if os.path.exists(f.path(cg + '/cpuset.cpus')):
            return
        f.file(cg + '/cpuset.cpus', cpus)
        f.file(cg + '/cpuset.mems', mems)
        f.file(cg + '/cpuset.cpus.effective', cpus or self.parent_eff(cg), mode=0o444)
        f.file(cg + '/cpuset.mems.effective', mems or self.parent_eff(cg, 'mems'), mode=0o444)
        f.file(cg + '/cpuset.cpus.partition', partition)
        f.hooks[f.path(cg + '/cpuset.cpus')] = lambda v: self._set_eff(cg, 'cpus', v)
        f.hooks[f.path(cg + '/cpuset.mems')] = lambda v: self._set_eff(cg, 'mems', v)
        f.hooks[f.path(cg + '/cpuset.cpus.partition')] = lambda v: self._partition(cg, v)

    def _set_eff(self, cg, what, value):
        eff = value or self.parent_eff(cg, what)
        hp = self.fake.path(cg + '/cpuset.%s.effective' % what)
        os.chmod(hp, 0o644)
        with open(hp, 'w') as fh:
            fh.write(eff + '\n')
        os.chmod(hp, 0o444)

    def _partition(self, cg, value):
        hp = self.fake.path(cg + '/cpuset.cpus.partition')
        if value not in ('member', 'root', 'isolated'):
            raise OSError(errno.EINVAL, 'Invalid argument')
        if value != 'member' and self.invalid_reason:
            self.fake.sticky[hp] = '%s invalid (%s)' % (value, self.invalid_reason)
        else:
            self.fake.sticky.pop(hp, None)

    def _procs_hook(self, cg):
        hp = self.fake.path(cg + '/cgroup.procs')

        def hook(value):
            pid = int(value)
            # remove from its old cgroup
            old = self.fake.read('/proc/%d/cgroup' % pid).strip()[3:]
            old_cg = self.ROOT + (old if old != '/' else '')
            if old_cg != cg and os.path.exists(self.fake.path(old_cg + '/cgroup.procs')):
                left = [x for x in self.fake.read(old_cg + '/cgroup.procs').split() if x != str(pid)]
                with open(self.fake.path(old_cg + '/cgroup.procs'), 'w') as fh:
                    fh.write('\n'.join(left) + ('\n' if left else ''))
            cur = self.fake.read(cg + '/cgroup.procs').split()
            if str(pid) not in cur:
                cur.append(str(pid))
            self.fake.sticky[hp] = '\n'.join(cur)
            self.fake.file('/proc/%d/cgroup' % pid, '0::%s' % (cg[len(self.ROOT):] or '/'))
        return hook

    def mk(self, cg, cpus='', mems='', partition='member', procs=(), cpuset=None):
        """Create a cgroup; it gets cpuset files when its parent's subtree_control has cpuset."""
        f = self.fake
        f.file(cg + '/cgroup.procs', '\n'.join(str(p) for p in procs))
        f.hooks[f.path(cg + '/cgroup.procs')] = self._procs_hook(cg)
        f.file(cg + '/cgroup.events', 'populated %d\nfrozen 0' % (1 if procs else 0))
        parent = cg.rsplit('/', 1)[0]
        f.file(cg + '/cgroup.controllers', f.read(parent + '/cgroup.subtree_control').strip())
        f.file(cg + '/cgroup.subtree_control', '')
        f.hooks[f.path(cg + '/cgroup.subtree_control')] = self._subtree_hook(cg)
        for pid in procs:
            f.file('/proc/%d/cgroup' % pid, '0::%s' % cg[len(self.ROOT):])
        has = 'cpuset' in f.read(parent + '/cgroup.subtree_control').split() if cpuset is None else cpuset
        if has:
            self._cpuset_files(cg, cpus, mems, partition)
            if cpus:
                self._set_eff(cg, 'cpus', cpus)
        return cg

    def proc(self, pid, cg):
        self.fake.file('/proc/%d/comm' % pid, 'p%d' % pid)
        self.fake.file('/proc/%d/cgroup' % pid, '0::%s' % (cg[len(self.ROOT):] or '/'))
        if os.path.exists(self.fake.path(cg + '/cgroup.procs')):
            cur = self.fake.read(cg + '/cgroup.procs').split() + [str(pid)]
            with open(self.fake.path(cg + '/cgroup.procs'), 'w') as fh:
                fh.write('\n'.join(cur) + '\n')

    def read(self, cg, name):
        return self.fake.read(cg + '/' + name).strip()
