#!/usr/bin/env bash
# Installs the `triton` extra (triton 3.9.0: user Triton kernels on npusim through Triton's
# interpreter, torch_npu_sim.integrations.triton), torch left as installed.
# scripts/install_torchtitan.sh runs it.
set -euo pipefail
bash "$(dirname "$0")/install_extra.sh" triton 3.9.0 \
    "import torch, triton; print('triton', triton.__version__, 'with torch', torch.__version__)"
