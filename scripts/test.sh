#!/usr/bin/env bash
# Sets up the test environment (see setup.sh) and runs the test suite.
# Extra arguments go to pytest. STEPVOICE_SLOW=1 also runs the real-size checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The sample tool plugin (a separate distribution with a stepvoice.tools entry point) is part of the test env.
.venv/bin/python -c "import importlib.metadata as m; m.distribution('stepvoice-sample-plugin')" 2>/dev/null \
    || .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e tests/plugins/sample_plugin
.venv/bin/python -m pytest -q "$@"
if [ "${STEPVOICE_SLOW:-0}" = 1 ]; then
    .venv/bin/python -m pytest -q -m slow "$@"
fi
