#!/usr/bin/env bash
# Installs the `torchft` extra (torchft 0.2.0: npusim as a torchft process group,
# torch_npu_sim.integrations.torchft) without letting pip replace torch: it is resolved
# under a constraint on the installed CPU build. scripts/install_torchtitan.sh runs it.
set -euo pipefail
TORCHFT_VERSION=0.2.0
if python -c "import importlib.metadata as m; assert m.version('torchft') == '$TORCHFT_VERSION'" 2>/dev/null; then
    echo "torchft $TORCHFT_VERSION already installed"; exit 0
fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0+cpu" > "$constraints"
python -m pip install -q -c "$constraints" "torchft==$TORCHFT_VERSION" "torch==2.13.0+cpu"
python -c "import torch, torchft; from torchft._torchft import LighthouseServer; print('torchft $TORCHFT_VERSION with torch', torch.__version__)"
