#!/usr/bin/env bash
# Installs the `triton` extra (triton 3.9.0: user Triton kernels on npusim through Triton's
# interpreter, torch_npu_sim.integrations.triton) without letting pip replace torch: it is
# resolved under a constraint on the installed CPU build. scripts/install_torchtitan.sh runs it.
set -euo pipefail
TRITON_VERSION=3.9.0
if python -c "import importlib.metadata as m; assert m.version('triton') == '$TRITON_VERSION'" 2>/dev/null; then
    echo "triton $TRITON_VERSION already installed"; exit 0
fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0+cpu" > "$constraints"
python -m pip install -q -c "$constraints" "triton==$TRITON_VERSION" "torch==2.13.0+cpu"
python -c "import torch, triton; print('triton', triton.__version__, 'with torch', torch.__version__)"
