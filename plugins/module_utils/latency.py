# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Latency measurement helpers (Python stdlib only; no Ansible import, so the lab benchmark in
``benchmarks/`` imports this file directly).

* :func:`percentile` - one percentile of a list, ``linear`` (default; interpolates between the two closest
  ranks, the same definition as ``numpy.percentile`` and therefore ``vllm bench serve``) or ``nearest_rank``
  (the smallest sample such that at least p % of the samples are <= it; always an observed value).
* :func:`summarize` - mean / min / p50 / p90 / p95 / p99 / max / stdev of latencies in ms.
* :func:`run_load` - closed-loop load generator: ``concurrency`` worker threads, each sends one request,
  waits for the full response, records the end-to-end latency measured at the client, and sends the next.
* :func:`parse_vllm_bench` - normalise the JSON file written by ``vllm bench serve --save-result``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import math
import socket
import ssl
import threading
import time

from urllib import request as urlrequest
from urllib.error import HTTPError, URLError

PERCENTILE_METHODS = ('linear', 'nearest_rank')
SUMMARY_KEYS = ('mean', 'min', 'p50', 'p90', 'p95', 'p99', 'max', 'stdev')
DEFAULT_PAYLOAD = {'prompt': 'ping', 'max_tokens': 1, 'temperature': 0}


# ----------------------------------------------------------------------------- statistics
def percentile(values, p, method='linear'):
    """The p-th percentile (0 <= p <= 100) of ``values`` (any order). None for an empty list.

    linear: rank r = p/100 * (n-1) (0-based); result = v[floor(r)] + (v[ceil(r)] - v[floor(r)]) * frac(r).
    nearest_rank: v[ceil(p/100 * n) - 1] (1-based rank ceil(p*n/100), at least 1).
    """
    if method not in PERCENTILE_METHODS:
        raise ValueError('percentile method must be one of %s, got %r' % (', '.join(PERCENTILE_METHODS), method))
    if not 0 <= p <= 100:
        raise ValueError('percentile must be within 0..100, got %r' % (p,))
    v = sorted(values)
    n = len(v)
    if n == 0:
        return None
    if method == 'nearest_rank':
        rank = int(math.ceil(p / 100.0 * n))
        return float(v[max(rank, 1) - 1])
    r = p / 100.0 * (n - 1)
    lo = int(math.floor(r))
    hi = min(lo + 1, n - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (r - lo))


def median(values):
    return percentile(values, 50, 'linear')


def summarize(values, method='linear', ndigits=3):
    """{'mean','min','p50','p90','p95','p99','max','stdev'} of ``values`` (ms); all None when empty.
    stdev is the population standard deviation (like numpy.std and vllm bench's std_*_ms)."""
    if not values:
        return dict((k, None) for k in SUMMARY_KEYS)
    n = len(values)
    mean = sum(values) / float(n)
    var = sum((x - mean) ** 2 for x in values) / float(n)
    out = {'mean': mean, 'min': float(min(values)), 'max': float(max(values)), 'stdev': math.sqrt(var)}
    for p in (50, 90, 95, 99):
        out['p%d' % p] = percentile(values, p, method)
    return dict((k, round(out[k], ndigits)) for k in SUMMARY_KEYS)


# ----------------------------------------------------------------------------- load generator
def error_kind(exc):
    """A short, stable name for a failed request (counted per kind in the result)."""
    if isinstance(exc, HTTPError):
        return 'http_%d' % exc.code
    reason = getattr(exc, 'reason', exc)
    if isinstance(exc, URLError) and isinstance(reason, str):
        return 'url_error'
    for e in (reason, exc):
        if isinstance(e, (socket.timeout,)) or 'timed out' in str(e):
            return 'timeout'
        if isinstance(e, ssl.SSLError):
            return 'ssl_error'
        if isinstance(e, ConnectionRefusedError) or getattr(e, 'errno', None) == errno.ECONNREFUSED:
            return 'connection_refused'
        if isinstance(e, ConnectionResetError) or getattr(e, 'errno', None) == errno.ECONNRESET:
            return 'connection_reset'
        if isinstance(e, socket.gaierror):
            return 'dns_error'
    if isinstance(exc, BadStatus):
        return 'http_%d' % exc.code
    return type(reason).__name__ if not isinstance(reason, str) else 'url_error'


class BadStatus(Exception):
    def __init__(self, code):
        super(BadStatus, self).__init__('unexpected HTTP status %d' % code)
        self.code = code


