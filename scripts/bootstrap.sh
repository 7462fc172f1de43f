#!/usr/bin/env bash
# Installs everything aether needs from a clean clone, idempotently:
# a Python venv in .venv with aether and its test extras, and the npm packages
# of the local chain (anvil, cast, Uniswap V2 bytecode, solc) from package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
EXTRAS=${AETHER_EXTRAS:-test}
STAMP=".venv/.installed-$EXTRAS"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]" >.venv/pip-install.log 2>&1 || {
        cat .venv/pip-install.log >&2
        echo "bootstrap: pip install failed (log above, also in .venv/pip-install.log)" >&2
        exit 1
    }
    touch "$STAMP"
fi
# Platform binaries ship inside the registry packages; no postinstall download is needed.
if [ ! -x node_modules/.bin/anvil ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
