#!/usr/bin/env bash
# Installs everything torch_npu_sim needs on a fresh machine and builds the extension.
# torch is pinned to 2.13.0 and the extension is built against it without build
# isolation, so pip never resolves another torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -r requirements-dev.txt "torch==2.13.0"
# the build imports torch: keep it from autoloading a stale build of this package
TORCH_DEVICE_BACKEND_AUTOLOAD=0 MAX_JOBS="${MAX_JOBS:-2}" python -m pip install -q --no-build-isolation -e .
python -c "import torch; assert torch.accelerator.current_accelerator().type == 'npusim'; print('torch_npu_sim installed:', torch.npusim.device_count(), 'npusim devices')"
