#!/usr/bin/env bash
# Sets up the test environment (see setup.sh) and runs the test suite.
# Extra arguments go to pytest. STEPVOICE_SLOW=1 also runs the real-size checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Test-only tool plugins never live in .venv (the tests create their entry points in a temporary folder);
# an older test.sh installed the sample plugin there: take it out.
if .venv/bin/python -c "import importlib.metadata as m; m.distribution('stepvoice-sample-plugin')" 2>/dev/null; then
    echo "==> removing the test-only sample plugin from .venv"
    .venv/bin/python -m pip uninstall -q -y stepvoice-sample-plugin
fi
echo "==> running the test suite (default: not slow, not live)..."
.venv/bin/python -m pytest -q "$@"
if [ "${STEPVOICE_SLOW:-0}" = 1 ]; then
    echo "==> running the slow real-size checks..."
    .venv/bin/python -m pytest -q -m slow "$@"
fi