def build_opener(use_proxy=False, validate_certs=True):
    handlers = []
    if not use_proxy:
        handlers.append(urlrequest.ProxyHandler({}))
    if not validate_certs:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        handlers.append(urlrequest.HTTPSHandler(context=ctx))
    return urlrequest.build_opener(*handlers)


def make_sender(url, method='POST', payload=None, headers=None, timeout=30.0, expect_status=(200,),
                use_proxy=False, validate_certs=True):
    """A callable that sends one request and returns (ok, kind): kind is None on success."""
    opener = build_opener(use_proxy, validate_certs)
    data = None
    hdrs = {'User-Agent': 'medai.llmhost-latency-probe', 'Accept': 'application/json'}
    if method == 'POST':
        body = DEFAULT_PAYLOAD if payload is None else payload
        data = body if isinstance(body, bytes) else json.dumps(body).encode('utf-8')
        hdrs['Content-Type'] = 'application/json'
    hdrs.update(headers or {})
    expect = tuple(int(x) for x in expect_status)

    def send():
        req = urlrequest.Request(url, data=data, headers=hdrs, method=method)
        try:
            resp = opener.open(req, timeout=timeout)
            try:
                resp.read()
                code = resp.getcode()
            finally:
                resp.close()
            if code not in expect:
                raise BadStatus(code)
            return True, None
        except HTTPError as e:
            try:
                e.read()
                e.close()
            except Exception:
                pass
            if e.code in expect:
                return True, None
            return False, error_kind(e)
        except Exception as e:  # every failure is a measured outcome, never a traceback
            return False, error_kind(e)
    return send


def run_load(send, requests=100, concurrency=4, warmup=0, duration_s=None, clock=time.perf_counter):
    """Closed-loop load: ``concurrency`` threads share a request counter.

    ``send()`` -> (ok, kind). ``warmup`` requests are sent first (same concurrency) and not recorded.
    With ``duration_s`` the workers keep sending until that many seconds have passed (``requests`` is then
    ignored); otherwise exactly ``requests`` requests are sent.
    Returns {'samples': [{'t': start offset s, 'ms': latency, 'ok': bool, 'error': kind|None}, ...]
    (in completion order), 'wall_s': seconds from first send to last completion}.
    """
    concurrency = max(1, int(concurrency))

    def phase(n, deadline, record):
        lock = threading.Lock()
        state = {'left': n}
        out = []
        t0 = clock()

        def worker():
            while True:
                with lock:
                    if deadline is None:
                        if state['left'] <= 0:
                            return
                        state['left'] -= 1
                    elif clock() >= deadline:
                        return
                start = clock()
                ok, kind = send()
                end = clock()
                if record:
                    with lock:
                        out.append({'t': round(start - t0, 6), 'ms': round((end - start) * 1000.0, 3),
                                    'ok': ok, 'error': kind})
        threads = [threading.Thread(target=worker, name='probe-%d' % i) for i in range(concurrency)]
        for t in threads:
            t.daemon = True
            t.start()
        for t in threads:
            t.join()
        return out, clock() - t0

    if warmup:
        phase(int(warmup), None, False)
    if duration_s:
        deadline = clock() + float(duration_s)
        samples, wall = phase(0, deadline, True)
    else:
        samples, wall = phase(int(requests), None, True)
    return {'samples': samples, 'wall_s': wall}


def result_from_samples(samples, wall_s, concurrency, method='linear'):
    """The probe's result dict from run_load() samples."""
    ok_ms = [s['ms'] for s in samples if s['ok']]
    kinds = {}
    for s in samples:
        if not s['ok']:
            kinds[s['error']] = kinds.get(s['error'], 0) + 1
    n = len(samples)
    errors = n - len(ok_ms)
    return {
        'latency_ms': summarize(ok_ms, method),
        'requests': n,
        'succeeded': len(ok_ms),
        'errors': errors,
        'error_kinds': kinds,
        'error_rate': round(errors / float(n), 6) if n else 0.0,
        'duration_s': round(wall_s, 3),
        'throughput_rps': round(len(ok_ms) / wall_s, 3) if wall_s > 0 else None,
        'concurrency': int(concurrency),
        'percentile_method': method,
    }


