# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: host_library
author:
  - medai.llmhost contributors (@medai-llmhost)
version_added: 0.1.0
short_description: The collection's module_utils as file entries for M(medai.llmhost.file_set)
description:
  - Returns one entry per Python file of this collection's C(plugins/module_utils), with the path it gets under
    O(dest) on the host (C(<dest>/ansible_collections/medai/llmhost/plugins/module_utils/<file>)), its text and
    mode V(0644).
  - The host programs (the profile switcher) import the engine from there; M(medai.llmhost.file_set) installs
    the whole library in one call instead of a file-by-file copy.
  - The files are read from the installed collection that provides this plugin, so the host gets the same
    engine as the modules.
options:
  dest:
    description: Directory on the host that the library's C(ansible_collections) tree goes under.
    type: str
    default: /usr/local/lib/medai-llmhost
'''

EXAMPLES = r'''
- name: Install the knob library for the host programs
  medai.llmhost.file_set:
    files: "{{ query('medai.llmhost.host_library', dest='/usr/local/lib/medai-llmhost') }}"
'''

RETURN = r'''
_raw:
  description: One dict per file, with keys C(path), C(content) and C(mode), sorted by path.
  type: list
  elements: dict
'''

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

LIBRARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils')
DEFAULT_DEST = '/usr/local/lib/medai-llmhost'
PACKAGE = 'ansible_collections/medai/llmhost/plugins/module_utils'


def library_files(dest, library=LIBRARY):
    """[{path, content, mode}] for every *.py of `library`, placed under `dest`."""
    if not dest.startswith('/') or os.path.normpath(dest) != dest:
        raise AnsibleLookupError('host_library: dest %r must be an absolute, normalized directory' % dest[:80])
    try:
        names = sorted(n for n in os.listdir(library) if n.endswith('.py'))
    except OSError as e:
        raise AnsibleLookupError('host_library: cannot list %s: %s' % (library, e.strerror))
    if not names:
        raise AnsibleLookupError('host_library: no Python files in %s' % library)
    files = []
    for name in names:
        with open(os.path.join(library, name), encoding='utf-8') as f:
            files.append({'path': '%s/%s/%s' % (dest, PACKAGE, name), 'content': f.read(), 'mode': '0644'})
    return files


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        unknown = sorted(set(kwargs) - {'dest'})
        if terms or unknown:
            raise AnsibleLookupError('host_library: takes only the option dest (given: %s)' % ', '.join(unknown or ['terms']))
        return library_files(kwargs.get('dest', DEFAULT_DEST))
