# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Persistence backends: files whose lines the collection manages, written atomically, with diffs.

- sysctl.d:   ``/etc/sysctl.d/90-medai-llmhost.conf``          ``vm.swappiness = 10``
- tmpfiles.d: ``/etc/tmpfiles.d/medai-llmhost.conf``           ``w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise``
- udev:       ``/etc/udev/rules.d/60-medai-llmhost-*.rules``    one rule per line, keyed by its match part
- cmdline:    ``/etc/default/grub.d/90-medai-llmhost.cfg`` + update-grub (Debian/Ubuntu) or grubby (RHEL family)
- systemd:    drop-ins ``/etc/systemd/system/<unit>.d/<name>.conf``

Every backend only touches the lines it manages: what the site or other tools wrote stays.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils.state import atomic_write

HEADER = '# Managed by Ansible (medai.llmhost): lines below are owned by the collection; edit the inventory instead.\n'

SYSCTL_FILE = '/etc/sysctl.d/90-medai-llmhost.conf'
TMPFILES_FILE = '/etc/tmpfiles.d/medai-llmhost.conf'
GRUB_DROPIN = '/etc/default/grub.d/90-medai-llmhost.cfg'
SYSTEMD_DIR = '/etc/systemd/system'


# ---------------------------------------------------------------- syntax checks (before anything is written)
# Every line builder below checks what it puts into a file against that file's syntax, so that no value,
# name or glob given to a module can end a line, open a quote or add an assignment (udev RUN+=, a shell
# command in the grub drop-in). They raise KnobError(kind='invalid') and are called while a module
# validates, before its first write (check mode included).

# sysctl.d key: a sysctl name (dots or slashes), no glob, no leading '-' (that means "ignore errors")
_SYSCTL_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.:@+/-]*\Z')
# tmpfiles.d `w` path: absolute, no white space, quote, backslash, specifier (%) or glob
_TMPFILES_PATH_RE = re.compile(r'^/[A-Za-z0-9_.:@+,=/-]*\Z')
# udev KERNEL=="..." match: a kernel block-device name or a glob on such names (names have at most 32 chars)
UDEV_KERNEL_GLOB_RE = re.compile(r'^[A-Za-z0-9_.:*?!\[\]-]{1,128}\Z')
# udev ATTR{...}="..." value and ATTR{...} attribute names
_UDEV_VALUE_RE = re.compile(r'^[A-Za-z0-9_.:+-]*\Z')
_UDEV_ATTR_RE = re.compile(r'^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*\Z')
# kernel command-line parameter in the (shell-sourced) grub drop-in
_CMDLINE_KEY_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z')
_CMDLINE_VALUE_RE = re.compile(r'^[A-Za-z0-9_.,:+=/@-]*\Z')
# systemd unit and drop-in names (systemd.unit(5): ASCII letters, digits, ':', '-', '_', '.', '\\', '@')
_UNIT_NAME_RE = re.compile(r'^[A-Za-z0-9:_.\\@-]+\Z')


def _refuse(what, value, why):
    raise knob.KnobError('cannot persist %s %s: %s' % (what, knob.show(value), why), kind='invalid')


def check_value(what, value, allow_empty=False):
    """A value for a config line: one line, no control character (a newline is refused, not flattened).
    Returns it as text with white space at both ends stripped."""
    text = value if isinstance(value, str) else str(value)
    if knob.has_control_char(text.strip()):
        _refuse(what, value, 'it contains a newline or another control character')
    text = text.strip()
    if not text and not allow_empty:
        _refuse(what, value, 'it is empty')
    return text


def check_udev_glob(what, glob):
    """A KERNEL=="..." match: only what a kernel block-device name and a glob on it can be."""
    if not isinstance(glob, str) or not UDEV_KERNEL_GLOB_RE.match(glob):
        _refuse(what, glob, 'a udev KERNEL match may only hold letters, digits and _ . : - * ? ! [ ] (1 to 128)')
    return glob


def read_text(path):
    hp = knob.host_path(path)
    if not os.path.exists(hp):
        return None
    with open(hp) as f:
        return f.read()


def _file_mode(path):
    try:
        return stat.S_IMODE(os.stat(knob.host_path(path)).st_mode)
    except OSError:
        return None


