# -*- coding: utf-8 -*-
"""The validate role's controller/host helper scripts: perf stack folding, flame graph SVG, report chart."""
from __future__ import absolute_import, division, print_function

import importlib.util
import json
import os

import pytest

FILES = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'validate', 'files')


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FILES, name + '.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PERF_SCRIPT = """EngineCore_0   812 [002]  1234.567890:   10101010 cpu-clock:pppH:
\t    55d1c0a1b2c3 busy_ms+0x1a (/usr/bin/python3.11)
\t    55d1c0a1b2c4 _PyEval_EvalFrameDefault+0x2b0 (/usr/bin/python3.11)
\t    7f0000000001 start_thread+0xd6 (/usr/lib/x86_64-linux-gnu/libc.so.6)

EngineCore_0   812 [002]  1234.577890:   10101010 cpu-clock:pppH:
\t    55d1c0a1b2c3 busy_ms+0x1a (/usr/bin/python3.11)
\t    55d1c0a1b2c4 _PyEval_EvalFrameDefault+0x2b0 (/usr/bin/python3.11)
\t    7f0000000001 start_thread+0xd6 (/usr/lib/x86_64-linux-gnu/libc.so.6)

api server   813/815 [000]  1234.580000:   10101010 cpu-clock:pppH:
\t    ffffffff81000000 tcp_sendmsg+0x10 ([kernel.kallsyms])
\t    7f0000000002 [unknown] (/usr/lib/x86_64-linux-gnu/libc.so.6)
"""


def test_fold_perf_script():
    sc = load('stackcollapse_perf')
    folded = sc.fold(PERF_SCRIPT.splitlines())
    assert folded == {
        'EngineCore_0;start_thread;_PyEval_EvalFrameDefault;busy_ms': 2,
        'api_server;[libc.so.6];tcp_sendmsg': 1,
    }


def test_flamegraph_svg(tmp_path):
    fg = load('flamegraph')
    folded = tmp_path / 'x.folded'
    folded.write_text('EngineCore_0;start_thread;busy_ms 30\nEngineCore_0;start_thread;other 10\napi;send 5\n')
    out = tmp_path / 'x.svg'
    assert fg.main(['flamegraph.py', str(folded), str(out), 'title <&>']) == 0
    svg = out.read_text()
    assert svg.startswith('<?xml') and svg.rstrip().endswith('</svg>')
    assert 'busy_ms (30 samples, 66.7%)' in svg and 'title &lt;&amp;&gt; (45 samples)' in svg
    empty = tmp_path / 'e.folded'
    empty.write_text('')
    assert fg.main(['flamegraph.py', str(empty), str(tmp_path / 'e.svg')]) == 3


def test_plot_report_png(tmp_path):
    pytest.importorskip('matplotlib')
    pr = load('plot_report')
    steps = []
    for i, (name, p95) in enumerate((('baseline', 100.0), ('scheduling', 80.0), ('memory', 130.0))):
        steps.append({'step': name, 'verdict': 'REGRESSION' if name == 'memory' else 'kept',
                      'latency': {'latency_ms': {'p50': p95 / 2, 'p95': p95, 'p99': p95 * 1.2, 'mean': p95 / 2},
                                  'range_ms': {'p50': [p95 / 2 - 1, p95 / 2 + 1], 'p95': [p95 - 5, p95 + 5],
                                               'p99': None, 'mean': None}}})
    rep = tmp_path / 'h.json'
    rep.write_text(json.dumps({'host': 'h', 'steps': steps, 'repeat': 3, 'concurrency': 4, 'requests': 50}))
    png = tmp_path / 'h.png'
    assert pr.main(['plot_report.py', str(rep), str(png)]) == 0
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
