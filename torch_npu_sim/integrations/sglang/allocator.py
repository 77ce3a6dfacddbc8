"""The KV-cache index allocator on npusim: SGLang's own allocators, with torch-native index math.

SGLang's paged allocator computes each request's cache slots with Triton kernels written for
CUDA. On npusim the same slots come from torch ops: for prefills SGLang's own
`alloc_extend_naive` (its reference for the kernel), for decodes the few lines below. Page
size 1 is SGLang's token allocator unchanged.
"""
from __future__ import annotations

import torch
from sglang.srt.mem_cache.allocator.paged import PagedTokenToKVPoolAllocator, alloc_extend_naive
from sglang.srt.mem_cache.allocator.token import TokenToKVPoolAllocator
from sglang.srt.utils import get_num_new_pages


def decode_slots(seq_lens: torch.Tensor, last_loc: torch.Tensor, free_pages: torch.Tensor,
                 page_size: int) -> torch.Tensor:
    """The cache slot of each request's next token: the slot after its last one, or the first
    slot of the next free page when the token starts a page (pages taken in request order)."""
    starts_page = (seq_lens - 1) % page_size == 0
    page_rank = torch.cumsum(starts_page.to(torch.int64), 0) - 1
    if free_pages.numel() == 0:
        return last_loc + 1
    new_page = free_pages[page_rank.clamp(min=0, max=free_pages.numel() - 1)]
    return torch.where(starts_page, new_page * page_size, last_loc + 1)


class NpuSimPagedTokenToKVPoolAllocator(PagedTokenToKVPoolAllocator):
    """SGLang's paged allocator with its Triton slot kernels replaced by torch ops."""

    def alloc_extend(self, prefix_lens, prefix_lens_cpu, seq_lens, seq_lens_cpu, last_loc,
                     extend_num_tokens: int, num_new_pages: int | None = None):
        bs = len(prefix_lens)
        if extend_num_tokens // self.page_size + bs + 1 > len(self.free_pages):
            self.merge_and_sort_free()
        if num_new_pages is None:
            num_new_pages = get_num_new_pages(seq_lens=seq_lens_cpu, page_size=self.page_size,
                                              prefix_lens=prefix_lens_cpu)
        if num_new_pages > len(self.free_pages):
            return None
        out_indices = torch.empty((extend_num_tokens,), dtype=torch.int64, device=self.device)
        alloc_extend_naive(prefix_lens, seq_lens, last_loc, self.free_pages, out_indices,
                           self.page_size, self.device)
        self.free_pages = self.free_pages[num_new_pages:]
        return out_indices

    def alloc_decode(self, seq_lens, seq_lens_cpu, last_loc):
        if len(seq_lens) > len(self.free_pages):
            self.merge_and_sort_free()
        num_new_pages = get_num_new_pages(seq_lens=seq_lens_cpu, page_size=self.page_size, decode=True)
        if num_new_pages > len(self.free_pages):
            return None
        out_indices = decode_slots(seq_lens, last_loc, self.free_pages, self.page_size)
        self.free_pages = self.free_pages[num_new_pages:]
        return out_indices


class NpuSimTokenToKVPoolAllocator:
    """What the platform hands SGLang as its allocator class: constructs SGLang's token
    allocator for page size 1 and the paged one above otherwise."""

    def __new__(cls, size: int, page_size: int, dtype: torch.dtype, device, kvcache, need_sort: bool):
        if page_size == 1:
            return TokenToKVPoolAllocator(size, dtype, device, kvcache, need_sort)
        return NpuSimPagedTokenToKVPoolAllocator(size, page_size, dtype, device, kvcache, need_sort)
