# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render folded stacks ("a;b;c COUNT" lines) as a flame graph SVG (roots at the bottom, width = samples).

    flamegraph.py FOLDED.txt OUT.svg [TITLE]

A small stdlib renderer in the spirit of Brendan Gregg's flamegraph.pl (which is not needed on the controller).
"""
import sys
from xml.sax.saxutils import escape

WIDTH = 1200
ROW = 16
PAD = 10
FONT = 11


def build(folded_lines):
    root = {'n': 0, 'c': {}}
    for line in folded_lines:
        line = line.strip()
        if not line or ' ' not in line:
            continue
        stack, _sep, cnt = line.rpartition(' ')
        try:
            cnt = int(cnt)
        except ValueError:
            continue
        node = root
        node['n'] += cnt
        for fr in stack.split(';'):
            node = node['c'].setdefault(fr, {'n': 0, 'c': {}})
            node['n'] += cnt
    return root


def depth(node):
    return 1 + max([depth(c) for c in node['c'].values()] or [0])


def color(name):
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xffffff
    return 'rgb(%d,%d,%d)' % (205 + h % 50, 80 + (h >> 8) % 120, (h >> 16) % 60)


def render(root, title='Flame graph'):
    total = root['n']
    if not total:
        raise ValueError('no samples')
    levels = depth(root) - 1
    height = levels * ROW + 3 * PAD + 20
    scale = (WIDTH - 2 * PAD) / float(total)
    out = ['<?xml version="1.0" standalone="no"?>',
           '<svg version="1.1" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg" '
           'font-family="Verdana" font-size="%d">' % (WIDTH, height, FONT),
           '<rect x="0" y="0" width="100%%" height="100%%" fill="#f8f8f0"/>',
           '<text x="%d" y="%d" font-size="14">%s (%d samples)</text>' % (PAD, PAD + 12, escape(title), total)]

    def walk(node, name, x, lvl):
        w = node['n'] * scale
        if lvl >= 0:
            y = height - PAD - (lvl + 1) * ROW
            label = '%s (%d samples, %.1f%%)' % (name, node['n'], 100.0 * node['n'] / total)
            out.append('<g><title>%s</title><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="2"/>'
                       % (escape(label), x, y, max(w - 0.5, 0.1), ROW - 1, color(name)))
            chars = int(w / (FONT * 0.6))
            if chars >= 3:
                text = name if len(name) <= chars else name[:max(chars - 2, 1)] + '..'
                out.append('<text x="%.1f" y="%d">%s</text>' % (x + 3, y + ROW - 4, escape(text)))
            out.append('</g>')
        cx = x
        for cname in sorted(node['c']):
            child = node['c'][cname]
            walk(child, cname, cx, lvl + 1)
            cx += child['n'] * scale

    walk(root, 'all', PAD, -1)
    out.append('</svg>')
    return '\n'.join(out) + '\n'


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        root = build(f)
    if not root['n']:
        sys.stderr.write('no samples in %s' % argv[1])
        return 3
    with open(argv[2], 'w') as f:
        f.write(render(root, argv[3] if len(argv) == 4 else 'Flame graph'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
