#!/usr/bin/env bash
# Installs the `torchft` extra (torchft 0.2.0: npusim as a torchft process group,
# torch_npu_sim.integrations.torchft), torch left as installed.
# scripts/install_torchtitan.sh runs it.
set -euo pipefail
bash "$(dirname "$0")/install_extra.sh" torchft 0.2.0 \
    "import torch, torchft; from torchft._torchft import LighthouseServer; print('torchft 0.2.0 with torch', torch.__version__)"
