#!/usr/bin/env bash
# Installs torchtitan 0.3.0 (and its requirements) for examples/torchtitan and
# tests/integrations/test_torchtitan.py, never letting pip replace torch (scripts/install_extra.sh).
# torchtitan imports triton without declaring it, so the `triton` extra is installed first;
# the `torchft` extra (tests/integrations/test_torchft.py) comes with it.
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install_triton.sh"
bash "$here/install_torchft.sh"
bash "$here/install_extra.sh" torchtitan 0.3.0 \
    "import torch, torchtitan.train; print('torchtitan 0.3.0 with torch', torch.__version__)"
