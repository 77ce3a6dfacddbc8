#!/usr/bin/env bash
# Incremental rebuild of torch_npu_sim._C in place (ninja), serialised by a lock so that
# several builds in the same tree never race.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/npusim-build-$(echo "$PWD" | md5sum | cut -c1-8).lock \
  env TORCH_DEVICE_BACKEND_AUTOLOAD=0 MAX_JOBS="${MAX_JOBS:-2}" python setup.py -q build_ext --inplace
