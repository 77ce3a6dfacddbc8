"""Gaps found by PyTorch's device-generic tests: each either works as on CUDA or fails
with an error that names the limit (never a silently wrong tensor)."""
import io

import pytest
import torch

DEV = "npusim"


def test_mode_with_out_matches_cpu():
    x = torch.tensor([[1.0, 2, 2, 3], [5, 5, 1, 1]])
    values = torch.empty(0, device=DEV)
    indices = torch.empty(0, dtype=torch.long, device=DEV)
    torch.mode(x.to(DEV), 1, out=(values, indices))
    want = torch.mode(x, 1)
    assert torch.equal(values.cpu(), want.values) and torch.equal(indices.cpu(), want.indices)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quantized_tensors_are_refused_by_name():
    x = torch.randn(4, device=DEV)
    with pytest.raises(NotImplementedError, match="dense.*quantize_per_tensor returns a quantized tensor"):
        torch.quantize_per_tensor(x, 0.1, 0, torch.qint8)
    q = torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8)
    with pytest.raises(NotImplementedError, match="quantized"):
        q.to(DEV)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sparse_tensors_are_refused_by_name():
    with pytest.raises(NotImplementedError, match="dense \\(strided\\) tensors only.*sparse"):
        torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.tensor([1.0, 2.0]), (3,), device=DEV)
    with pytest.raises(NotImplementedError, match="sparse"):
        torch.tensor([0.0, 1.0]).to_sparse().to(DEV)
    with pytest.raises(NotImplementedError, match="_to_sparse returns a sparse tensor"):
        torch.tensor([0.0, 1.0], device=DEV).to_sparse()


def test_tensor_metadata_survives_save_and_load():
    t = torch.zeros(3, device=DEV)
    assert torch._utils.get_tensor_metadata(t) == {}
    torch._utils.set_tensor_metadata(t, {"channels_last_hint": True, "pinned_layout": False})
    assert torch._utils.get_tensor_metadata(t) == {"channels_last_hint": True, "pinned_layout": False}
    assert torch._utils.get_tensor_metadata(t.detach()) == torch._utils.get_tensor_metadata(t)
    buf = io.BytesIO()
    torch.save({"t": t}, buf)
    buf.seek(0)
    loaded = torch.load(buf)["t"]
    assert loaded.device.type == DEV
    assert torch._utils.get_tensor_metadata(loaded) == {"channels_last_hint": True, "pinned_layout": False}


def test_accelerator_device_capability():
    cap = torch.accelerator.get_device_capability("npusim:0")
    assert cap == torch.accelerator.get_device_capability()
    dtypes = cap["supported_dtypes"]
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool, torch.complex64):
        assert dtype in dtypes
    assert torch.qint8 not in dtypes
    with pytest.raises(Exception, match="device index|out of range|invalid"):
        torch.accelerator.get_device_capability(f"npusim:{torch.npusim.device_count()}")


def test_autocast_bans_binary_cross_entropy_as_cuda_does():
    p, y = torch.rand(4, device=DEV), torch.rand(4, device=DEV)
    with torch.autocast(DEV, dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="unsafe to autocast"):
            torch.nn.functional.binary_cross_entropy(p, y)
        out = torch.nn.functional.binary_cross_entropy_with_logits(p, y)  # the safe form runs
    assert out.dtype == torch.float32
