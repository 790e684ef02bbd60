# Convenience targets; the real commands are scripts/setup.sh and scripts/test.sh.
#   make test                      # everything (= CI: bash .ci/run)
#   make unit | sanity | lint | docs
#   make molecule SCENARIO=name    # one scenario (default: all in molecule/SUITE)
#   make lab-up | lab-ssh | lab-down
SHELL := /bin/bash
VENV_PY := .venv/bin/python
SCENARIO ?=

.PHONY: setup test unit sanity lint docs molecule lab-up lab-down lab-ssh clean

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

unit sanity lint docs:
	bash scripts/test.sh --only $@

molecule:
ifeq ($(strip $(SCENARIO)),)
	bash scripts/test.sh --only molecule
else
	bash scripts/setup.sh
	source .venv/bin/activate && \
	  ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.collections ANSIBLE_ROLES_PATH=$(CURDIR)/roles \
	  molecule test -s $(SCENARIO)
endif

lab-up lab-down lab-ssh: setup
	$(VENV_PY) scripts/lab.py $(patsubst lab-%,%,$@)

# Removes the venv, extracted collections and test output. Keeps ~/.cache/medai-llmhost (wheels, images).
clean:
	rm -rf .venv .collections tests/output .pytest_cache
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