def write_text(path, text, check_mode=False, mode=0o644):
    """Write a whole file if its content differs, or only set its mode if that alone differs.
    Returns (changed, diff)."""
    old = read_text(path)
    if old == text:
        old_mode = _file_mode(path)
        if old_mode == mode:
            return False, None
        if not check_mode:
            os.chmod(knob.host_path(path), mode)
        return True, {'before_header': '%s (mode %04o)' % (path, old_mode or 0),
                      'after_header': '%s (mode %04o)' % (path, mode), 'before': '', 'after': ''}
    diff = {'before_header': path, 'after_header': path, 'before': old or '', 'after': text}
    if not check_mode:
        atomic_write(knob.host_path(path), text, mode)
    return True, diff


def remove_file(path, check_mode=False):
    old = read_text(path)
    if old is None:
        return False, None
    if not check_mode:
        os.unlink(knob.host_path(path))
    return True, {'before_header': path, 'after_header': '%s (absent)' % path, 'before': old, 'after': ''}


class ManagedLines(object):
    """A config file of which the collection owns the lines selected by `key_fn` (line -> key or None)."""

    def __init__(self, path, key_fn, header=HEADER, mode=0o644):
        self.path = path
        self.key_fn = key_fn
        self.header = header
        self.mode = mode
        self.original = read_text(path)
        self.lines = (self.original or '').splitlines()

    def get(self, key):
        for line in self.lines:
            if self.key_fn(line) == key:
                return line
        return None

    def keys(self):
        return [k for k in (self.key_fn(line) for line in self.lines) if k is not None]

    def set(self, key, line):
        for i, old in enumerate(self.lines):
            if self.key_fn(old) == key:
                self.lines[i] = line
                # drop later duplicates of the same key
                self.lines = self.lines[:i + 1] + [x for x in self.lines[i + 1:] if self.key_fn(x) != key]
                return
        self.lines.append(line)

    def remove(self, key):
        self.lines = [x for x in self.lines if self.key_fn(x) != key]

    def render(self):
        body = [x for x in self.lines if x.strip() and x + '\n' != self.header]
        if not any(self.key_fn(x) is not None for x in body):
            # nothing of ours left: keep foreign lines only (or nothing)
            foreign = [x for x in body if not x.startswith('# Managed by Ansible (medai.llmhost)')]
            return ('\n'.join(foreign) + '\n') if foreign else None
        return self.header + '\n'.join(body) + '\n'

    @property
    def changed(self):
        return self.render() != self.original

    def diff(self):
        return {'before_header': self.path, 'after_header': self.path,
                'before': self.original or '', 'after': self.render() or ''}

    def commit(self, check_mode=False):
        """Write (or remove when empty) the file. Returns (changed, diff)."""
        if not self.changed:
            return False, None
        diff = self.diff()
        if not check_mode:
            text = self.render()
            if text is None:
                if os.path.exists(knob.host_path(self.path)):
                    os.unlink(knob.host_path(self.path))
            else:
                atomic_write(knob.host_path(self.path), text, self.mode)
        return True, diff


# ---------------------------------------------------------------- sysctl.d

_SYSCTL_RE = re.compile(r'^\s*-?([A-Za-z0-9_./-]+)\s*=\s*(.*?)\s*$')


def _sysctl_key(line):
    if line.lstrip().startswith(('#', ';')):
        return None
    m = _SYSCTL_RE.match(line)
    return m.group(1).replace('/', '.') if m else None


def sysctl_file(path=SYSCTL_FILE):
    return ManagedLines(path, _sysctl_key)


def sysctl_line(name, value):
    """A sysctl.d line; the name must be a plain sysctl name, the value one line."""
    if not isinstance(name, str) or not _SYSCTL_NAME_RE.match(name):
        _refuse('sysctl name', name, 'not a sysctl name (letters, digits and _ . : @ + / -, no glob)')
    return '%s = %s' % (name, knob.normalize(check_value('the value of ' + name, value)))


# ---------------------------------------------------------------- tmpfiles.d

def _tmpfiles_key(line):
    parts = line.split()
    if len(parts) >= 2 and parts[0] in ('w', 'w+', 'w-'):
        return parts[1]
    return None


def tmpfiles_file(path=TMPFILES_FILE):
    return ManagedLines(path, _tmpfiles_key)


