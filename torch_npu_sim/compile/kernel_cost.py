"""What one Inductor C++ kernel computes and moves, worked out while it is generated.

The simulated clock charges each compiled kernel call (simulation/compiled.py). Here, at
code generation, the scheduler nodes a kernel fuses give its figures:

* FLOPs: for each fused node, the arithmetic ops of its loop body (one per ``add``, ``mul``,
  ``exp``, ``where``, ``reduction``, ...; loads, stores, constants, index arithmetic and
  dtype conversions count nothing) times its iteration count (pointwise and reduction
  ranges). Ops under a mask count as if every iteration ran them.
* Bytes: each buffer the kernel reads from or writes to global memory, as its arguments
  name them: intermediates fused away are not arguments. A read counts at most the
  elements its index can reach (a slice or a broadcast reads less than the buffer), a
  write the buffer; a buffer updated in place counts as a read only where the kernel
  really loads it.

Both are sympy expressions over the graph's size symbols; the wrapper evaluates them at
each call, so dynamic shapes are charged with the call's sizes. A kernel whose figures
would need a symbol the call does not see is left without them (charged by its arguments).
"""
from __future__ import annotations

import dataclasses

import sympy
import torch

# LoopBody ops that are data movement or bookkeeping, not arithmetic
_NOT_ARITHMETIC = frozenset({
    "load", "store", "store_reduction", "constant", "index_expr", "indirect_indexing", "masked",
    "to_dtype", "to_dtype_bitcast", "load_seed", "check_bounds", "device_assert_async", "output",
    "placeholder", "get_index", "set_indirect", "bucketize_binary_search", "partial_accumulate",
})


@dataclasses.dataclass(frozen=True)
class KernelCost:
    flops: sympy.Expr
    nbytes: sympy.Expr
    compute_class: int  # the chip's peak to charge FLOPs at: 0 fp32, 1 bf16/fp16, 2 int8


def compute_class_of(dtype: torch.dtype) -> int:
    """The runtime's compute class of a dtype (as ATen launches are charged)."""
    if dtype in (torch.bfloat16, torch.float16):
        return 1
    if dtype in (torch.int8, torch.uint8):
        return 2
    return 0


def arithmetic_ops_per_iteration(body) -> int:
    return sum(count for op, count in body.op_counts.items() if op not in _NOT_ARITHMETIC)


def fused_flops(nodes) -> sympy.Expr | None:
    """Arithmetic ops of the nodes' loop bodies times their iteration counts; a C++ template
    (a GEMM, flex attention) counts the FLOPs of the op it implements. None if unknown."""
    from torch._inductor import ir
    from torch._inductor.utils import sympy_product

    flops = sympy.Integer(0)
    for node in nodes:
        if isinstance(getattr(node, "node", None), ir.TemplateBuffer):
            template_flops = node.estimate_flops()  # the op's flop formula, at the size hints
            if template_flops is None:
                return None
            flops += template_flops
            continue
        body = getattr(node, "_body", None)
        if body is None:
            continue
        pointwise, reduction = node.get_ranges()
        flops += arithmetic_ops_per_iteration(body) * sympy_product(pointwise) * sympy_product(reduction)
    return flops


def _real_name(name: str) -> str:
    from torch._inductor.virtualized import V

    scheduler = V.graph.scheduler
    return scheduler.mutation_real_name.get(name, name) if scheduler is not None else name


def _accessed_numel(deps, name: str, numel: sympy.Expr) -> sympy.Expr:
    """Elements of ``name`` the deps can reach, at most the buffer's (as Inductor bounds it)."""
    from torch._inductor.dependencies import MemoryDep
    from torch._inductor.virtualized import V

    reached = sympy.Integer(0)
    for dep in deps:
        if _real_name(dep.name) != name:
            continue
        if not isinstance(dep, MemoryDep):
            return numel  # a whole-buffer dependency
        reached += dep.get_numel()
    if reached == 0:
        return numel
    sizevars = V.graph.sizevars
    if sizevars.statically_known_leq(reached, numel):
        return reached
    if sizevars.statically_known_leq(numel, reached):
        return numel
    return sympy.Min(reached, numel)  # decided by the call's sizes


def _buffer_numel_and_dtype(name: str):
    from torch._inductor.virtualized import V

    buf = V.graph.try_get_buffer(name)
    if buf is None:
        return None
    try:
        from torch._inductor.utils import sympy_product

        return sympy_product(buf.get_size()), buf.get_dtype()
    except (NotImplementedError, AttributeError):  # no layout (a mutation or a multi-output node)
        return None


