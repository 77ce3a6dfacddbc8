"""vLLM's CPU kernels are catch-all host kernels (they read tensors through raw pointers).
On npusim they are routed through the fallback, so they run inside launches: under
protected memory (which would otherwise stop the process) and recorded by graph capture
(which would otherwise run them at capture time and never again)."""
import pytest

pytest.importorskip("vllm", reason="the vllm extra is not installed (scripts/install_vllm.sh)")

SLOT_MAPPING = """
import torch
from vllm.platforms import current_platform
from torch_npu_sim._op_routing import route_host_kernels

current_platform.import_kernels()
routed = route_host_kernels("_C")
assert "_C::compute_slot_mapping_kernel_impl" in routed, routed
assert "_C::cpu_attention_with_kv_cache" in routed, routed
assert torch_npu_sim_routed("_C::rms_norm") is False  # has a CPU kernel: the fallback already serves it

def slots(dev, positions):
    qsl = torch.tensor([0, 3, 5], dtype=torch.int32, device=dev)
    table = torch.tensor([[4, 7, 9], [2, 3, 1]], dtype=torch.int32, device=dev)
    out = torch.full((5,), -5, dtype=torch.int64, device=dev)
    torch.ops._C.compute_slot_mapping_kernel_impl(qsl, positions.to(dev), table, out, 16)
    return out

positions = torch.tensor([0, 17, 33, 5, 20])
expected = slots("cpu", positions)
assert torch.equal(slots("npusim", positions).cpu(), expected)

# captured, not run: replay computes the slots of the positions it finds then
qsl = torch.tensor([0, 3, 5], dtype=torch.int32, device="npusim")
table = torch.tensor([[4, 7, 9], [2, 3, 1]], dtype=torch.int32, device="npusim")
static_pos = torch.zeros(5, dtype=torch.int64, device="npusim")
out = torch.full((5,), -5, dtype=torch.int64, device="npusim")
g = torch.npusim.NPUGraph()
with torch.npusim.graph(g):
    torch.ops._C.compute_slot_mapping_kernel_impl(qsl, static_pos, table, out, 16)
assert torch.equal(out.cpu(), torch.full((5,), -5)), "the host kernel ran during capture"
static_pos.copy_(positions.to("npusim"))
g.replay()
assert torch.equal(out.cpu(), expected)
print("OK")
"""


@pytest.mark.parametrize("protected", [False, True])
def test_host_kernels_run_inside_launches(fresh_python, protected):
    code = "from torch_npu_sim import _C\ntorch_npu_sim_routed = _C._op_is_routed\n" + SLOT_MAPPING
    env = {"NPUSIM_PROTECT_MEMORY": "1"} if protected else {}
    result = fresh_python(code, env=env, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, (result.stdout[-2000:], result.stderr[-4000:])