def tmpfiles_line(knob_path, value):
    """A tmpfiles.d `w` line (systemd-tmpfiles-setup.service applies it at boot). The path must not
    break the line's fields nor be a glob or hold specifiers; the argument (the value) must be one line
    without % (specifiers) or backslash (C escapes), which systemd-tmpfiles would expand."""
    if not isinstance(knob_path, str) or not _TMPFILES_PATH_RE.match(knob_path):
        _refuse('tmpfiles.d path', knob_path, 'it must be absolute, without white space, quote, backslash, % or glob')
    text = check_value('the value of ' + knob_path, value)
    if '%' in text or '\\' in text:
        _refuse('the value of ' + knob_path, value, 'tmpfiles.d would expand % and backslash in it')
    return 'w %s - - - - %s' % (knob_path, knob.normalize(text))


# ---------------------------------------------------------------- udev

def _udev_key(line):
    s = line.strip()
    if not s or s.startswith('#'):
        return None
    # the match part: everything before the first assignment (ATTR{..}= / RUN+= / ...)
    parts = [p.strip() for p in s.split(',')]
    match = [p for p in parts if '==' in p]
    return ', '.join(match) if match else None


def udev_file(path):
    return ManagedLines(path, _udev_key)


def udev_rule(kernel, match_attrs=(), assign_attrs=()):
    """A block-device udev rule: `ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="<kernel>"`, then
    `ATTR{a}=="v"` for each (a, v) of match_attrs and `ATTR{a}="v"` for each of assign_attrs. Returns
    (match part, whole line); the match part is the rule's key in udev_file(). Everything is checked:
    no quote, comma or other assignment (RUN+=, PROGRAM=) can reach the rule."""
    match = 'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="%s"' % check_udev_glob('udev KERNEL match', kernel)
    for attr, value in match_attrs:
        match += ', %s=="%s"' % _udev_attr(attr, value)
    assigns = ['%s="%s"' % _udev_attr(attr, value) for attr, value in assign_attrs]
    return match, ', '.join([match] + assigns)


def _udev_attr(attr, value):
    if not _UDEV_ATTR_RE.match(attr):
        _refuse('udev attribute', attr, 'not a sysfs attribute name')
    text = check_value('udev ATTR{%s} value' % attr, value)
    if not _UDEV_VALUE_RE.match(text):
        _refuse('udev ATTR{%s} value' % attr, value, 'only letters, digits and _ . : + - are allowed')
    return 'ATTR{%s}' % attr, text


# ---------------------------------------------------------------- kernel command line

# Only parameters the kernel really has (Documentation/admin-guide/kernel-parameters.txt): THP's
# `defrag` has no boot parameter (persist it with tmpfiles.d instead).
_CMDLINE_EQUIV = {
    '/sys/kernel/mm/transparent_hugepage/enabled': 'transparent_hugepage',
}


def cmdline_param_for(path):
    """Kernel command-line parameter that sets a sysfs knob at boot, or None.

    /sys/module/<mod>/parameters/<p> -> <mod>.<p> ; THP enabled -> transparent_hugepage.
    """
    if path in _CMDLINE_EQUIV:
        return _CMDLINE_EQUIV[path]
    m = re.match(r'^/sys/module/([^/]+)/parameters/([^/]+)$', path)
    if m:
        return '%s.%s' % (m.group(1), m.group(2))
    return None


def parse_cmdline(text):
    """'a=1 b quiet' -> {'a': '1', 'b': None, 'quiet': None} (order kept)."""
    out = {}
    for tok in (text or '').split():
        k, sep, v = tok.partition('=')
        out[k] = v if sep else None
    return out


def format_cmdline(params):
    return ' '.join(k if v is None else '%s=%s' % (k, v) for k, v in params.items())


def running_cmdline():
    return read_text('/proc/cmdline') or ''


_GRUB_LINE_RE = re.compile(r'^GRUB_CMDLINE_LINUX_DEFAULT="\$GRUB_CMDLINE_LINUX_DEFAULT ?(.*)"\s*$')


def read_grub_dropin(path=GRUB_DROPIN):
    text = read_text(path)
    for line in (text or '').splitlines():
        m = _GRUB_LINE_RE.match(line)
        if m:
            return parse_cmdline(m.group(1))
    return {}