def _used_outside(name: str, nodes) -> bool:
    """Whether a buffer the kernel writes is read after it (a graph output, a later kernel's
    input); one read only inside the kernel (softmax's row maxima) stays on chip."""
    from torch._inductor.virtualized import V

    scheduler = V.graph.scheduler
    buf = scheduler.name_to_buf.get(name) if scheduler is not None else None
    if buf is None or name in V.graph.graph_inputs:
        return True  # a graph input updated in place, or a buffer the scheduler does not track
    if not buf.users:
        return True
    inside = {id(node) for node in nodes}
    for user in buf.users:
        user_node = user.node
        fused = getattr(user_node, "get_nodes", None)
        if fused is None or not all(id(n) in inside for n in fused()):
            return True  # the graph's output, or a node of another kernel
    return False


def _memory_deps(deps):
    from torch._inductor.dependencies import WeakDep

    return [dep for dep in deps if not isinstance(dep, WeakDep)]  # weak deps only order nodes


def _loads_and_stores(node, reads, writes) -> tuple[set[str], set[str]]:
    """Buffers a node's loop body loads and stores (a mutation's dependencies on the old
    value of what it overwrites are no load)."""
    from torch._inductor.loop_body import MemoryUsageType

    body = getattr(node, "_body", None)
    if body is None:
        return {_real_name(dep.name) for dep in reads}, {_real_name(dep.name) for dep in writes}
    usage = body.memory_usage

    def names(*kinds):
        return {_real_name(entry.buffer_name) for kind in kinds for entry in usage[kind] if entry.buffer_name}

    return names(MemoryUsageType.LOAD), names(MemoryUsageType.STORE, MemoryUsageType.STORE_REDUCTION)


def fused_bytes(nodes, args) -> tuple[sympy.Expr, torch.dtype | None] | None:
    """(bytes, dtype of the first output) of the kernel's global buffers, or None when one
    of them has no size to count."""
    reads, writes = [], []
    first_access: dict[str, str] = {}  # a buffer first loaded holds a value from before the kernel
    for node in nodes:
        node_reads, node_writes = _memory_deps(node.read_writes.reads), _memory_deps(node.read_writes.writes)
        reads += node_reads
        writes += node_writes
        loaded, stored = _loads_and_stores(node, node_reads, node_writes)
        for name in loaded:
            first_access.setdefault(name, "read")
        for name in stored:
            first_access.setdefault(name, "write")
    written_names = {_real_name(dep.name) for dep in writes}

    # the kernel's arguments are its global buffers; removed ones were fused away
    arguments = [*args.input_buffers,
                 *(name for name, inner in args.output_buffers.items() if isinstance(inner, str)),
                 *(name for name, inplaced in args.inplace_buffers.items() if not args._buffer_is_marked_removed(inplaced))]
    nbytes = sympy.Integer(0)
    first_output_dtype = None
    for name in dict.fromkeys(arguments):
        if name.startswith("seed"):
            continue  # the random seed: a few bytes
        read = name in args.input_buffers or first_access.get(name) == "read"
        written = name in written_names and _used_outside(name, nodes)
        if not (read or written):
            continue
        numel_and_dtype = _buffer_numel_and_dtype(name)
        if numel_and_dtype is None:
            return None
        numel, dtype = numel_and_dtype
        if read:
            nbytes += dtype.itemsize * _accessed_numel(reads, name, numel)
        if written:
            nbytes += dtype.itemsize * _accessed_numel(writes, name, numel)
            first_output_dtype = first_output_dtype or dtype
    return nbytes, first_output_dtype


def fused_kernel_cost(nodes, args) -> KernelCost | None:
    """The cost of the C++ kernel made of ``nodes`` (scheduler nodes) with ``args``
    (its KernelArgs), or None when it cannot be worked out."""
    from torch._inductor.virtualized import V

    nodes = [node for group in nodes for node in group.get_nodes()]  # a template's fused epilogues
    counted = fused_bytes(nodes, args)
    if counted is None:
        return None
    nbytes, dtype = counted
    flops = fused_flops(nodes)
    if flops is None:
        return None
    simplify = V.graph.sizevars.simplify
    flops, nbytes = simplify(flops), simplify(nbytes)
    # the call can evaluate only symbols it passes to the kernel as sizes
    passed = set().union(*(sympy.sympify(expr).free_symbols for expr in args.sizevars)) if args.sizevars else set()
    if not (flops.free_symbols | nbytes.free_symbols) <= passed:
        return None
    return KernelCost(flops, nbytes, compute_class_of(dtype) if dtype is not None else 0)