def gate_failures(result, max_p95_ms=None, max_p99_ms=None, max_error_rate=None):
    """One-line reasons why ``result`` misses the limits ([] = passes)."""
    why = []
    lat = result['latency_ms']
    if max_error_rate is not None and result['error_rate'] > max_error_rate:
        why.append('%d of %d requests failed (error rate %.2f %% > max_error_rate %.2f %%; kinds: %s)' % (
            result['errors'], result['requests'], result['error_rate'] * 100, max_error_rate * 100,
            ', '.join('%s=%d' % kv for kv in sorted(result['error_kinds'].items())) or 'none'))
    for key, limit in (('p95', max_p95_ms), ('p99', max_p99_ms)):
        if limit is None:
            continue
        if lat[key] is None:
            why.append('no successful request, so no %s to compare with max_%s_ms %s' % (key.upper(), key, limit))
        elif lat[key] > limit:
            why.append('%s latency %.1f ms > max_%s_ms %s (p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d requests at '
                       'concurrency %d)' % (key.upper(), lat[key], key, limit, lat['p50'], lat['p99'], lat['max'],
                                            result['succeeded'], result['concurrency']))
    return why


# ----------------------------------------------------------------------------- vllm bench serve
VLLM_METRICS = ('ttft', 'tpot', 'itl', 'e2el')


def _pword(key, metric):
    """'p99.9_ttft_ms' -> 'p99.9' (the percentile part), for keys of ``metric``."""
    suffix = '_%s_ms' % metric
    if key.startswith('p') and key.endswith(suffix):
        word = key[1:-len(suffix)]
        try:
            float(word)
            return 'p' + word
        except ValueError:
            return None
    return None


def parse_vllm_bench(data):
    """Normalise a ``vllm bench serve --save-result`` JSON (dict or JSON text).

    Returns {'metrics': {'ttft'|'tpot'|'itl'|'e2el': {'mean','median','std','p50',...}}, 'completed',
    'failed', 'duration_s', 'request_throughput', 'output_throughput', 'total_token_throughput',
    'max_concurrency', 'num_prompts', 'model_id', 'date', 'latency_ms' (E2EL in this module's summary shape,
    where the file has it)}. Metrics vLLM did not report (not in --percentile-metrics) are absent.
    """
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError('vllm bench result must be a JSON object, got %s' % type(data).__name__)
    if 'completed' not in data:
        raise ValueError('not a vllm bench serve result: no "completed" key')
    metrics = {}
    for m in VLLM_METRICS:
        d = {}
        for stat in ('mean', 'median', 'std'):
            k = '%s_%s_ms' % (stat, m)
            if data.get(k) is not None:
                d[stat] = float(data[k])
        for k, v in data.items():
            pw = _pword(k, m)
            if pw and v is not None:
                d[pw] = float(v)
        if d:
            metrics[m] = d
    failed = data.get('failed')
    if failed is None and isinstance(data.get('errors'), list):
        failed = sum(1 for e in data['errors'] if e)
    out = {
        'metrics': metrics,
        'completed': int(data['completed']),
        'failed': int(failed or 0),
        'duration_s': data.get('duration'),
        'request_throughput': data.get('request_throughput'),
        'output_throughput': data.get('output_throughput'),
        'total_token_throughput': data.get('total_token_throughput'),
        'max_concurrency': data.get('max_concurrency'),
        'num_prompts': data.get('num_prompts'),
        'model_id': data.get('model_id'),
        'date': data.get('date'),
    }
    e2 = metrics.get('e2el', {})
    if e2:
        out['latency_ms'] = {'mean': e2.get('mean'), 'p50': e2.get('p50', e2.get('median')), 'p90': e2.get('p90'),
                             'p95': e2.get('p95'), 'p99': e2.get('p99'), 'max': e2.get('p100'),
                             'min': None, 'stdev': e2.get('std')}
    return out


def vllm_bench_argv(base_url, model, num_prompts=200, max_concurrency=8, input_len=512, output_len=128,
                    result_dir='/tmp', result_filename='medai-vllm-bench.json', percentiles=(50, 90, 95, 99, 100),
                    executable='vllm', extra_args=None, backend='vllm'):
    """The ``vllm bench serve`` command line (flags as in vllm/benchmarks/serve.py and datasets.py)."""
    argv = [executable, 'bench', 'serve', '--backend', backend, '--base-url', base_url.rstrip('/'),
            '--model', model, '--endpoint', '/v1/completions',
            '--dataset-name', 'random', '--random-input-len', str(int(input_len)),
            '--random-output-len', str(int(output_len)), '--num-prompts', str(int(num_prompts)),
            '--max-concurrency', str(int(max_concurrency)),
            '--percentile-metrics', 'ttft,tpot,itl,e2el',
            '--metric-percentiles', ','.join(str(p) for p in percentiles),
            '--save-result', '--result-dir', result_dir, '--result-filename', result_filename,
            '--disable-tqdm']
    return argv + list(extra_args or [])
