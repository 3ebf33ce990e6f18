# The README's two commands: `make run` (set up, then the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
JAM := $(VENV)/bin/jamstream

.PHONY: setup run test demo-corpus

setup:
	@bash scripts/setup.sh

# The main job. Until the live bridge lands: build a small captioned corpus and summarise it.
run: setup
	$(JAM) corpus build --out corpus-demo --minutes 2
	$(JAM) corpus stats corpus-demo

test: setup
	$(PY) -m pytest -q
