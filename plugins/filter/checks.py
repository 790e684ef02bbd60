# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input checks of the roles, run before a role's first changing task: each returns a list of problems, one
bounded line each ("<variable> '<value>': <reason>"); problems_line() turns them into the role's one failure line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: checks
short_description: Input checks of the roles (one bounded line per problem)
version_added: 0.1.0
description:
  - C(failed_results) - what failed in registered results (a dict of what to result) that were allowed to fail, one line
    each, so a play that goes on can report every failure at its end.
  - C(problems_line) - a list of problems as ONE line of at most 300 characters (the first problems whole, then
    how many more), or V('') when the list is empty.
  - C(unit_name_problems) - a systemd unit or instance name (no C(/), no C(..), no control characters).
  - C(dir_problems) - an absolute, normalized directory that is not a system directory.
  - C(regex_problems) - regular expressions that do not compile (as M(medai.llmhost.chrt_priority) compiles them).
  - C(secret_flag_problems) - vLLM flags that carry secrets (C(--api-key), C(--hf-token), ...) in an argument list.
  - C(single_line_problems) - values (a list or a dict's values) with newlines or other control characters.
  - C(storage_problems), C(memory_problems), C(vllm_problems), C(profile_schedule_problems) - every input check
    of that role that needs no host facts (the host-dependent ones run the role's modules in check mode).
  - Values are shown quoted, control characters escaped and cut after 80 characters with their length;
    secrets are never shown.
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
- name: Refuse invalid settings before changing anything
  ansible.builtin.fail:
    msg: "{{ problems | medai.llmhost.problems_line('vllm') }}"
  vars:
    problems: "{{ vllm_instance | medai.llmhost.unit_name_problems('vllm_instance') }}"
  when: problems | length > 0
'''

RETURN = r'''
_value:
  description: A list of one-line problems (empty = fine), or for C(problems_line) one line.
  type: raw
'''

import os
import re

from ansible_collections.medai.llmhost.plugins.module_utils.knob import (
    MAX_MSG_CHARS, action_file_reason, has_control_char, is_octal_mode, one_line, show)

# Unit and instance names: what systemd, Docker (container names) and a file name all accept.
_UNIT_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.@:-]*\Z')
UNIT_NAME_MAX = 200
# Directories a role must never use as a cache, mount point or swap file's directory, nor re-own.
SYSTEM_DIRS = frozenset([
    '/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/root', '/run',
    '/sbin', '/snap', '/sys', '/tmp', '/usr', '/var',
    '/usr/bin', '/usr/sbin', '/usr/lib', '/usr/lib32', '/usr/lib64', '/usr/libexec', '/usr/include', '/usr/share',
    '/usr/src', '/usr/local', '/usr/local/bin', '/usr/local/sbin', '/usr/local/lib', '/usr/local/share',
    '/usr/local/etc', '/usr/local/include',
    '/var/lib', '/var/log', '/var/cache', '/var/tmp', '/var/spool', '/var/run', '/var/lock', '/var/mail',
    '/var/backups', '/var/local', '/var/opt'])
# Trees whose subdirectories are not for data either: kernel and runtime filesystems, configuration, boot, temp.
SYSTEM_TREES = ('/proc', '/sys', '/dev', '/run', '/boot', '/etc', '/tmp', '/var/tmp', '/var/run', '/var/lock')
# Shared top-level directories: fine as a mount point, not to be owned by one service.
SHARED_DIRS = frozenset(['/srv', '/mnt', '/opt', '/media', '/data'])

# vLLM flags that carry a secret on the command line (visible in ps), and the role variable to use instead.
SECRET_FLAGS = {'--api-key': 'vllm_api_key', '--hf-token': 'vllm_hf_token'}
_SECRET_WORD_RE = re.compile(r'(^|-)(api-key|token|secret|password|passwd|credentials?)(-|$)')
NOT_SECRET_FLAGS = frozenset(['--long-prefill-token-threshold', '--return-tokens-as-token-ids'])

_HHMM_RE = re.compile(r'^([01][0-9]|2[0-3]):[0-5][0-9]\Z')
_SYSCTL_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+\Z')
_SUBDIR_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*\Z')
_DEVICE_GLOB_RE = re.compile(r'^[A-Za-z0-9_*?\[\]!-]+\Z')
_PROFILE_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z')
_SCHEDULER_RE = re.compile(r'^[a-z][a-z0-9-]*\Z')
PROFILE_KEYS = ('knobs', 'sched', 'block')
PROFILE_SCHED_NAMES = ('min_slice_ns', 'latency_ns', 'wakeup_granularity_ns', 'migration_cost_ns')
PROFILE_BLOCK_ATTRS = ('scheduler', 'nr_requests', 'read_ahead_kb')

STORAGE_DEVICE_KEYS = ('device', 'pattern', 'rotational', 'scheduler', 'nr_requests', 'read_ahead_kb',
                       'translate_legacy', 'load_module')
STORAGE_VOLUME_KEYS = ('device', 'mountpoint', 'mkfs_opts', 'mount_opts', 'force_format', 'owner', 'group', 'mode')


def problem(var, value, reason):
    """One problem: the variable, its value (quoted, escaped, cut) and why."""
    return one_line('%s %s: %s' % (var, show(value), reason))


def problems_line(problems, prefix=''):
    """The problems as the role's ONE failure line: as many whole problems as fit, then '(+N more)'."""
    problems = [p for p in (problems or []) if p]
    if not problems:
        return ''
    head = '%s: ' % prefix if prefix else ''
    line = head + problems[0]
    shown = 1
    for p in problems[1:]:
        more = ' (+%d more)' % (len(problems) - shown - 1) if shown + 1 < len(problems) else ''
        if len(line) + 2 + len(p) + len(more) > MAX_MSG_CHARS:
            break
        line += '; ' + p
        shown += 1
    if shown < len(problems):
        line += ' (+%d more)' % (len(problems) - shown)
    return one_line(line)


def _is_int(value, low=None, high=None):
    if isinstance(value, bool):
        return False
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return False
    return (low is None or n >= low) and (high is None or n <= high)


def single_line_problems(values, var):
    """Values (a list, or a dict's values keyed in the message) holding newlines or control characters."""
    items = values.items() if isinstance(values, dict) else enumerate(values or [])
    return [problem('%s[%s]' % (var, key), value, 'must be one line without control characters')
            for key, value in items if has_control_char(str(value))]


def unit_name_problems(name, var):
    """A systemd unit/instance name: letters, digits and '_.@:-', no '/', no '..', at most UNIT_NAME_MAX chars."""
    text = '' if name is None else str(name)
    if not _UNIT_NAME_RE.match(text) or '..' in text or len(text) > UNIT_NAME_MAX:
        return [problem(var, text, "must be a unit name: letters, digits and '_.@:-', starting with a letter or digit, "
                                   "no '/' or '..', at most %d characters" % UNIT_NAME_MAX)]
    return []


def dir_problems(path, var, owned=True, optional=False, config=False):
    """An absolute, normalized directory that is not a system directory. owned=True (the role re-owns it) also
    refuses shared top-level directories such as /srv and /opt; optional=True accepts '' (none); config=True
    accepts a subdirectory of /etc (a configuration directory such as /etc/vllm)."""
    text = '' if path is None else str(path)
    if optional and text == '':
        return []
    if has_control_char(text) or not text.startswith('/') or ':' in text or re.search(r'\s', text):
        return [problem(var, text, 'must be an absolute path without spaces, colons or control characters')]
    if os.path.normpath(text) != text or text.startswith('//'):
        return [problem(var, text, "must be normalized (no '..', '.', '//' or trailing '/')")]
    trees = [tree for tree in SYSTEM_TREES if not (config and tree == '/etc')]
    if text in SYSTEM_DIRS or text.startswith('/lib') and '/' not in text[1:] or \
            any(text.startswith(tree + '/') for tree in trees):
        return [problem(var, text, 'is or is inside a system directory; use a path of its own such as /var/lib/vllm or '
                                   '/data/models')]
    if owned and text in SHARED_DIRS:
        return [problem(var, text, 'is a shared top-level directory; use a subdirectory such as %s/models' % text)]
    return []


def secret_flag_problems(args, var, hint_var=None):
    """Flags in an argument list that carry secrets (they would be visible in ps); the value is never shown."""
    out = []
    for arg in args or []:
        flag = str(arg).split('=', 1)[0]
        if not flag.startswith('--') or flag in NOT_SECRET_FLAGS:
            continue
        if flag in SECRET_FLAGS or _SECRET_WORD_RE.search(flag[2:]):
            use = SECRET_FLAGS.get(flag) or hint_var or 'the environment file'
            out.append(one_line("%s contains %s: a secret on the command line is visible to every user in ps; set %s "
                                "instead (written to the 0600 environment file)" % (var, show(flag), use)))
    return out


def _mode_problems(mode, var):
    if mode is None or is_octal_mode(mode):
        return []
    return [problem(var, mode, 'must be a quoted octal string such as "0755"')]


def _unknown_keys(entry, allowed, var):
    return [problem(var, key, 'unknown key (known: %s)' % ', '.join(allowed)) for key in entry if key not in allowed]


def storage_problems(v):
    """Checks of the storage role's inputs (dict of its variables) that need no host facts."""
    out = []
    for i, dev in enumerate(v.get('storage_devices') or []):
        var = 'storage_devices[%d]' % i
        if not isinstance(dev, dict):
            out.append(problem(var, dev, 'must be a dict with device or pattern'))
            continue
        out += _unknown_keys(dev, STORAGE_DEVICE_KEYS, var)
        if ('device' in dev) == ('pattern' in dev):
            out.append(problem(var, dev.get('device', dev.get('pattern', '')), 'give device or pattern (exactly one)'))
        names = dev.get('device') if isinstance(dev.get('device'), list) else [dev.get('device')] if 'device' in dev else []
        for name in names:
            if not re.match(r'^(/dev/)?[A-Za-z0-9][A-Za-z0-9_.:/+-]*\Z', str(name)) or '..' in str(name):
                out.append(problem(var + '.device', name, 'must be a kernel name or a /dev/... path'))
        if 'pattern' in dev and not _DEVICE_GLOB_RE.match(str(dev['pattern'])):
            out.append(problem(var + '.pattern', dev['pattern'], "must be a glob over kernel names (letters, digits, '*?[]!_-')"))
        if dev.get('scheduler') is not None and not _SCHEDULER_RE.match(str(dev['scheduler'])):
            out.append(problem(var + '.scheduler', dev['scheduler'], 'must be a scheduler name such as mq-deadline or none'))
        for attr, high in (('nr_requests', 1 << 20), ('read_ahead_kb', 1 << 30)):
            if dev.get(attr) is not None and not _is_int(dev[attr], 1, high):
                out.append(problem('%s.%s' % (var, attr), dev[attr], 'must be an integer 1-%d' % high))
    mountpoints = []
    for i, vol in enumerate(v.get('storage_xfs_volumes') or []):
        var = 'storage_xfs_volumes[%d]' % i
        if not isinstance(vol, dict):
            out.append(problem(var, vol, 'must be a dict with device and mountpoint'))
            continue
        out += _unknown_keys(vol, STORAGE_VOLUME_KEYS, var)
        if not re.match(r'^/dev/[^\s:]+\Z', str(vol.get('device', ''))) or '..' in str(vol.get('device', '')):
            out.append(problem(var + '.device', vol.get('device', ''), 'must be a /dev/... path (e.g. /dev/disk/by-id/...)'))
        if 'mountpoint' not in vol:
            out.append(problem(var, vol.get('device', ''), 'needs a mountpoint'))
        else:
            out += dir_problems(vol['mountpoint'], var + '.mountpoint', owned=False)
            if vol['mountpoint'] in mountpoints:
                out.append(problem(var + '.mountpoint', vol['mountpoint'], 'is given twice'))
            mountpoints.append(vol['mountpoint'])
        for opt in ('mkfs_opts', 'mount_opts', 'owner', 'group'):
            if has_control_char(str(vol.get(opt, ''))):
                out.append(problem('%s.%s' % (var, opt), vol[opt], 'must be one line without control characters'))
        if re.search(r'[\s#]', str(vol.get('mount_opts', ''))):
            out.append(problem(var + '.mount_opts', vol['mount_opts'], "must be one comma-separated word (an fstab field)"))
        out += _mode_problems(vol.get('mode'), var + '.mode')
    out += _mode_problems(v.get('storage_model_cache_mode'), 'storage_model_cache_mode')
    out += dir_problems(v.get('storage_model_cache_dir'), 'storage_model_cache_dir', optional=True)
    for sub in v.get('storage_model_cache_subdirs') or []:
        if not _SUBDIR_RE.match(str(sub)) or '..' in str(sub).split('/'):
            out.append(problem('storage_model_cache_subdirs', sub, "must be a relative path without '..' or spaces"))
    for var in ('storage_model_cache_owner', 'storage_model_cache_group'):
        if not re.match(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z', str(v.get(var, 'root'))):
            out.append(problem(var, v.get(var), 'must be a user or group name'))
    return out


def _choice_problems(v, var, choices):
    value = v.get(var)
    if value is None or value in choices:
        return []
    return [problem(var, value, 'must be %s (or null)' % ', '.join(choices))]


def _range_problems(v, var, low, high, why=''):
    value = v.get(var)
    if value is None or _is_int(value, low, high):
        return []
    bounds = '%d-%d' % (low, high) if high is not None else '>= %d' % low
    return [problem(var, value, 'must be an integer %s%s' % (bounds, why))]


def memory_problems(v):
    """Checks of the memory role's inputs (dict of its variables) that need no host facts."""
    out = _choice_problems(v, 'memory_thp_enabled', ('always', 'madvise', 'never'))
    out += _choice_problems(v, 'memory_thp_defrag', ('always', 'defer', 'defer+madvise', 'madvise', 'never'))
    out += _choice_problems(v, 'memory_zswap_zpool', ('zbud', 'z3fold', 'zsmalloc'))
    compressor = v.get('memory_zswap_compressor')
    if compressor is not None and not re.match(r'^[a-z0-9][a-z0-9_-]{0,63}\Z', str(compressor)):
        out.append(problem('memory_zswap_compressor', compressor, 'must be a compression algorithm name such as lz4, zstd'))
    out += _range_problems(v, 'memory_zswap_max_pool_percent', 1, 100)
    out += _range_problems(v, 'memory_zswap_accept_threshold_percent', 0, 100)
    out += _range_problems(v, 'memory_watermark_scale_factor', 1, 3000, ' (units of 0.01 % of RAM)')
    out += _range_problems(v, 'memory_watermark_boost_factor', 0, None)
    out += _range_problems(v, 'memory_min_free_kbytes', 128, None, ' (too low a reserve hangs the kernel)')
    out += _range_problems(v, 'memory_swappiness', 0, 200)
    out += _range_problems(v, 'memory_swapfile_size_mb', 0, 1 << 24, ' (0 = no swap file)')
    out += _range_problems(v, 'memory_swapfile_priority', -1, 32767)
    out += dir_problems(v.get('memory_swapfile_path'), 'memory_swapfile_path', owned=False)
    found = str(v.get('swapfile_found') or 'absent')  # what the role's read-only probe found at the path
    if found in ('symlink', 'other'):
        out.append(problem('memory_swapfile_path', v.get('memory_swapfile_path'),
                           'exists and is not a regular file (%s); move it away or choose another path' % found))
    elif found != 'absent' and found != 'file swap':
        out.append(problem('memory_swapfile_path', v.get('memory_swapfile_path'),
                           'exists and holds no swap signature (found: %s); move it away or choose another path'
                           % (found[5:] or 'none')))
    for name, value in sorted((v.get('memory_sysctl_extra') or {}).items()):
        if not _SYSCTL_NAME_RE.match(str(name)):
            out.append(problem('memory_sysctl_extra', name, 'bad sysctl name (want dotted, e.g. vm.dirty_ratio)'))
    out += single_line_problems(v.get('memory_sysctl_extra') or {}, 'memory_sysctl_extra')
    return out


def regex_problems(patterns, var):
    """Regular expressions (Python syntax, as chrt_priority compiles them) that do not compile."""
    out = []
    for pattern in patterns or []:
        try:
            re.compile(str(pattern))
        except re.error as e:
            out.append(problem(var, pattern, 'not a regular expression: %s' % e))
    return out


def vllm_problems(v):
    """Checks of the vllm role's inputs (dict of its variables) that need no host facts."""
    out = unit_name_problems(v.get('vllm_instance'), 'vllm_instance')
    if v.get('vllm_slice'):
        out += unit_name_problems(v['vllm_slice'], 'vllm_slice')
        if not str(v['vllm_slice']).endswith('.slice'):
            out.append(problem('vllm_slice', v['vllm_slice'], 'must end in .slice'))
    out += dir_problems(v.get('vllm_cache_dir'), 'vllm_cache_dir')
    out += dir_problems(v.get('vllm_home'), 'vllm_home')
    out += dir_problems(v.get('vllm_env_dir'), 'vllm_env_dir', config=True)
    if not re.match(r'^[a-z_][a-z0-9_-]{0,31}\Z', str(v.get('vllm_user', ''))):
        out.append(problem('vllm_user', v.get('vllm_user'), 'must be a user name (lowercase letters, digits, _ and -)'))
    if 'vllm_port' in v and not _is_int(v['vllm_port'], 1, 65535):
        out.append(problem('vllm_port', v['vllm_port'], 'must be a TCP port, 1-65535'))
    out += secret_flag_problems(v.get('vllm_extra_args'), 'vllm_extra_args')
    out += single_line_problems(v.get('vllm_extra_args') or [], 'vllm_extra_args')
    out += single_line_problems({'vllm_model': v.get('vllm_model', ''),
                                 'vllm_served_model_name': v.get('vllm_served_model_name', '')}, 'vllm')
    extra = v.get('vllm_systemd_extra_settings') or {}
    out += [problem('vllm_systemd_extra_settings', key, 'must be a systemd setting name (letters and digits)')
            for key in extra if not re.match(r'^[A-Za-z][A-Za-z0-9]*\Z', str(key))]
    out += single_line_problems(extra, 'vllm_systemd_extra_settings')
    return out


def _profile_problems(name, profile):
    var = 'profile_schedule_profiles[%s]' % name
    if not isinstance(profile, dict):
        return [problem(var, profile, 'must be a dict with knobs, sched and/or block')]
    out = _unknown_keys(profile, PROFILE_KEYS, var)
    for path, value in sorted((profile.get('knobs') or {}).items()):
        path = str(path)
        if not (path.startswith('/sys/') or path.startswith('/proc/sys/')) or os.path.normpath(path) != path \
                or has_control_char(path) or re.search(r'[\s"\'\\]', path):
            out.append(problem(var + '.knobs', path, 'must be a normalized /sys/... or /proc/sys/... path'))
        elif action_file_reason(path):  # the same list sysfs_param refuses (module_utils/knob.py)
            out.append(problem(var + '.knobs', path, 'an action file, not a knob: ' + action_file_reason(path)))
        if value is None or isinstance(value, (dict, list)) or has_control_char(str(value)) or len(str(value)) > 4096:
            out.append(problem('%s.knobs[%s]' % (var, path), value, 'must be one line (at most 4096 characters)'))
    for tunable, value in sorted((profile.get('sched') or {}).items()):
        if tunable not in PROFILE_SCHED_NAMES:
            out.append(problem(var + '.sched', tunable, 'unknown (known: %s)' % ', '.join(PROFILE_SCHED_NAMES)))
        elif not _is_int(value, 0, 10 ** 10):
            out.append(problem('%s.sched.%s' % (var, tunable), value, 'must be nanoseconds, 0-10000000000'))
    for pattern, attrs in sorted((profile.get('block') or {}).items()):
        if not _DEVICE_GLOB_RE.match(str(pattern)):
            out.append(problem(var + '.block', pattern, "must be a glob over kernel names (letters, digits, '*?[]!_-')"))
        if not isinstance(attrs, dict):
            out.append(problem('%s.block[%s]' % (var, pattern), attrs, 'must be a dict of %s' % ', '.join(PROFILE_BLOCK_ATTRS)))
            continue
        out += _unknown_keys(attrs, PROFILE_BLOCK_ATTRS, '%s.block[%s]' % (var, pattern))
        if 'scheduler' in attrs and not _SCHEDULER_RE.match(str(attrs['scheduler'])):
            out.append(problem('%s.block[%s].scheduler' % (var, pattern), attrs['scheduler'], 'must be a scheduler name'))
        for attr in ('nr_requests', 'read_ahead_kb'):
            if attr in attrs and not _is_int(attrs[attr], 1, 1 << 30):
                out.append(problem('%s.block[%s].%s' % (var, pattern, attr), attrs[attr], 'must be a positive integer'))
    return out


def profile_schedule_problems(v):
    """Checks of the profile_schedule role's inputs (dict of its variables)."""
    profiles = v.get('profile_schedule_profiles') or {}
    if not isinstance(profiles, dict):
        return [problem('profile_schedule_profiles', profiles, 'must be a dict of named profiles')]
    out = []
    for name in sorted(profiles):
        if not _PROFILE_NAME_RE.match(str(name)):
            out.append(problem('profile_schedule_profiles', name, "bad profile name (letters, digits, '_.-')"))
        out += _profile_problems(name, profiles[name])
    if v.get('profile_schedule_default') not in profiles:
        out.append(problem('profile_schedule_default', v.get('profile_schedule_default'),
                           'is not one of the profiles (%s)' % (', '.join(sorted(profiles)) or 'none')))
    for i, window in enumerate(v.get('profile_schedule_windows') or []):
        var = 'profile_schedule_windows[%d]' % i
        if not isinstance(window, dict):
            out.append(problem(var, window, 'must be a dict with profile, start and end'))
            continue
        out += _unknown_keys(window, ('profile', 'start', 'end'), var)
        if window.get('profile') not in profiles:
            out.append(problem(var + '.profile', window.get('profile'), 'is not one of the profiles'))
        for key in ('start', 'end'):
            if not _HHMM_RE.match(str(window.get(key, ''))):
                out.append(problem('%s.%s' % (var, key), window.get(key, ''), 'must be HH:MM (00:00-23:59)'))
        if window.get('start') == window.get('end') and 'start' in window:
            out.append(problem(var + '.end', window.get('end'), 'equals start (an empty window)'))
    return out


def failed_results(registered):
    """What failed in registered task results ({what: result}, loop results or one result; skipped or missing
    ones count as fine), as one line each: "<what> <item>: <msg>" - for a play that goes on and reports at its end."""
    out = []
    for what in sorted(registered or {}):
        result = registered[what] or {}
        items = result.get('results') if isinstance(result.get('results'), list) else [result]
        for r in items:
            if not isinstance(r, dict) or not r.get('failed'):
                continue
            label = r.get('_ansible_item_label', r.get('item'))
            where = what if label is None else '%s %s' % (what, label)
            msg = r.get('msg') or r.get('stderr') or 'failed (rc=%s)' % r.get('rc', '?')
            out.append(one_line('%s: %s' % (where, msg if isinstance(msg, str) else ' '.join(map(str, msg))), 200))
    return out


class FilterModule(object):
    def filters(self):
        return {
            'problems_line': problems_line,
            'failed_results': failed_results,
            'unit_name_problems': unit_name_problems,
            'dir_problems': dir_problems,
            'secret_flag_problems': secret_flag_problems,
            'single_line_problems': single_line_problems,
            'regex_problems': regex_problems,
            'storage_problems': storage_problems,
            'memory_problems': memory_problems,
            'vllm_problems': vllm_problems,
            'profile_schedule_problems': profile_schedule_problems,
        }
