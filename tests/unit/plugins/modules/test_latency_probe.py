# -*- coding: utf-8 -*-
"""latency_probe: percentile math on known data, the load generator against a local stand-in HTTP server on
127.0.0.1 (tests/fixtures/vllm_standin.py in a subprocess, and a tiny in-process server for error cases),
gates, and the vllm bench serve result parser. Touches no kernel state."""
from __future__ import absolute_import, division, print_function

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

try:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
except ImportError:  # pragma: no cover
    pytest.skip('python3 required', allow_module_level=True)

from ansible_collections.medai.llmhost.plugins.module_utils import latency
from ansible_collections.medai.llmhost.plugins.modules import latency_probe
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.knob_module_helpers import run_module

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, '..', '..', '..', 'fixtures', 'vllm_standin.py')


# ----------------------------------------------------------------------------- percentile math
def test_percentile_linear_matches_numpy_definition():
    v = [15, 20, 35, 40, 50]
    # numpy.percentile(v, p) values, computed by hand: rank = p/100*(n-1)
    assert latency.percentile(v, 0) == 15.0
    assert latency.percentile(v, 100) == 50.0
    assert latency.percentile(v, 50) == 35.0
    assert latency.percentile(v, 40) == 29.0          # rank 1.6 -> 20 + 0.6*15
    assert latency.percentile(v, 95) == pytest.approx(48.0)   # rank 3.8 -> 40 + 0.8*10
    assert latency.percentile(list(reversed(v)), 95) == pytest.approx(48.0)  # order does not matter


def test_percentile_nearest_rank_is_an_observed_value():
    v = [15, 20, 35, 40, 50]
    assert latency.percentile(v, 5, 'nearest_rank') == 15.0   # ceil(0.25)=1
    assert latency.percentile(v, 30, 'nearest_rank') == 20.0  # ceil(1.5)=2
    assert latency.percentile(v, 40, 'nearest_rank') == 20.0  # ceil(2.0)=2
    assert latency.percentile(v, 50, 'nearest_rank') == 35.0  # ceil(2.5)=3
    assert latency.percentile(v, 100, 'nearest_rank') == 50.0
    assert latency.percentile(v, 0, 'nearest_rank') == 15.0


def test_percentile_1_to_100_known_tail():
    v = list(range(1, 101))  # 1..100
    assert latency.percentile(v, 99) == pytest.approx(99.01)
    assert latency.percentile(v, 99, 'nearest_rank') == 99.0
    assert latency.percentile(v, 95) == pytest.approx(95.05)
    assert latency.percentile(v, 95, 'nearest_rank') == 95.0
    s = latency.summarize(v)
    assert s['mean'] == 50.5 and s['min'] == 1 and s['max'] == 100 and s['p50'] == 50.5
    assert s['stdev'] == pytest.approx(28.866, abs=1e-3)


def test_percentile_edge_cases():
    assert latency.percentile([], 50) is None
    assert latency.percentile([7], 99) == 7.0
    assert latency.summarize([])['p95'] is None
    with pytest.raises(ValueError):
        latency.percentile([1], 101)
    with pytest.raises(ValueError):
        latency.percentile([1], 50, 'weird')


def test_run_load_counts_requests_and_concurrency_with_fake_sender():
    inflight = {'now': 0, 'max': 0}
    lock = threading.Lock()
    calls = []

    def send():
        with lock:
            inflight['now'] += 1
            inflight['max'] = max(inflight['max'], inflight['now'])
            calls.append(1)
            n = len(calls)
        time.sleep(0.005)
        with lock:
            inflight['now'] -= 1
        return (n % 10 != 0), (None if n % 10 else 'http_500')

    run = latency.run_load(send, requests=50, concurrency=5, warmup=10)
    assert len(calls) == 60                      # 10 warm-up + 50 measured
    assert len(run['samples']) == 50
    assert inflight['max'] == 5
    res = latency.result_from_samples(run['samples'], run['wall_s'], 5)
    assert res['requests'] == 50 and res['errors'] == res['error_kinds'].get('http_500', 0)
    assert res['succeeded'] + res['errors'] == 50


def test_run_load_duration():
    run = latency.run_load(lambda: (time.sleep(0.01) or True, None), concurrency=2, duration_s=0.3)
    assert 0.25 < run['wall_s'] < 5          # loose upper bound: the test host may be busy
    assert 2 <= len(run['samples']) <= 80


def test_gate_messages_name_the_numbers():
    res = latency.result_from_samples([{'t': 0, 'ms': float(x), 'ok': True, 'error': None} for x in range(1, 101)],
                                      1.0, 4)
    assert latency.gate_failures(res, max_p95_ms=200) == []
    why = latency.gate_failures(res, max_p95_ms=90, max_p99_ms=99.5)
    assert len(why) == 1 and why[0].startswith('P95 latency 95.0 ms > max_p95_ms 90')
    bad = latency.result_from_samples([{'t': 0, 'ms': 1.0, 'ok': False, 'error': 'timeout'}] * 3, 1.0, 1)
    why = latency.gate_failures(bad, max_p95_ms=10, max_error_rate=0.5)
    assert 'error rate 100.00 %' in why[0] and 'timeout=3' in why[0]
    assert 'no successful request' in why[1]


