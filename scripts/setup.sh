#!/usr/bin/env bash
# Sets up stepvoice on a fresh machine: Debian packages (when root), a venv in
# .venv, CPU torch first (a plain `torch` would pull a multi-GB CUDA build),
# then the project. Idempotent: a second run installs nothing new.
# Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

debs="libsndfile1 libportaudio2 espeak-ng sox"
# nodejs/npm: the openai npm SDK contract test (tests/node); openssl: its self-signed certificate
[ "$with_tests" = 1 ] && debs="$debs chromium alsa-utils nodejs npm openssl"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    missing=""
    for p in $debs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
pip install --upgrade pip >/dev/null
.venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==${STEPVOICE_TORCH:-2.13.0}"
if [ "$with_tests" = 1 ]; then pip install -e ".[test,eval]"; else pip install -e ".[eval]"; fi
# s3tokenizer: speech-code reference and the default voice clip; --no-deps
# keeps torchaudio (unneeded, and unloadable beside CPU torch) out.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('s3tokenizer') is None)" \
    || pip install --no-deps "s3tokenizer>=0.2"
# resemblyzer: only its shipped speaker-encoder weights are read (retrieval's
# default speaker embedder); --no-deps keeps librosa/webrtcvad out.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('resemblyzer') is None)" \
    || pip install --no-deps "resemblyzer>=0.1.3"
if [ "$with_tests" = 1 ] && command -v npm >/dev/null; then
    # The openai npm SDK, ws and typescript for tests/test_server_node_sdk.py (versions locked in package-lock.json).
    [ -d tests/node/node_modules/openai ] || (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "$with_tests" = 1 ]; then
    # Reference flow/HiFT modules for parity tests only; never imported by the product.
    .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('cosyvoice2') is None)" \
        || pip install --no-deps step-audio2
fi
