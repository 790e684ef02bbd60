# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Draw the validate role's per-host report as a PNG: latency percentiles (P50/P95/P99, mean) per step, the
min-max of the repetitions as error bars, and the regressing step marked. Runs on the controller.

    plot_report.py REPORT.json OUT.png      exit 0 = written, 3 = matplotlib is not installed, 2 = bad input
"""
import json
import sys


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write('matplotlib is not installed for %s (pip install matplotlib)' % sys.executable)
        return 3
    with open(argv[1]) as f:
        rep = json.load(f)
    steps = rep.get('steps') or []
    if not steps:
        sys.stderr.write('report has no steps')
        return 2
    names = [s['step'] for s in steps]
    x = list(range(len(steps)))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(steps) + 2), 4.5), dpi=110)
    styles = (('p50', 'P50', 'o-'), ('p95', 'P95', 's-'), ('p99', 'P99', '^-'), ('mean', 'mean', 'x--'))
    for key, label, style in styles:
        ys = [(s.get('latency') or {}).get('latency_ms', {}).get(key) for s in steps]
        if all(y is None for y in ys):
            continue
        rng = [(s.get('latency') or {}).get('range_ms', {}).get(key) for s in steps]
        lo = [(y - r[0]) if (y is not None and r) else 0 for y, r in zip(ys, rng)]
        hi = [(r[1] - y) if (y is not None and r) else 0 for y, r in zip(ys, rng)]
        ys_plot = [float('nan') if y is None else y for y in ys]
        if key == 'mean':
            ax.plot(x, ys_plot, style, label=label, alpha=0.7)
        else:
            ax.errorbar(x, ys_plot, yerr=[lo, hi], fmt=style, capsize=3, label=label)
    for i, s in enumerate(steps):
        if s.get('verdict') == 'REGRESSION':
            ax.axvspan(i - 0.4, i + 0.4, color='red', alpha=0.12)
            ax.annotate('regression', (i, ax.get_ylim()[1]), ha='center', va='top', color='red', fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel('latency (ms), median of %s runs; bars = min-max' % rep.get('repeat', '?'))
    ax.set_xlabel('step (roles applied cumulatively, left to right)')
    title = '%s: %s, concurrency %s, %s requests/run' % (
        rep.get('host', '?'), rep.get('load_tool', ''), rep.get('concurrency', '?'), rep.get('requests', '?'))
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(True, axis='y', alpha=0.3)
    ax.legend(loc='best', fontsize=8)
    fig.tight_layout()
    fig.savefig(argv[2])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