# ----------------------------------------------------------------------------- real HTTP on 127.0.0.1
def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope='module')
def standin(tmp_path_factory):
    port = free_port()
    env = dict(os.environ, VLLM_STANDIN_RECORD=str(tmp_path_factory.mktemp('standin') / 'record.json'),
               VLLM_STANDIN_WORK_MS='5', VLLM_STANDIN_ENGINE_THREADS='2')
    proc = subprocess.Popen([sys.executable, STANDIN, 'serve', 'test-model', '--host', '127.0.0.1',
                             '--port', str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield 'http://127.0.0.1:%d' % port
    proc.terminate()
    proc.wait(10)


class Flaky(BaseHTTPRequestHandler):
    """Every third POST answers 503; GET /slow sleeps 0.5 s."""
    counter = [0]

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length') or 0))
        self.counter[0] += 1
        code = 503 if self.counter[0] % 3 == 0 else 200
        self.send_response(code)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    def do_GET(self):
        if self.path == '/slow':
            time.sleep(0.5)
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()


@pytest.fixture
def flaky():
    srv = ThreadingHTTPServer(('127.0.0.1', 0), Flaky)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever)
    t.daemon = True
    t.start()
    yield 'http://127.0.0.1:%d' % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_module_against_standin(standin):
    res = run_module(latency_probe, {'url': standin + '/v1/completions', 'requests': 30, 'concurrency': 3,
                                     'warmup': 2, 'return_samples': True, 'max_p95_ms': 5000})
    assert not res.get('failed'), res
    assert res['changed'] is False
    assert res['requests'] == 30 and res['errors'] == 0 and res['succeeded'] == 30
    lat = res['latency_ms']
    assert lat['min'] >= 4.0                     # at least the 5 ms of engine work
    assert lat['min'] <= lat['p50'] <= lat['p95'] <= lat['p99'] <= lat['max']
    assert len(res['samples']) == 30 and all(s['ok'] for s in res['samples'])
    assert res['throughput_rps'] > 0 and res['gate']['failures'] == []


def test_module_check_mode_still_measures(standin):
    res = run_module(latency_probe, {'url': standin + '/v1/completions', 'requests': 5, 'concurrency': 1},
                     check_mode=True)
    assert not res.get('failed') and res['requests'] == 5 and res['latency_ms']['p50'] is not None
    assert 'samples' not in res


def test_module_get_and_p95_gate_fails_with_numbers(flaky):
    res = run_module(latency_probe, {'url': flaky + '/slow', 'method': 'GET', 'requests': 4, 'concurrency': 2,
                                     'warmup': 0, 'max_p95_ms': 100})
    assert res['failed'] is True
    assert 'P95 latency' in res['msg'] and '> max_p95_ms 100' in res['msg']
    assert res['latency_ms']['p95'] >= 500


def test_module_error_rate_gate(flaky):
    Flaky.counter[0] = 0
    res = run_module(latency_probe, {'url': flaky + '/v1/completions', 'requests': 30, 'concurrency': 1,
                                     'warmup': 0})
    assert res['failed'] is True and res['errors'] == 10 and res['error_kinds'] == {'http_503': 10}
    assert 'error rate 33.33 %' in res['msg']
    Flaky.counter[0] = 0
    res = run_module(latency_probe, {'url': flaky + '/v1/completions', 'requests': 30, 'concurrency': 1,
                                     'warmup': 0, 'max_error_rate': 0.4})
    assert not res.get('failed') and res['error_rate'] == pytest.approx(1 / 3.0, abs=1e-4)
    Flaky.counter[0] = 0
    res = run_module(latency_probe, {'url': flaky + '/v1/completions', 'requests': 3, 'concurrency': 1,
                                     'warmup': 0, 'expect_status': [200, 503]})
    assert not res.get('failed') and res['errors'] == 0


def test_module_connection_refused():
    res = run_module(latency_probe, {'url': 'http://127.0.0.1:%d/v1/completions' % free_port(), 'requests': 3,
                                     'concurrency': 1, 'warmup': 0, 'timeout': 2})
    assert res['failed'] is True and res['error_kinds'] == {'connection_refused': 3}
    assert res['latency_ms']['p95'] is None


def test_module_rejects_bad_input():
    res = run_module(latency_probe, {'url': 'ftp://x', 'concurrency': 0})
    assert res['failed'] is True and 'http://' in res['msg'] and 'concurrency must be >= 1' in res['msg']


def test_payload_default_carries_model(flaky):
    seen = []
    orig = latency.make_sender

    def spy(url, **kw):
        seen.append(kw['payload'])
        return orig(url, **kw)
    latency.make_sender = spy
    try:
        run_module(latency_probe, {'url': flaky + '/x', 'requests': 1, 'concurrency': 1, 'warmup': 0,
                                   'model': 'm1', 'expect_status': [200, 503]})
    finally:
        latency.make_sender = orig
    assert seen == [{'prompt': 'ping', 'max_tokens': 1, 'temperature': 0, 'model': 'm1'}]


# ----------------------------------------------------------------------------- vllm bench serve parser
VLLM_RESULT = {
    "date": "20251124-101530", "endpoint_type": "vllm", "backend": "vllm", "label": None,
    "model_id": "baichuan-inc/Baichuan-M2-32B-GPTQ-Int4", "tokenizer_id": "baichuan-inc/Baichuan-M2-32B-GPTQ-Int4",
    "num_prompts": 200, "request_rate": "inf", "burstiness": 1.0, "max_concurrency": 8,
    "duration": 95.3121, "completed": 198, "failed": 2, "total_input_tokens": 101376, "total_output_tokens": 25344,
    "request_throughput": 2.0774, "request_goodput": None, "output_throughput": 265.91,
    "total_token_throughput": 1329.55, "max_output_tokens_per_s": 312.0, "max_concurrent_requests": 8,
    "mean_ttft_ms": 412.73, "median_ttft_ms": 355.12, "std_ttft_ms": 190.4,
    "p50_ttft_ms": 355.12, "p90_ttft_ms": 640.2, "p95_ttft_ms": 801.77, "p99_ttft_ms": 1103.5, "p99.9_ttft_ms": 1290.0,
    "mean_tpot_ms": 26.31, "median_tpot_ms": 25.9, "std_tpot_ms": 2.1,
    "p50_tpot_ms": 25.9, "p90_tpot_ms": 28.8, "p95_tpot_ms": 29.7, "p99_tpot_ms": 33.05, "p99.9_tpot_ms": 35.0,
    "mean_itl_ms": 26.05, "median_itl_ms": 24.8, "std_itl_ms": 9.7,
    "p50_itl_ms": 24.8, "p90_itl_ms": 31.0, "p95_itl_ms": 36.4, "p99_itl_ms": 70.2, "p99.9_itl_ms": 150.3,
    "mean_e2el_ms": 3753.4, "median_e2el_ms": 3690.0, "std_e2el_ms": 410.2,
    "p50_e2el_ms": 3690.0, "p90_e2el_ms": 4201.0, "p95_e2el_ms": 4388.6, "p99_e2el_ms": 4950.1,
    "p99.9_e2el_ms": 5101.0, "p100_e2el_ms": 5120.5,
}


def test_parse_vllm_bench_result():
    r = latency.parse_vllm_bench(json.dumps(VLLM_RESULT))
    assert r['completed'] == 198 and r['failed'] == 2 and r['max_concurrency'] == 8
    assert set(r['metrics']) == {'ttft', 'tpot', 'itl', 'e2el'}
    assert r['metrics']['ttft'] == {'mean': 412.73, 'median': 355.12, 'std': 190.4, 'p50': 355.12, 'p90': 640.2,
                                    'p95': 801.77, 'p99': 1103.5, 'p99.9': 1290.0}
    assert r['metrics']['tpot']['p99'] == 33.05 and r['metrics']['itl']['p99.9'] == 150.3
    assert r['latency_ms'] == {'mean': 3753.4, 'p50': 3690.0, 'p90': 4201.0, 'p95': 4388.6, 'p99': 4950.1,
                               'max': 5120.5, 'min': None, 'stdev': 410.2}
    assert r['duration_s'] == 95.3121 and r['model_id'].startswith('baichuan-inc/')


def test_parse_vllm_bench_older_result_without_failed_and_e2el():
    old = dict((k, v) for k, v in VLLM_RESULT.items() if 'e2el' not in k and k != 'failed')
    old['errors'] = ['', '', 'TimeoutError', '']
    r = latency.parse_vllm_bench(old)
    assert r['failed'] == 1 and 'e2el' not in r['metrics'] and 'latency_ms' not in r
    with pytest.raises(ValueError):
        latency.parse_vllm_bench({'foo': 1})


def test_vllm_bench_argv_uses_real_flags():
    argv = latency.vllm_bench_argv('http://127.0.0.1:8000/', 'm', num_prompts=50, max_concurrency=4)
    s = ' '.join(argv)
    assert argv[:3] == ['vllm', 'bench', 'serve']
    for flag in ('--backend vllm', '--base-url http://127.0.0.1:8000 ', '--model m', '--dataset-name random',
                 '--num-prompts 50', '--max-concurrency 4', '--percentile-metrics ttft,tpot,itl,e2el',
                 '--metric-percentiles 50,90,95,99,100', '--save-result', '--result-filename medai-vllm-bench.json'):
        assert flag in s, flag
