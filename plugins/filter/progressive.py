# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for one-change-at-a-time validation (the medai.llmhost.validate role): medians over repeated
measurements, counter deltas, the regression decision, and the Markdown report table."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: progressive
short_description: Helpers of the validate role (medians, counter deltas, regression decision, report table)
version_added: 0.1.0
description:
  - C(latency_median) - median (and min-max range) of each latency statistic over repeated measurements.
  - C(counters_delta) - after minus before of two M(medai.llmhost.stability_counters) results.
  - C(progressive_decision) - whether a step made the chosen percentile worse than the previous step by more than
    a threshold.
  - C(progressive_markdown) - the per-host report as a Markdown table.
  - C(vllm_bench_result) - a C(vllm bench serve --save-result) JSON (text or dict) normalised to TTFT/TPOT/ITL/E2EL
    percentiles plus C(latency_ms) (E2EL) in the shape of M(medai.llmhost.latency_probe).
author:
  - medai.llmhost contributors (@medai-llmhost)
positional: _input
options:
  _input:
    description: See each filter's description.
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Median of three probes
  ansible.builtin.set_fact:
    step_latency: "{{ probes.results | medai.llmhost.latency_median }}"

- name: Did the memory role make P95 worse by more than 10 %?
  ansible.builtin.set_fact:
    decision: "{{ current | medai.llmhost.progressive_decision(previous, metric='p95', threshold_pct=10) }}"
'''

RETURN = r'''
_value:
  description: See each filter's description.
  type: raw
