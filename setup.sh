#!/usr/bin/env bash
# Create .venv/ at the repository root with the whole stack (requirements.txt) and both
# packages installed editable. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10)' 2>/dev/null; then
  echo "setup.sh: needs Python 3.10+ (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -r requirements.txt
# KerasHub (hrnet_keras.kerashub): keras-hub without its tensorflow-text requirement
.venv/bin/python -m pip install -q -r requirements-keras-hub.txt
.venv/bin/python -m pip install -q --no-deps keras-hub==0.32.0
.venv/bin/python -m pip install -q --no-deps -e packages/hrnet-keras -e packages/hrnet-eval
.venv/bin/python -c "import hrnet_keras, hrnet_eval; print('setup.sh: .venv ready:', ', '.join(hrnet_keras.list_models()))"
