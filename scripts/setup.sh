#!/usr/bin/env bash
# Sets up stepvoice on a fresh machine: Debian packages (when root), a venv in
# .venv, CPU torch first (a plain `torch` would pull a multi-GB CUDA build),
# then the project. Idempotent: a second run installs nothing new.
# Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1
step() { echo "==> $*"; }

debs="libsndfile1 libportaudio2 espeak-ng sox"
# nodejs/npm: the openai npm SDK contract test (tests/node); openssl: its self-signed certificate;
# g++: torch.compile (inductor) builds its CPU kernels with it (tests/test_token2wav_fast_paths.py)
[ "$with_tests" = 1 ] && debs="$debs chromium alsa-utils nodejs npm openssl g++"
# A package counts as present when its command is there, whoever installed it: machines that
# ship Node.js from elsewhere (e.g. nodesource's nodejs, which bundles npm) must not get
# Debian's npm on top (apt refuses: the two conflict).
present() {
    case "$1" in
        nodejs) command -v node >/dev/null ;;
        npm|openssl|g++|chromium) command -v "$1" >/dev/null ;;
        *) dpkg -s "$1" >/dev/null 2>&1 ;;
    esac
}
missing=""
if command -v dpkg >/dev/null; then
    for p in $debs; do present "$p" || missing="$missing $p"; done
fi
if [ -z "$missing" ]; then
    command -v dpkg >/dev/null && step "Debian packages present:$(printf ' %s' $debs)"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    step "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    step "skipping Debian packages (not root):$missing"
    echo "    install them with: sudo apt-get install$missing"
    [ "$with_tests" = 1 ] && echo "    (the tests that need them will fail until then)"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    step "creating .venv ($("$PY" --version 2>&1))"
    "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
has() { .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }
pip install --upgrade pip >/dev/null
if .venv/bin/python -c "import torch" 2>/dev/null; then
    step "torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') present"
else
    step "installing torch ${STEPVOICE_TORCH:-2.13.0} (CPU build unless your index serves CUDA; ~200 MB)..."
    pip install "torch==${STEPVOICE_TORCH:-2.13.0}"
fi
if [ "$with_tests" = 1 ]; then
    step "installing stepvoice (editable) with its test and eval extras..."
    pip install -e ".[test,eval]"
else
    step "installing stepvoice (editable) and its dependencies (with the eval scorers)..."
    pip install -e ".[eval]"
fi
# s3tokenizer: speech-code reference and the default voice clip; --no-deps
# keeps torchaudio (unneeded, and unloadable beside CPU torch) out.
has s3tokenizer || { step "installing s3tokenizer (--no-deps: the default voice clip)..."; pip install --no-deps "s3tokenizer>=0.2"; }
# resemblyzer: only its shipped speaker-encoder weights are read (retrieval's
# default speaker embedder); --no-deps keeps librosa out.
has resemblyzer || { step "installing resemblyzer (--no-deps: the speaker encoder's weights)..."; pip install --no-deps "resemblyzer>=0.1.3"; }
if [ "$with_tests" = 1 ] && command -v npm >/dev/null; then
    # The openai npm SDK, ws and typescript for tests/test_server_node_sdk.py (versions locked in package-lock.json).
    [ -d tests/node/node_modules/openai ] || (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "$with_tests" = 1 ]; then
    # Reference flow/HiFT modules for parity tests only; never imported by the product.
    has cosyvoice2 || { step "installing step-audio2 (--no-deps: reference modules for the parity tests)..."; pip install --no-deps step-audio2; }
fi
step "done: $(.venv/bin/python -m stepvoice --version)"
[ "$with_tests" = 1 ] || echo "    first try: .venv/bin/stepvoice chat --text     (checks: .venv/bin/stepvoice doctor)"
