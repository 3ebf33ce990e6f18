#!/usr/bin/env bash
# Everything jamstream needs on a fresh Debian/Ubuntu machine, idempotent and quick on re-runs:
# the Debian packages it shells out to (JACK, FluidSynth, the GM soundfont) and a venv with
# the pinned Python packages. Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2: `ip`, which scripts/private_netns.sh uses to bring up loopback in the test namespace;
# opus-tools: opusenc/opusdec, the real peers `jamstream eval codec` measures beside our codec.
# build-essential, lv2-dev: the LV2 plugin (bridge/lv2) is C, built here by make; sordi has the
# sord_validate that lv2_validate runs; lilv-utils (lv2bench, lv2info), jalv, klick and ardour
# are the real hosts its tests run it in.
APT_PACKAGES=(jackd2 fluidsynth fluid-soundfont-gm iproute2 opus-tools
  build-essential lv2-dev sordi lilv-utils jalv klick ardour)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # jackd2 asks whether to enable realtime scheduling; the default answer is fine here.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.jamstream-installed"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# The dev venv takes the optional extras too: test, link (the Link tests) and eval (madmom for
# the beat F-measure; its models are CC BY-NC-SA, so a user's install leaves it out).
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into $VENV (torch 2.13.0 CPU first, so nothing pulls a CUDA build)"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test,link,eval]" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import torch, music21, pedalboard, jack, rtmidi, mido, aalink, mir_eval" \
    || { echo "setup: Python packages failed to install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

# The LV2 plugin: quick when it is up to date (`jamstream plugin install` copies it to ~/.lv2).
make -s -C bridge/lv2