def check_cmdline_params(params):
    """Kernel parameters for the grub drop-in (a file grub-mkconfig sources as shell): plain names and
    values only, no white space, quote, $, backquote, backslash or ; & | < >."""
    for key, value in params.items():
        if not isinstance(key, str) or not _CMDLINE_KEY_RE.match(key):
            _refuse('kernel parameter', key, 'not a kernel parameter name')
        if value is not None and not _CMDLINE_VALUE_RE.match(str(value)):
            _refuse('kernel parameter %s=' % key, value, 'a command-line value may only hold letters, digits and '
                    '_ . , : + = / @ - (no white space, quote, $, backslash)')


def render_grub_dropin(params):
    if not params:
        return None
    check_cmdline_params(params)
    return HEADER + 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT %s"\n' % format_cmdline(params)


def bootloader_tool(module):
    """'update-grub' (Debian/Ubuntu), 'grubby' (RHEL family) or None."""
    for tool in ('update-grub', 'grub-mkconfig', 'grubby'):
        if module.get_bin_path(tool):
            return tool
    return None


def set_cmdline(module, set_params=None, remove_keys=(), check_mode=False, path=GRUB_DROPIN):
    """Merge kernel parameters into the collection's grub drop-in; regenerate the boot config.

    Returns dict(changed, diff, reboot_required, tool).
    """
    set_params = dict(set_params or {})
    check_cmdline_params(set_params)
    current = read_grub_dropin(path)
    desired = dict(current)
    removed = {}
    for k in remove_keys:
        if k in desired:
            removed[k] = desired.pop(k)
    desired.update(set_params)
    running = parse_cmdline(running_cmdline())
    reboot_required = any(running.get(k, object()) != v for k, v in set_params.items()) or \
        any(k in running for k in removed)
    result = {'changed': False, 'diff': None, 'reboot_required': reboot_required, 'tool': None}
    if desired == current:
        return result
    text = render_grub_dropin(desired)
    if text is None:
        changed, diff = remove_file(path, check_mode)
    else:
        changed, diff = write_text(path, text, check_mode)
    result.update(changed=changed, diff=diff)
    tool = bootloader_tool(module)
    result['tool'] = tool
    if changed and not check_mode:
        if tool is None:
            module.warn('no update-grub/grub-mkconfig/grubby found: %s was written but the boot configuration '
                        'was not regenerated; do it by hand before rebooting' % path)
        elif tool == 'grubby':
            args = format_cmdline(set_params)
            cmd = [module.get_bin_path('grubby'), '--update-kernel=ALL']
            if args:
                cmd.append('--args=%s' % args)
            if removed:
                cmd.append('--remove-args=%s' % ' '.join(removed))
            rc, out, err = module.run_command(cmd)
            if rc != 0:
                raise knob.KnobError('grubby failed (rc=%d): %s' % (rc, (err or out).strip()))
        else:
            cmd = [module.get_bin_path(tool)]
            if tool == 'grub-mkconfig':
                cmd += ['-o', '/boot/grub/grub.cfg']
            rc, out, err = module.run_command(cmd)
            if rc != 0:
                raise knob.KnobError('%s failed (rc=%d): %s' % (tool, rc, (err or out).strip().splitlines()[-1:]))
    return result


# ---------------------------------------------------------------- systemd drop-ins

def dropin_path(unit, name):
    for what, text in (('unit', unit), ('drop-in', name)):
        if not isinstance(text, str) or not _UNIT_NAME_RE.match(text) or text in ('.', '..'):
            raise knob.KnobError('invalid %s name %s: systemd names hold only letters, digits and : _ . \\ @ -'
                                 % (what, knob.show(text)), kind='invalid')
    return '%s/%s.d/%s.conf' % (SYSTEMD_DIR, unit, name)


def _remove_empty_dir(path):
    """Remove a drop-in directory (`<unit>.d`) left empty by the removal of the last drop-in in it."""
    hp = knob.host_path(path)
    try:
        if os.path.isdir(hp) and not os.listdir(hp):
            os.rmdir(hp)
    except OSError:
        pass  # somebody else's file appeared meanwhile: keep the directory


def set_dropin(unit, name, content, check_mode=False):
    """Write (content str) or remove (content None) a systemd drop-in. Returns (changed, diff)."""
    path = dropin_path(unit, name)
    if content is None:
        changed, diff = remove_file(path, check_mode)
        if changed and not check_mode:
            _remove_empty_dir(os.path.dirname(path))
        return changed, diff
    if not content.startswith('#'):
        content = HEADER + content
    return write_text(path, content, check_mode)
