# Copyright: medai.llmhost maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for the ``get-pip.py`` bootstrap script that ``ansible-test`` downloads.

``ansible-test sanity --venv`` (and every ansible-test command that builds a virtual environment)
bootstraps pip with ``https://ci-files.testing.ansible.com/ansible-test/get-pip-<version>.py``.
That host is unreachable from this lab and from air-gapped hospital networks. ansible-test first
looks for a cached copy at ``~/.ansible/test/cache/get_pip_<version with _>.py``;
``scripts/setup.sh`` installs this file there for every pip version the installed ansible-test asks for.

What it does, with the arguments ansible-test passes (e.g. ``--disable-pip-version-check pip==24.2
--no-setuptools --no-wheel``):

1. ``<python> -m ensurepip`` in a *subprocess*: installs the pip bundled with the interpreter, no network.
   (Running ensurepip in-process would reset pip's configuration, losing e.g. the machine's CA bundle
   and index settings for step 2.)
2. ``<python> -m pip install --upgrade <args>`` with the get-pip-only options (``--no-setuptools``,
   ``--no-wheel``, ``--no-pip``) translated: it installs the requested pip (and setuptools/wheel unless
   excluded) from whatever index pip is configured for (PyPI, a local mirror via ``PIP_INDEX_URL``, or
   ``PIP_FIND_LINKS`` directory).

Air-gapped hosts without any reachable index: set ``MEDAI_GET_PIP_ALLOW_BUNDLED=1`` to accept the
interpreter's bundled pip when step 2 fails (ansible-test then runs with that pip version).
"""

from __future__ import annotations

import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel', '--no-pip')


def log(message: str) -> None:
    sys.stderr.write('offline-get-pip: %s\n' % message)
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    python = sys.executable
    excluded = {opt for opt in argv if opt in GET_PIP_ONLY_OPTIONS}
    args = [arg for arg in argv if arg not in GET_PIP_ONLY_OPTIONS]
    requested = {a.split('=')[0].split('<')[0].split('>')[0].lower() for a in args if not a.startswith('-')}
    if '--no-pip' not in excluded and 'pip' not in requested:
        args.append('pip')
    if '--no-setuptools' not in excluded and 'setuptools' not in requested:
        args.append('setuptools')
    if '--no-wheel' not in excluded and 'wheel' not in requested:
        args.append('wheel')

    # Step 1: bundled pip, in a subprocess (see module docstring for why not in-process).
    rc = subprocess.call([python, '-m', 'ensurepip', '--default-pip'])
    if rc != 0:
        log('"%s -m ensurepip" failed with exit code %d (is the ensurepip module installed? '
            'On Debian: apt-get install python3-venv)' % (python, rc))
        return rc

    # Step 2: the pip version ansible-test asked for.
    command = [python, '-m', 'pip', 'install', '--upgrade'] + args
    rc = subprocess.call(command)
    if rc != 0:
        if os.environ.get('MEDAI_GET_PIP_ALLOW_BUNDLED') == '1':
            log('"%s" failed (exit %d); keeping the bundled pip because MEDAI_GET_PIP_ALLOW_BUNDLED=1'
                % (' '.join(command), rc))
            return 0
        log('"%s" failed with exit code %d. Offline? Point pip at a mirror (PIP_INDEX_URL / '
            'PIP_FIND_LINKS) or set MEDAI_GET_PIP_ALLOW_BUNDLED=1.' % (' '.join(command), rc))
    return rc


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
