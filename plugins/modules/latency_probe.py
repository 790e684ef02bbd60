#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: latency_probe
short_description: Measure end-to-end request latency of an inference endpoint and gate on P95/P99 and errors
version_added: 0.1.0
description:
  - A small closed-loop load generator (Python standard library only - C(urllib) and threads). O(concurrency)
    workers each send one request, wait for the complete response, record its end-to-end latency measured at the
    client, and send the next, until O(requests) requests (or O(duration_s) seconds) have been sent.
  - Reports mean, P50, P90, P95, P99 and max latency of the successful requests, the number and kinds of failed
    requests, and the throughput. Fails the task when P95 exceeds O(max_p95_ms), P99 exceeds O(max_p99_ms) or the
    error rate exceeds O(max_error_rate), with a message that names the numbers.
  - Runs wherever the task runs - on the managed host (measures the service without the network) or on the
    controller with C(delegate_to=localhost) (measures what clients see, network included).
  - It is the lab's stand-in for C(vllm bench serve) (which reports TTFT/TPOT/ITL and needs a real vLLM); the
    M(medai.llmhost.latency_probe) measures whole requests only.
  - 'Percentiles: O(percentile_method=linear) (default) interpolates between the two closest ranks - rank
    C(r = p/100 * (n - 1)), value C(v[floor(r)] + (v[ceil(r)] - v[floor(r)]) * (r - floor(r))) over the sorted
    latencies - which is the definition of C(numpy.percentile) and therefore of C(vllm bench serve), so the two
    tools'' numbers compare. V(nearest_rank) returns the observed sample at 1-based rank C(ceil(p/100 * n)).'
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  url:
    description: Endpoint to measure, for example V(http://127.0.0.1:8000/v1/completions) or V(http://127.0.0.1:8000/health).
    type: str
    required: true
  method:
    description: V(POST) sends O(payload) as JSON; V(GET) sends no body.
    type: str
    choices: [POST, GET]
    default: POST
  payload:
    description:
      - 'JSON body for V(POST). Default is a tiny completion request
        C({"prompt": "ping", "max_tokens": 1, "temperature": 0}) plus C(model) when O(model) is set.'
    type: dict
  model:
    description: Added as C(model) to the default payload (vLLM answers 404 for an unknown model name).
    type: str
  headers:
    description: Extra HTTP headers, for example C(Authorization). Values are not returned.
    type: dict
    default: {}
  requests:
    description: Number of measured requests (after O(warmup)). Ignored when O(duration_s) is set.
    type: int
    default: 100
  concurrency:
    description: Number of requests in flight at any time (closed loop, like C(vllm bench serve --max-concurrency)).
    type: int
    default: 4
  duration_s:
    description: Measure for this many seconds instead of a fixed number of requests.
    type: float
  warmup:
    description: Requests sent first and not measured (connection set-up, first-request effects, caches).
    type: int
    default: 2
  timeout:
    description: Seconds before one request counts as failed with kind C(timeout).
    type: float
    default: 30
  expect_status:
    description: HTTP status codes that count as success.
    type: list
    elements: int
    default: [200]
  validate_certs:
    description: Verify TLS certificates for C(https) URLs.
    type: bool
    default: true
  use_proxy:
    description:
      - Use C(http_proxy)/C(https_proxy) from the environment. Off by default - a proxy in the path distorts what
        is measured.
    type: bool
    default: false
  percentile_method:
    description: How percentiles are computed (see the description).
    type: str
    choices: [linear, nearest_rank]
    default: linear
  max_p95_ms:
    description: Fail when P95 of the successful requests is above this many milliseconds.
    type: float
  max_p99_ms:
    description: Fail when P99 of the successful requests is above this many milliseconds.
    type: float
  max_error_rate:
    description:
      - Fail when more than this fraction (0..1) of the requests failed (refused, reset, timeout, unexpected status).
        The default V(0) fails on any error - a health gate should not pass a service that drops requests.
    type: float
    default: 0
  return_samples:
    description: Also return every measured request (start offset, latency, outcome) in RV(samples).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - The module changes no state anywhere (it only sends requests and reads the responses), so in check mode it
        B(does send the load) and reports real numbers; gates fail in check mode too. Point it at an endpoint
        whose requests have no side effects (a completion request has none).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Latencies are end-to-end at the client - connection set-up, queueing in the server and on the host's run
    queue included - which is what users of the service see. Server-side handler times can hide queueing
    (for example under C(SCHED_FIFO), where waiting moves from the handler into the run queue).
  - Percentiles and the mean are over successful requests only; failed requests are counted in RV(errors).
  - One Python process with threads - fine for tens of concurrent requests and latencies of milliseconds and more.
    For token-level metrics (TTFT, TPOT, ITL) against a real vLLM use C(vllm bench serve) (the
    C(medai.llmhost.validate) role runs it when the C(vllm) CLI is installed).
seealso:
  - module: medai.llmhost.stability_counters
  - name: vllm bench serve
    description: vLLM's serving benchmark (TTFT, TPOT, ITL, E2EL percentiles).
    link: https://docs.vllm.ai/en/latest/cli/bench/serve.html
'''

EXAMPLES = r'''
- name: Health gate - 20 completions at concurrency 2 must have P95 under 1.5 s
  medai.llmhost.latency_probe:
    url: http://127.0.0.1:8000/v1/completions
    requests: 20
    concurrency: 2
    max_p95_ms: 1500

- name: Measure from the controller (network included), for 60 s, tolerate 1 % errors
  medai.llmhost.latency_probe:
    url: "http://{{ inventory_hostname }}:8000/v1/completions"
    model: baichuan-inc/Baichuan-M2-32B-GPTQ-Int4
    duration_s: 60
    concurrency: 16
    max_error_rate: 0.01
    max_p99_ms: 4000
  delegate_to: localhost
  register: probe

- name: Show the percentiles
  ansible.builtin.debug:
    msg: "P50 {{ probe.latency_ms.p50 }} ms, P95 {{ probe.latency_ms.p95 }} ms, P99 {{ probe.latency_ms.p99 }} ms"
'''

RETURN = r'''
latency_ms:
  description: End-to-end latency of the successful requests in milliseconds (all V(null) when none succeeded).
  returned: always
  type: dict
  contains:
    mean: {description: Arithmetic mean., type: float}
    min: {description: Fastest request., type: float}
    p50: {description: Median., type: float}
    p90: {description: 90th percentile., type: float}
    p95: {description: 95th percentile., type: float}
    p99: {description: 99th percentile., type: float}
    max: {description: Slowest request., type: float}
    stdev: {description: Population standard deviation., type: float}
  sample: {mean: 41.2, min: 22.0, p50: 38.1, p90: 60.3, p95: 71.9, p99: 96.4, max: 120.7, stdev: 14.8}
requests:
  description: Number of measured requests sent (warm-up excluded).
  returned: always
  type: int
  sample: 100
succeeded:
  description: Number of measured requests that succeeded.
  returned: always
  type: int
  sample: 100
errors:
  description: Number of measured requests that failed.
  returned: always
  type: int
  sample: 0
error_kinds:
  description: Failed requests per kind (C(http_<status>), C(timeout), C(connection_refused), C(connection_reset), ...).
  returned: always
  type: dict
  sample: {http_503: 2}
error_rate:
  description: errors / requests.
  returned: always
  type: float
  sample: 0.0
throughput_rps:
  description: Successful requests per second over the measured phase.
  returned: always
  type: float
  sample: 23.4
duration_s:
  description: Wall time of the measured phase in seconds.
  returned: always
  type: float
  sample: 4.27
concurrency:
  description: Concurrency used.
  returned: always
  type: int
  sample: 4
percentile_method:
  description: The percentile definition used.
  returned: always
  type: str
  sample: linear
gate:
  description: The limits checked and why they failed (empty list = passed).
  returned: always
  type: dict
  sample: {max_p95_ms: 1500, max_p99_ms: null, max_error_rate: 0.0, failures: []}
samples:
  description: Every measured request in completion order (start offset in s, latency in ms, ok, error kind).
  returned: when O(return_samples=true)
  type: list
  elements: dict
  sample: [{t: 0.0012, ms: 35.2, ok: true, error: null}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import latency


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            method=dict(type='str', default='POST', choices=['POST', 'GET']),
            payload=dict(type='dict'),
            model=dict(type='str'),
            headers=dict(type='dict', default={}, no_log=False),
            requests=dict(type='int', default=100),
            concurrency=dict(type='int', default=4),
            duration_s=dict(type='float'),
            warmup=dict(type='int', default=2),
            timeout=dict(type='float', default=30),
            expect_status=dict(type='list', elements='int', default=[200]),
            validate_certs=dict(type='bool', default=True),
            use_proxy=dict(type='bool', default=False),
            percentile_method=dict(type='str', default='linear', choices=list(latency.PERCENTILE_METHODS)),
            max_p95_ms=dict(type='float'),
            max_p99_ms=dict(type='float'),
            max_error_rate=dict(type='float', default=0.0),
            return_samples=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problems = []
    if not p['url'].startswith(('http://', 'https://')):
        problems.append('url must start with http:// or https://, got %r' % p['url'])
    if p['concurrency'] < 1:
        problems.append('concurrency must be >= 1, got %d' % p['concurrency'])
    if p['duration_s'] is None and p['requests'] < 1:
        problems.append('requests must be >= 1, got %d' % p['requests'])
    if p['duration_s'] is not None and p['duration_s'] <= 0:
        problems.append('duration_s must be > 0, got %s' % p['duration_s'])
    if p['warmup'] < 0 or p['timeout'] <= 0:
        problems.append('warmup must be >= 0 and timeout > 0')
    if not 0 <= p['max_error_rate'] <= 1:
        problems.append('max_error_rate is a fraction within 0..1, got %s' % p['max_error_rate'])
    if problems:
        module.fail_json(msg='; '.join(problems))

    payload = p['payload']
    if p['method'] == 'POST' and payload is None:
        payload = dict(latency.DEFAULT_PAYLOAD)
        if p['model']:
            payload['model'] = p['model']
    headers = dict((str(k), str(v)) for k, v in (p['headers'] or {}).items())
    send = latency.make_sender(p['url'], method=p['method'], payload=payload, headers=headers,
                               timeout=p['timeout'], expect_status=p['expect_status'],
                               use_proxy=p['use_proxy'], validate_certs=p['validate_certs'])
    run = latency.run_load(send, requests=p['requests'], concurrency=p['concurrency'], warmup=p['warmup'],
                           duration_s=p['duration_s'])
    result = latency.result_from_samples(run['samples'], run['wall_s'], p['concurrency'], p['percentile_method'])
    failures = latency.gate_failures(result, p['max_p95_ms'], p['max_p99_ms'], p['max_error_rate'])
    result['gate'] = {'max_p95_ms': p['max_p95_ms'], 'max_p99_ms': p['max_p99_ms'],
                      'max_error_rate': p['max_error_rate'], 'failures': failures}
    result['url'] = p['url']
    if p['return_samples']:
        result['samples'] = run['samples']
    if failures:
        module.fail_json(msg='latency probe of %s failed: %s' % (p['url'], '; '.join(failures)), changed=False,
                         **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
