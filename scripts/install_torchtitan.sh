#!/usr/bin/env bash
# Installs torchtitan 0.3.0 (and its requirements) for examples/torchtitan and
# tests/integrations/test_torchtitan.py, never letting pip replace torch: everything is
# resolved under a constraint on the installed CPU build. torchtitan imports triton
# without declaring it, so the `triton` extra is installed first (scripts/install_triton.sh).
set -euo pipefail
TORCHTITAN_VERSION=0.3.0
bash "$(dirname "$0")/install_triton.sh"
bash "$(dirname "$0")/install_torchft.sh"  # the torchft extra (tests/integrations/test_torchft.py)
if python -c "import importlib.metadata as m; assert m.version('torchtitan') == '$TORCHTITAN_VERSION'" 2>/dev/null; then
    echo "torchtitan $TORCHTITAN_VERSION already installed"; exit 0
fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0+cpu" > "$constraints"
python -m pip install -q -c "$constraints" "torchtitan==$TORCHTITAN_VERSION" "torch==2.13.0+cpu"
python -c "import torch, torchtitan.train; print('torchtitan $TORCHTITAN_VERSION with torch', torch.__version__)"
