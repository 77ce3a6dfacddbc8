"""The communicator's data operations, with TorchComms' names and argument order.

Each maps onto one call of the c10d backend (``ProcessGroupNpuSim``), whose progress thread
runs operations in call order; ``async_op=False`` waits before returning. ``hints`` are
accepted and ignored; ``timeout`` (a timedelta) overrides the communicator's for that
operation where the c10d call takes one (not send/recv: bound those with ``wait(timeout)``).
"""
import enum
from datetime import timedelta

import torch
import torch.distributed as c10d
from torch._C._distributed_c10d import AllgatherOptions  # not re-exported by torch.distributed
import torch.distributed as dist

from .work import ReduceOp, TorchWork


def _c10d_op(op):
    if isinstance(op, ReduceOp):
        return op.to_c10d()
    if isinstance(op, (dist.ReduceOp, dist.ReduceOp.RedOpType)):
        return op
    raise TypeError(f"op must be a torch_npu_sim.comms.ReduceOp, got {op!r}")


def _options(cls, timeout, **fields):
    opts = cls()
    for k, v in fields.items():
        setattr(opts, k, v)
    if timeout is not None:
        opts.timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
    return opts


class Collectives:
    """Mixed into TorchComm, which provides ``_live(op_name)`` (the backend, or a clear
    error when the communicator cannot run operations) and ``_issue``."""

    def _issue(self, works, async_op, then=None) -> TorchWork:
        work = TorchWork(self, works, then)
        if not async_op:
            work.wait()
        return work

    # ------------------------------------------------------------- point to point
    def send(self, tensor, dst, async_op, hints=None, timeout=None):
        b = self._live("send")
        self._check_peer(dst, "dst")
        return self._issue([b.send([tensor], dst, 0)], async_op)

    def recv(self, tensor, src, async_op, hints=None, timeout=None):
        b = self._live("recv")
        self._check_peer(src, "src")
        return self._issue([b.recv([tensor], src, 0)], async_op)

    def batch_op_create(self) -> "BatchSendRecv":
        return BatchSendRecv(self)

    # ------------------------------------------------------------------ collectives
    def broadcast(self, tensor, root, async_op, hints=None, timeout=None):
        b = self._live("broadcast")
        self._check_peer(root, "root")
        opts = _options(c10d.BroadcastOptions, timeout, rootRank=root, rootTensor=0)
        return self._issue([b.broadcast([tensor], opts)], async_op)

    def all_reduce(self, tensor, op, async_op, hints=None, timeout=None):
        b = self._live("all_reduce")
        opts = _options(c10d.AllreduceOptions, timeout, reduceOp=_c10d_op(op))
        return self._issue([b.allreduce([tensor], opts)], async_op)

    def reduce(self, tensor, root, op, async_op, hints=None, timeout=None):
        b = self._live("reduce")
        self._check_peer(root, "root")
        opts = _options(c10d.ReduceOptions, timeout, reduceOp=_c10d_op(op), rootRank=root, rootTensor=0)
        return self._issue([b.reduce([tensor], opts)], async_op)

    def all_gather(self, tensor_list, tensor, async_op, hints=None, timeout=None):
        b = self._live("all_gather")
        self._check_list(tensor_list, "tensor_list")
        opts = _options(AllgatherOptions, timeout)
        return self._issue([b.allgather([list(tensor_list)], [tensor], opts)], async_op)

    def all_gather_v(self, tensor_list, tensor, async_op, hints=None, timeout=None):
        """Like all_gather, but the ranks' tensors may differ in size (one broadcast each)."""
        b = self._live("all_gather_v")
        self._check_list(tensor_list, "tensor_list")
        tensor_list[self.get_rank()].copy_(tensor)
        works = [b.broadcast([t], _options(c10d.BroadcastOptions, timeout, rootRank=r, rootTensor=0))
                 for r, t in enumerate(tensor_list)]
        return self._issue(works, async_op)

    def all_gather_single(self, output, input, async_op, hints=None, timeout=None):
        b = self._live("all_gather_single")
        return self._issue([b._allgather_base(output, input, _options(AllgatherOptions, timeout))], async_op)

    def reduce_scatter(self, output, input_list, op, async_op, hints=None, timeout=None):
        b = self._live("reduce_scatter")
        self._check_list(input_list, "input_list")
        opts = _options(c10d.ReduceScatterOptions, timeout, reduceOp=_c10d_op(op))
        return self._issue([b.reduce_scatter([output], [list(input_list)], opts)], async_op)

    def reduce_scatter_single(self, output, input, op, async_op, hints=None, timeout=None):
        b = self._live("reduce_scatter_single")
        opts = _options(c10d.ReduceScatterOptions, timeout, reduceOp=_c10d_op(op))
        return self._issue([b._reduce_scatter_base(output, input, opts)], async_op)

    def all_to_all_single(self, output, input, async_op, hints=None, timeout=None):
        b = self._live("all_to_all_single")
        opts = _options(c10d.AllToAllOptions, timeout)
        return self._issue([b.alltoall_base(output, input, [], [], opts)], async_op)

    def all_to_all_v_single(self, output, input, output_split_sizes, input_split_sizes, async_op,
                            hints=None, timeout=None):
        b = self._live("all_to_all_v_single")
        opts = _options(c10d.AllToAllOptions, timeout)
        work = b.alltoall_base(output, input, list(output_split_sizes), list(input_split_sizes), opts)
        return self._issue([work], async_op)

    def all_to_all(self, output_tensor_list, input_tensor_list, async_op, hints=None, timeout=None):
        b = self._live("all_to_all")
        self._check_list(output_tensor_list, "output_tensor_list")
        self._check_list(input_tensor_list, "input_tensor_list")
        opts = _options(c10d.AllToAllOptions, timeout)
        return self._issue([b.alltoall(list(output_tensor_list), list(input_tensor_list), opts)], async_op)

    def barrier(self, async_op, hints=None, timeout=None):
        b = self._live("barrier")
        return self._issue([b.barrier(_options(c10d.BarrierOptions, timeout))], async_op)

    def scatter(self, output_tensor, input_tensor_list, root, async_op, hints=None, timeout=None):
        b = self._live("scatter")
        self._check_peer(root, "root")
        inputs = [list(input_tensor_list)] if self.get_rank() == root else []
        opts = _options(c10d.ScatterOptions, timeout, rootRank=root)
        return self._issue([b.scatter([output_tensor], inputs, opts)], async_op)

    def gather(self, output_tensor_list, input_tensor, root, async_op, hints=None, timeout=None):
        b = self._live("gather")
        self._check_peer(root, "root")
        outputs = [list(output_tensor_list)] if self.get_rank() == root else []
        opts = _options(c10d.GatherOptions, timeout, rootRank=root)
        return self._issue([b.gather(outputs, [input_tensor], opts)], async_op)

    def gather_single(self, output, input, root, async_op, hints=None, timeout=None):
        outputs = list(output.chunk(self.get_size())) if self.get_rank() == root else []
        return self.gather(outputs, input, root, async_op, hints, timeout)

    # ---------------------------------------------------------------- validation
    def _check_peer(self, peer, what):
        size = self.get_size()
        if not isinstance(peer, int) or not 0 <= peer < size:
            raise ValueError(f"{what} must be a rank of communicator '{self.get_name()}' (0..{size - 1}), got {peer!r}")

    def _check_list(self, tensors, what):
        if len(tensors) != self.get_size():
            raise ValueError(f"{what} must hold one tensor per rank ({self.get_size()}), got {len(tensors)}")


class BatchSendRecv:
    """Point-to-point operations issued together (``comm.batch_op_create()``); sends and
    receives progress side by side, so any exchange pattern completes."""

    def __init__(self, comm):
        self._comm = comm
        self.ops = []

    def send(self, tensor: torch.Tensor, dst: int) -> None:
        self.ops.append(P2POp(P2POpType.SEND, tensor, dst))

    def recv(self, tensor: torch.Tensor, src: int) -> None:
        self.ops.append(P2POp(P2POpType.RECV, tensor, src))

    def issue(self, async_op: bool, options=None) -> TorchWork:
        b = self._comm._live("batch_op_issue")
        for op in self.ops:
            self._comm._check_peer(op.peer, "peer")
        works = [b.send([op.tensor], op.peer, 0) if op.type is P2POpType.SEND else b.recv([op.tensor], op.peer, 0)
                 for op in self.ops]
        return self._comm._issue(works, async_op)


class P2POpType(enum.Enum):
    SEND = enum.auto()
    RECV = enum.auto()


class P2POp:
    def __init__(self, type, tensor, peer):
        self.type, self.tensor, self.peer = type, tensor, peer
