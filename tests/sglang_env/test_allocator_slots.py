"""npusim's paged KV allocator for SGLang against two oracles, on random allocation states.

Runs in SGLang's environment (tests/integrations/test_sglang.py starts it there). Each example
draws a page size, a pool whose free pages are in any order, and a batch of requests holding
prefixes in pages of their own; the allocator's slots for a prefill (alloc_extend) or a decode
step (alloc_decode), and the free pages it leaves, must equal
- a plain Python model of SGLang's paging (a request fills its last page first, then takes
  new pages from the front of the free list, in request order), and
- SGLang's own Triton kernels, run by Triton's interpreter on the CPU.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: SGLang's kernels on the CPU

import pytest

pytest.importorskip("sglang", reason="runs in SGLang's environment (tests/integrations/test_sglang.py starts it)")

import torch  # noqa: E402
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from torch_npu_sim.integrations.sglang.allocator import NpuSimPagedTokenToKVPoolAllocator  # noqa: E402


@st.composite
def states(draw, decode: bool):
    page_size = draw(st.sampled_from([2, 4, 8, 16]))
    num_pages = draw(st.integers(8, 48))
    order = draw(st.permutations(list(range(1, num_pages + 1))))  # page 0 is SGLang's padding page
    requests, taken = [], 0
    for _ in range(draw(st.integers(1, 6))):
        prefix = draw(st.integers(1 if decode else 0, 3 * page_size))
        extend = 1 if decode else draw(st.integers(1, 3 * page_size))
        pages = -(-prefix // page_size)
        if taken + pages > num_pages // 2:
            break
        requests.append((prefix, prefix + extend, order[taken:taken + pages]))
        taken += pages
    free = order[taken:]
    new_pages = sum(-(-seq // page_size) - -(-prefix // page_size) for prefix, seq, _ in requests)
    assume(new_pages <= len(free))  # a pool too small is the last test's case
    return page_size, num_pages, requests, free


def model_slots(page_size, requests, free):
    """The slots of positions prefix..seq-1 of each request, and the free pages left."""
    free, out = list(free), []
    for prefix, seq, pages in requests:
        last_page = pages[-1] if pages else None
        for pos in range(prefix, seq):
            if pos % page_size == 0:
                last_page = free.pop(0)
            out.append(last_page * page_size + pos % page_size)
    return out, free


def last_loc(page_size, prefix, pages):
    return pages[(prefix - 1) // page_size] * page_size + (prefix - 1) % page_size if prefix else -1


def allocator(page_size, num_pages, free):
    alloc = NpuSimPagedTokenToKVPoolAllocator(num_pages * page_size, page_size, torch.float32, "npusim",
                                              kvcache=None, need_sort=False)
    alloc.free_pages = torch.tensor(free, dtype=torch.int64, device="npusim")
    return alloc


def tensors(requests, page_size, device):
    prefix = torch.tensor([r[0] for r in requests], dtype=torch.int64)
    seq = torch.tensor([r[1] for r in requests], dtype=torch.int64)
    last = torch.tensor([last_loc(page_size, r[0], r[2]) for r in requests], dtype=torch.int64)
    return prefix, seq, last, (prefix.to(device), seq.to(device), last.to(device))


def triton_slots(kernel_name, page_size, requests, free, extend_tokens):
    from sglang.kernels.ops.memory import allocator as kernels
    from sglang.srt.utils import next_power_of_2

    prefix, seq, last, _ = tensors(requests, page_size, "cpu")
    out = torch.empty(extend_tokens, dtype=torch.int64)
    free_pages = torch.tensor(free, dtype=torch.int64)
    bs = len(requests)
    if kernel_name == "extend":
        kernels.alloc_extend_kernel[(bs,)](prefix, seq, last, free_pages, out, next_power_of_2(bs), page_size)
    else:
        kernels.alloc_decode_kernel[(bs,)](seq, last, free_pages, out, next_power_of_2(bs), page_size)
    return out.tolist()


@settings(max_examples=60, deadline=None)
@given(states(decode=False))
def test_prefill_slots_equal_the_model_and_sglangs_kernel(state):
    page_size, num_pages, requests, free = state
    expected, left = model_slots(page_size, requests, free)
    alloc = allocator(page_size, num_pages, free)
    prefix, seq, _, (prefix_d, seq_d, last_d) = tensors(requests, page_size, "npusim")
    got = alloc.alloc_extend(prefix_d, prefix, seq_d, seq, last_d, len(expected))
    assert got.device.type == "npusim"
    assert got.tolist() == expected
    assert alloc.free_pages.tolist() == left
    assert triton_slots("extend", page_size, requests, free, len(expected)) == expected


@settings(max_examples=60, deadline=None)
@given(states(decode=True))
def test_decode_slots_equal_the_model_and_sglangs_kernel(state):
    page_size, num_pages, requests, free = state
    expected, left = model_slots(page_size, requests, free)
    alloc = allocator(page_size, num_pages, free)
    _, seq, _, (_, seq_d, last_d) = tensors(requests, page_size, "npusim")
    got = alloc.alloc_decode(seq_d, seq, last_d)
    assert got.tolist() == expected
    assert alloc.free_pages.tolist() == left
    assert triton_slots("decode", page_size, requests, free, len(expected)) == expected


def test_a_pool_too_small_returns_none_and_keeps_its_pages():
    alloc = allocator(4, 4, [3, 4])
    prefix = torch.tensor([0]); seq = torch.tensor([12])
    assert alloc.alloc_extend(prefix.to("npusim"), prefix, seq.to("npusim"), seq, torch.tensor([-1], device="npusim"),
                              12) is None
    assert alloc.free_pages.tolist() == [3, 4]
