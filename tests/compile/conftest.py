import os
import sys
import tempfile

import pytest

# Compiled C++ kernels are cached across runs (Inductor keys the cache on source and
# config), which keeps this suite's g++ time small after the first run.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "torch_npu_sim-inductor-cache"))
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
