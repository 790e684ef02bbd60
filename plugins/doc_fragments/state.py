# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  state_dir:
    description:
      - Directory on the managed host holding C(originals.json) (the value each setting had before
        the collection first changed it, used by O(state=absent) and the rollback playbook) and
        C(journal.jsonl) (one JSON line per applied change).
      - Nothing is written there in check mode.
    type: path
    default: /var/lib/medai-llmhost
  change_context:
    description:
      - Free text stored with every journal entry, for example the play name and the operator's ticket number.
    type: str
'''
