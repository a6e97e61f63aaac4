#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned stack; reinstalls only when pyproject.toml changed.
# Usage: bash scripts/setup.sh [extras]   (default extras: test,sweep,wandb,mlflow: the trackers
# install in seconds and pin cleanly, so their offline tests run in CI too)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,sweep,wandb,mlflow}"
python="${PYTHON:-python3}"
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)-${extras//,/_}"
if [ -f "$stamp" ] && .venv/bin/python -c "import torch, hydra, rainbow_runner.runner.cli" 2>/dev/null; then
  exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
rm -f .venv/.installed-*
touch "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
