"""Host<->device copies are bit-exact on both sides of the size at which the runtime hands a
copy to the parallel host copy (NPUSIM_HOST_COPY_MIN_BYTES in npusim_runtime.h), for
contiguous, offset, non-contiguous and dtype-converting copies in both directions."""
import pytest
import torch

PARALLEL_MIN_BYTES = 1 << 19  # NPUSIM_HOST_COPY_MIN_BYTES
BYTE_SIZES = [PARALLEL_MIN_BYTES - 1, PARALLEL_MIN_BYTES, PARALLEL_MIN_BYTES + 1,
              3 * PARALLEL_MIN_BYTES + 4099, 16 * 2**20 + 5]


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes (on the CPU), so equality means bit for bit, NaN payloads included."""
    return t.cpu().contiguous().view(torch.uint8)


def random_bytes(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    return torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("nbytes", BYTE_SIZES)
def test_contiguous_both_directions(nbytes):
    host = random_bytes(nbytes)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="npusim")
    dev.copy_(host)
    back = torch.zeros_like(host)
    back.copy_(dev)
    assert torch.equal(back, host)
    assert torch.equal(dev.clone().cpu(), host)  # device->device too


@pytest.mark.parametrize("nbytes", BYTE_SIZES)
@pytest.mark.parametrize("offset", [1, 3])
def test_unaligned_offsets(nbytes, offset):
    host = random_bytes(nbytes + 8)
    dev = torch.zeros(nbytes + 8, dtype=torch.uint8, device="npusim")
    dev[offset:offset + nbytes].copy_(host[8 - offset:8 - offset + nbytes])
    expected = torch.zeros(nbytes + 8, dtype=torch.uint8)
    expected[offset:offset + nbytes] = host[8 - offset:8 - offset + nbytes]
    assert torch.equal(dev.cpu(), expected)  # nothing written outside the range
    out = torch.zeros(nbytes + 8, dtype=torch.uint8)
    out[5:5 + nbytes].copy_(dev[offset:offset + nbytes])
    assert torch.equal(out[5:5 + nbytes], expected[offset:offset + nbytes])
    assert not out[:5].any() and not out[5 + nbytes:].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.bool])
@pytest.mark.parametrize("nbytes", [PARALLEL_MIN_BYTES - 8, PARALLEL_MIN_BYTES, 8 * 2**20 + 8])
def test_typed_tensors_round_trip(dtype, nbytes):
    raw = random_bytes(nbytes)
    host = (raw % 2).bool() if dtype == torch.bool else raw.view(dtype)  # every bit pattern, NaNs too
    dev = host.to("npusim")
    assert torch.equal(bits(dev), bits(host))
    assert torch.equal(bits(dev.to("cpu")), bits(host))


@pytest.mark.parametrize("rows", [511, 512, 513, 2048])
def test_non_contiguous_both_directions(rows):
    host = torch.randn(rows, 257)  # a row is 1028 bytes: 512 rows are about the threshold
    dev = host.to("npusim")
    # transposed, strided and column views, copied each way
    for view in (lambda t: t.t(), lambda t: t[::2, 1::3], lambda t: t[:, 5]):
        expected = view(host)
        assert torch.equal(bits(view(dev)), bits(expected))
        dst = torch.empty_like(expected, device="npusim")
        dst.copy_(expected)
        assert torch.equal(bits(dst), bits(expected.contiguous()))
        if expected.dim() == 2:  # into non-contiguous (transposed) tensors on either side
            dst_host = torch.zeros(expected.shape[::-1]).t()
            dst_host.copy_(view(dev))
            assert torch.equal(bits(dst_host), bits(expected))
            dst_dev = torch.zeros(expected.shape[::-1], device="npusim").t()
            dst_dev.copy_(expected)
            assert torch.equal(bits(dst_dev), bits(expected))


@pytest.mark.parametrize("numel", [PARALLEL_MIN_BYTES // 4 - 1, PARALLEL_MIN_BYTES // 4 + 1, 3 * 2**20])
@pytest.mark.parametrize("src_dtype,dst_dtype", [(torch.float32, torch.float64), (torch.float32, torch.bfloat16),
                                                 (torch.float64, torch.float16), (torch.int32, torch.float32),
                                                 (torch.float32, torch.int64)])
def test_dtype_converting_both_directions(numel, src_dtype, dst_dtype):
    host = torch.randn(numel, dtype=torch.float64).mul_(1000).to(src_dtype)
    expected = host.to(dst_dtype)
    h2d = torch.empty(numel, dtype=dst_dtype, device="npusim")
    h2d.copy_(host)
    assert torch.equal(bits(h2d), bits(expected))
    d2h = torch.empty(numel, dtype=dst_dtype)
    d2h.copy_(host.to("npusim"))
    assert torch.equal(bits(d2h), bits(expected))
    assert torch.equal(bits(host.to("npusim").to(dst_dtype)), bits(expected))


def test_large_copy_counts_one_launch():
    host = random_bytes(4 * PARALLEL_MIN_BYTES)
    dev = torch.empty_like(host, device="npusim")
    before = torch.npusim.launch_count(0)
    dev.copy_(host)
    assert torch.npusim.launch_count(0) == before + 1


def test_large_copies_on_one_thread():
    host = random_bytes(4 * PARALLEL_MIN_BYTES + 7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(host.to("npusim").cpu(), host)
    finally:
        torch.set_num_threads(threads)
