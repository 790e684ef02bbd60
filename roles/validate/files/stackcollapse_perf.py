# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fold `perf script` output into "comm;outer;...;leaf COUNT" lines (the flame graph input format).

    stackcollapse_perf.py PERF.DATA          run `perf script -i PERF.DATA` and fold its output (on the host)
    stackcollapse_perf.py - < perf-script.txt

Python standard library only; runs on the managed host through ansible.builtin.script so that only the small
folded text travels back to the controller.
"""
import re
import subprocess
import sys

OFFSET = re.compile(r'\+0x[0-9a-f]+$')


def frame_name(line):
    # "    7f3a2b1c func_name+0x1a (/usr/lib/x.so)"  ->  "func_name"
    parts = line.strip().split(None, 1)
    if len(parts) < 2:
        return None
    sym = parts[1]
    if sym.endswith(')') and ' (' in sym:
        sym, mod = sym.rsplit(' (', 1)
        if sym == '[unknown]':
            sym = '[%s]' % mod[:-1].rsplit('/', 1)[-1]
    sym = OFFSET.sub('', sym.strip())
    return sym.replace(';', ':') or None


def fold(lines):
    counts = {}
    comm = None
    stack = []

    def flush():
        if comm is not None:
            key = ';'.join([comm] + list(reversed(stack)))
            counts[key] = counts.get(key, 0) + 1

    for raw in lines:
        line = raw.rstrip('\n')
        if not line.strip():
            flush()
            comm, stack = None, []
            continue
        if not line[0].isspace():
            flush()
            # header: "comm  pid [cpu] time: period event:" (comm may contain spaces)
            m = re.match(r'^(.*?)\s+\d+(/\d+)?\s+(\[\d+\]\s+)?\d+\.\d+:', line)
            comm = (m.group(1) if m else line.split()[0]).strip().replace(' ', '_') or '?'
            stack = []
            continue
        name = frame_name(line)
        if name and comm is not None:
            stack.append(name)
    flush()
    return counts


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == '-':
        lines = sys.stdin
    else:
        p = subprocess.run(['perf', 'script', '-i', argv[1]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, check=False)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            return p.returncode
        lines = p.stdout.splitlines()
    for k, v in sorted(fold(lines).items()):
        print('%s %d' % (k, v))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
