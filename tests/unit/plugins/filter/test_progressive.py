# -*- coding: utf-8 -*-
"""The validate role's decision logic: medians over repetitions, counter deltas, regression stop, report table."""
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.medai.llmhost.plugins.filter import progressive as pf


def probe(p95, p50=10.0, p99=None, errors=0, requests=100, tp=5.0):
    return {'latency_ms': {'mean': p50 + 1, 'min': 1.0, 'p50': p50, 'p90': p95 - 1, 'p95': p95,
                           'p99': p99 if p99 is not None else p95 + 10, 'max': p95 + 20},
            'errors': errors, 'requests': requests, 'throughput_rps': tp}


def test_latency_median_odd_even_and_loop_results():
    m = pf.latency_median([probe(100), probe(300), probe(200)])
    assert m['latency_ms']['p95'] == 200.0 and m['range_ms']['p95'] == [100, 300] and m['runs'] == 3
    m = pf.latency_median({'results': [probe(100), probe(200), {'skipped': True}]})
    assert m['latency_ms']['p95'] == 150.0 and m['runs'] == 2
    m = pf.latency_median([probe(100, errors=1), probe(100, errors=2)])
    assert m['errors'] == 3 and m['requests'] == 200 and m['error_rate'] == 0.015
    empty = pf.latency_median([])
    assert empty['latency_ms']['p95'] is None and empty['runs'] == 0


def test_counters_delta_flat_and_cgroup_reset():
    before = {'flat': {'vmstat.oom_kill': 2, 'vmstat.thp_fault_fallback': 10, 'cgroup.vllm.service.oom_kill': 3,
                       'zswap.stored_pages': 500}}
    after = {'flat': {'vmstat.oom_kill': 3, 'vmstat.thp_fault_fallback': 15, 'cgroup.vllm.service.oom_kill': 1,
                      'zswap.stored_pages': 200, 'cgroup.new.service.oom_kill': 4}}
    d = pf.counters_delta(after, before)
    assert d == {'vmstat.oom_kill': 1, 'vmstat.thp_fault_fallback': 5, 'cgroup.vllm.service.oom_kill': 1,
                 'zswap.stored_pages': -300, 'cgroup.new.service.oom_kill': 4}
    assert pf.counters_delta({'a': 5, 'b': True, 'c': 'x'}, {'a': 1}) == {'a': 4}


def test_decision_threshold_boundaries():
    prev = pf.latency_median([probe(100)])
    assert pf.progressive_decision(pf.latency_median([probe(110)]), prev, 'p95', 10)['regressed'] is False  # = 10 %
    d = pf.progressive_decision(pf.latency_median([probe(110.5)]), prev, 'p95', 10)
    assert d['regressed'] is True and d['change_pct'] == 10.5 and '+10.5 %' in d['reason']
    d = pf.progressive_decision(pf.latency_median([probe(60)]), prev, 'p95', 10)
    assert d['regressed'] is False and d['change_pct'] == -40.0
    # P99 as the metric: P95 fine, P99 worse
    cur = pf.latency_median([probe(100, p99=200)])
    assert pf.progressive_decision(cur, prev, 'p95', 10)['regressed'] is False
    assert pf.progressive_decision(cur, prev, 'p99', 10)['regressed'] is True


def test_decision_errors_and_missing_values():
    prev = pf.latency_median([probe(100)])
    bad = pf.latency_median([probe(90, errors=10)])
    d = pf.progressive_decision(bad, prev, 'p95', 10, max_error_rate=0.05)
    assert d['regressed'] and 'error rate 10.00 %' in d['reason']
    assert pf.progressive_decision(bad, prev, 'p95', 10)['regressed'] is False     # no error gate given
    assert pf.progressive_decision({'latency_ms': {'p95': None}}, prev)['regressed'] is True
    assert pf.progressive_decision(prev, {'latency_ms': {}})['regressed'] is False  # baseline: nothing to compare
    with pytest.raises(ValueError):
        pf.progressive_decision(prev, prev, 'p42')
    with pytest.raises(ValueError):
        pf.progressive_decision(prev, prev, 'p95', -1)


def test_markdown_one_row_per_step():
    steps = [{'step': 'baseline', 'latency': pf.latency_median([probe(100)]), 'counters_delta': {},
              'verdict': 'baseline'},
             {'step': 'scheduling', 'latency': pf.latency_median([probe(80)]),
              'counters_delta': {'vmstat.oom_kill': 0, 'vmstat.thp_fault_fallback': 3},
              'decision': {'change_pct': -20.0}, 'verdict': 'kept'},
             {'step': 'memory', 'latency': pf.latency_median([probe(120)]),
              'counters_delta': {'vmstat.oom_kill': 1, 'cgroup.vllm.service.oom_kill': 1},
              'decision': {'change_pct': 50.0}, 'verdict': 'REGRESSION'}]
    md = pf.progressive_markdown({'host': 'lab1', 'steps': steps, 'metric': 'p95', 'threshold_pct': 10,
                                  'requests': 50, 'repeat': 3, 'concurrency': 4, 'stopped_at': 'memory',
                                  'stop_reason': 'P95 +50 %', 'not_applied': ['storage']})
    rows = [ln for ln in md.splitlines() if ln.startswith('| ') and not ln.startswith('| step')]
    assert len(rows) == 3
    assert rows[1].startswith('| scheduling | 11.0 | 10.0 | 80.0 | 90.0 | 0 | 0 | 3 | -20.0 % | kept |')
    assert '| 1 (service 1) |' in rows[2] and 'REGRESSION' in rows[2]
    assert 'Stopped at step `memory`' in md and 'storage' in md


def test_filters_registered():
    assert set(pf.FilterModule().filters()) == {'latency_median', 'counters_delta', 'progressive_decision',
                                                'progressive_markdown', 'vllm_bench_result'}


def test_vllm_bench_results_feed_the_median():
    from ansible_collections.medai.llmhost.tests.unit.plugins.modules.test_latency_probe import VLLM_RESULT
    import json
    runs = [pf.vllm_bench_result(json.dumps(dict(VLLM_RESULT, p95_e2el_ms=v))) for v in (4000.0, 4400.0, 4200.0)]
    m = pf.latency_median(runs)
    assert m['latency_ms']['p95'] == 4200.0 and m['errors'] == 6 and m['requests'] == 600
    assert m['throughput_rps'] == 2.077 and runs[0]['metrics']['ttft']['p99'] == 1103.5