'''

import math

from ansible_collections.medai.llmhost.plugins.module_utils.latency import parse_vllm_bench

LAT_KEYS = ('mean', 'min', 'p50', 'p90', 'p95', 'p99', 'max')

# counters shown in the report table (flat keys of stability_counters, see module_utils/stability.flatten)
REPORT_COUNTERS = ('vmstat.oom_kill', 'vmstat.thp_fault_fallback', 'vmstat.allocstall', 'vmstat.pswpin',
                   'vmstat.pswpout', 'zswap.stored_pages')


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    mid = n // 2
    return float(xs[mid]) if n % 2 else (xs[mid - 1] + xs[mid]) / 2.0


def _lat(run):
    if isinstance(run, dict) and 'latency_ms' in run:
        return run['latency_ms'] or {}
    return run or {}


def latency_median(runs):
    """Median over repeated measurements.

    ``runs``: list of latency_probe results (or registered loop results whose items hold them, or parsed
    vllm bench results - anything with a ``latency_ms`` dict). Failed/skipped items without latency are ignored.
    Returns {'latency_ms': {stat: median}, 'range_ms': {stat: [min, max]}, 'runs': n, 'errors': sum,
    'requests': sum, 'error_rate': errors/requests, 'throughput_rps': median}.
    """
    if isinstance(runs, dict) and 'results' in runs:
        runs = runs['results']
    runs = [r for r in (runs or []) if isinstance(r, dict) and isinstance(r.get('latency_ms'), dict)]
    out = {'latency_ms': {}, 'range_ms': {}, 'runs': len(runs)}
    for k in LAT_KEYS:
        vals = [_lat(r).get(k) for r in runs if _lat(r).get(k) is not None]
        out['latency_ms'][k] = round(_median(vals), 3) if vals else None
        out['range_ms'][k] = [min(vals), max(vals)] if vals else None
    errs = sum(int(r.get('errors') or r.get('failed') or 0) for r in runs)
    reqs = sum(int(r.get('requests') or r.get('completed', 0) + (r.get('failed') or 0)) for r in runs)
    out['errors'] = errs
    out['requests'] = reqs
    out['error_rate'] = round(errs / float(reqs), 6) if reqs else 0.0
    tp = [r.get('throughput_rps', r.get('request_throughput')) for r in runs]
    tp = [x for x in tp if x is not None]
    out['throughput_rps'] = round(_median(tp), 3) if tp else None
    return out


def _flat(sample):
    if sample is None:
        return {}
    if isinstance(sample, dict) and isinstance(sample.get('flat'), dict):
        return sample['flat']
    return dict((k, v) for k, v in (sample or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool))


def counters_delta(after, before):
    """after - before for every numeric counter both samples have (stability_counters results or flat dicts).

    A cgroup counter that went down (the service restarted into a new cgroup, which starts at zero) counts from
    zero: the delta is the after value. Gauges (zswap.stored_pages, meminfo.*) are reported as the difference too
    (negative when the pool shrank).
    """
    a, b = _flat(after), _flat(before)
    out = {}
    for k, v in a.items():
        if k not in b:
            if k.startswith('cgroup.'):
                out[k] = v  # new cgroup since the first sample
            continue
        d = v - b[k]
        if d < 0 and k.startswith('cgroup.'):
            d = v
        out[k] = d
    return out


def progressive_decision(current, previous, metric='p95', threshold_pct=10.0, max_error_rate=None):
    """Regression decision for one step.

    ``current``/``previous``: latency_median() results (or anything with latency_ms). A step regresses when
    current[metric] > previous[metric] * (1 + threshold_pct/100), or when its error rate is above
    ``max_error_rate`` (if given). Returns {'regressed', 'metric', 'previous_ms', 'current_ms', 'change_pct',
    'threshold_pct', 'reason'}.
    """
    if metric not in LAT_KEYS:
        raise ValueError('metric must be one of %s, got %r' % (', '.join(LAT_KEYS), metric))
    threshold_pct = float(threshold_pct)
    if threshold_pct < 0:
        raise ValueError('threshold_pct must be >= 0, got %s' % threshold_pct)
    cur = _lat(current).get(metric)
    prev = _lat(previous).get(metric)
    out = {'regressed': False, 'metric': metric, 'previous_ms': prev, 'current_ms': cur, 'change_pct': None,
           'threshold_pct': threshold_pct, 'reason': ''}
    if max_error_rate is not None and (current or {}).get('error_rate', 0) > float(max_error_rate):
        out['regressed'] = True
        out['reason'] = 'error rate %.2f %% > %.2f %%' % (current['error_rate'] * 100, float(max_error_rate) * 100)
        return out
    if cur is None:
        out['regressed'] = True
        out['reason'] = 'no %s measured (every request failed?)' % metric.upper()
        return out
    if prev is None or prev <= 0:
        out['reason'] = 'no previous %s to compare with' % metric.upper()
        return out
    change = (cur - prev) / prev * 100.0
    out['change_pct'] = round(change, 2)
    if change > threshold_pct and not math.isclose(change, threshold_pct):
        out['regressed'] = True
        out['reason'] = '%s %.1f ms -> %.1f ms (+%.1f %% > %.1f %% threshold)' % (
            metric.upper(), prev, cur, change, threshold_pct)
    else:
        out['reason'] = '%s %.1f ms -> %.1f ms (%+.1f %%, threshold +%.1f %%)' % (
            metric.upper(), prev, cur, change, threshold_pct)
    return out


def _f(x, nd=1):
    return '-' if x is None else ('%.' + str(nd) + 'f') % x


def progressive_markdown(report):
    """The report's Markdown: a header and one table row per step."""
    L = ['# Progressive validation: %s' % report.get('host', '?'), '']
    L.append('Load: %s, %s requests x %s repetitions (medians) at concurrency %s; decision metric %s, threshold '
             '+%s %%.' % (report.get('load_tool', 'latency_probe'), report.get('requests', '?'),
                          report.get('repeat', '?'), report.get('concurrency', '?'),
                          str(report.get('metric', 'p95')).upper(), report.get('threshold_pct', '?')))
    L.append('')
    L.append('| step | mean ms | p50 ms | p95 ms | p99 ms | errors | OOM kills delta | thp_fault_fallback delta '
             '| change | verdict |')
    L.append('|---|---|---|---|---|---|---|---|---|---|')
    for s in report.get('steps', []):
        lat = (s.get('latency') or {}).get('latency_ms', {})
        d = s.get('counters_delta') or {}
        oom = d.get('vmstat.oom_kill')
        cg = sum(v for k, v in d.items() if k.startswith('cgroup.') and k.endswith('.oom_kill'))
        dec = s.get('decision') or {}
        change = '-' if dec.get('change_pct') is None else '%+.1f %%' % dec['change_pct']
        verdict = s.get('verdict', '')
        L.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            s.get('step'), _f(lat.get('mean')), _f(lat.get('p50')), _f(lat.get('p95')), _f(lat.get('p99')),
            (s.get('latency') or {}).get('errors', '-'),
            '-' if oom is None else ('%d (service %d)' % (oom, cg) if cg else '%d' % oom),
            _f(d.get('vmstat.thp_fault_fallback'), 0), change, verdict))
    L.append('')
    if report.get('stopped_at'):
        L.append('**Stopped at step `%s`**: %s. Later steps were not applied: %s. To undo the step, run '
                 'playbooks/rollback.yml for this host.' % (report['stopped_at'], report.get('stop_reason', ''),
                                                            ', '.join(report.get('not_applied', [])) or 'none'))
    else:
        L.append('All steps applied without a regression beyond the threshold.')
    L.append('')
    return '\n'.join(L)


def vllm_bench_result(data):
    """parse_vllm_bench() of plugins/module_utils/latency.py, plus 'requests' and 'errors' for latency_median()."""
    r = parse_vllm_bench(data)
    r['requests'] = r['completed'] + r['failed']
    r['errors'] = r['failed']
    r['throughput_rps'] = r.get('request_throughput')
    return r


class FilterModule(object):
    def filters(self):
        return {
            'latency_median': latency_median,
            'counters_delta': counters_delta,
            'progressive_decision': progressive_decision,
            'progressive_markdown': progressive_markdown,
            'vllm_bench_result': vllm_bench_result,
        }
