# The README's two commands: `make run` (set up, then the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
JAM := $(VENV)/bin/jamstream

.PHONY: setup run test demo-corpus

setup:
	@bash scripts/setup.sh

# The main job: play from a prompt with the shipped models, out of the box.
run: setup
	$(JAM) generate "funk music with drums and slap bass" --bpm 104 --seconds 20 -o demo/generate.wav
	$(PY) scripts/jam_demo.py --out demo/jam --seconds 20  # the live bridge on a (dummy) JACK server, recorded
	$(JAM) plot demo/generate.wav demo/jam/jam-demo.wav -o demo/notes.png  # see the notes: a log-frequency spectrogram

# ruff first (line length 120, pyflakes, import order); then pytest runs in a private network namespace with only loopback (Link peers multicast; see
# scripts/private_netns.sh), after the set-up that needs the package registries.
test: setup
	$(VENV)/bin/ruff check .
	bash scripts/private_netns.sh $(PY) -m pytest -q
