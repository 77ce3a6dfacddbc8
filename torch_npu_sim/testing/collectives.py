"""One call of a program on one group (rank-worker side): the torch.distributed call of
each collective kind and form, with the tensors a Maker made, and what to compare after.

The gloo reference runs the very same torch.distributed call on plain CPU tensors; gloo
has no PREMUL_SUM, so there the inputs are premultiplied and summed instead."""
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .programs import KINDS, Call
from .tensors import Maker


@dataclass
class Launched:
    works: list = field(default_factory=list)  # handles to wait for (async calls)
    outputs: list = field(default_factory=list)  # tensors to compare with the reference
    inputs: list = field(default_factory=list)  # (tensor, values it must still hold)


class CallContext:
    """What a kind's launcher needs: this rank, the group, the tensors' maker."""

    def __init__(self, call: Call, world: int, rank: int, group, maker: Maker, reference: bool, async_op: bool):
        self.call, self.world, self.rank, self.group, self.maker = call, world, rank, group, maker
        self.reference, self.async_op = reference, async_op
        self.n = call.numel
        self.launched = Launched()
        premul = call.op == "PREMUL_SUM"
        self.scale = call.factor if premul and reference else None
        if call.op is None:
            self.op = None
        elif premul and not reference:
            self.op = dist._make_nccl_premul_sum(call.factor)
        else:
            self.op = dist.ReduceOp.SUM if premul else getattr(dist.ReduceOp, call.op)

    def inputs(self, numels, first_index=0, flat=False, in_out=False):
        """Input tensors; unless `in_out`, each must still hold its values after the call."""
        ts = self.maker.inputs(numels, first_index, flat, scale=self.scale)
        if not in_out:
            self.launched.inputs.extend((t, t.detach().cpu().clone()) for t in ts)
        return ts

    def outputs(self, numels, flat=False):
        return self.maker.outputs(numels, flat)

    def done(self, work, outputs):
        if work is not None:
            self.launched.works.append(work)
        self.launched.outputs.extend(outputs)
        return self.launched


def split_matrix(call: Call, world: int, allow_zero: bool) -> list[list[int]]:
    """Elements rank r sends to rank p (uneven; some empty where allowed), about `numel` a rank."""
    g = torch.Generator().manual_seed(call.seed + 17)
    hi = max(1, 2 * call.numel // world)
    m = torch.randint(0 if allow_zero else 1, hi + 1, (world, world), generator=g)
    m.fill_diagonal_(1).add_(torch.diag(torch.randint(0, hi, (world,), generator=g)))
    return m.tolist()


def _coalesced(c: CallContext, issue):
    with dist._coalescing_manager(group=c.group, async_ops=True) as cm:
        issue()
    cm.wait()


def all_reduce(c):
    (t,) = c.inputs([c.n], in_out=True)
    return c.done(dist.all_reduce(t, op=c.op, group=c.group, async_op=c.async_op), [t])


def all_reduce_coalesced(c):
    ts = c.inputs([c.n, c.n // 2 + 1, 3], in_out=True)
    return c.done(dist.all_reduce_coalesced(ts, op=c.op, group=c.group), ts)


def coalesced_all_reduce(c):
    ts = c.inputs([c.n, c.n // 2 + 1], in_out=True)
    _coalesced(c, lambda: [dist.all_reduce(t, op=c.op, group=c.group) for t in ts])
    return c.done(None, ts)


def reduce_scatter(c):
    ins = c.inputs([c.n] * c.world)
    (out,) = c.outputs([c.n])
    return c.done(dist.reduce_scatter(out, ins, op=c.op, group=c.group, async_op=c.async_op), [out])


def reduce_scatter_tensor(c):
    (inp,) = c.inputs([c.world * c.n], flat=True)
    (out,) = c.outputs([c.n], flat=True)
    return c.done(dist.reduce_scatter_tensor(out, inp, op=c.op, group=c.group, async_op=c.async_op), [out])


def coalesced_reduce_scatter_tensor(c):
    sizes = [c.n, c.n // 2 + 1]
    ins = c.inputs([c.world * s for s in sizes], flat=True)
    outs = c.outputs(sizes, flat=True)
    _coalesced(c, lambda: [dist.reduce_scatter_tensor(o, i, op=c.op, group=c.group) for o, i in zip(outs, ins)])
    return c.done(None, outs)


def all_gather(c):
    (inp,) = c.inputs([c.n])
    outs = c.outputs([c.n] * c.world)
    return c.done(dist.all_gather(outs, inp, group=c.group, async_op=c.async_op), outs)


def all_gather_into_tensor(c):
    (inp,) = c.inputs([c.n], flat=True)
    (out,) = c.outputs([c.world * c.n], flat=True)
    return c.done(dist.all_gather_into_tensor(out, inp, group=c.group, async_op=c.async_op), [out])


def all_gather_into_tensor_in_place(c):
    (out,) = c.outputs([c.world * c.n], flat=True)
    inp = out[c.rank * c.n:(c.rank + 1) * c.n]
    (values,) = c.maker.inputs([c.n], flat=True)  # this rank's shard, copied into the output
    inp.copy_(values)
    return c.done(dist.all_gather_into_tensor(out, inp, group=c.group, async_op=c.async_op), [out])


def coalesced_all_gather_into_tensor(c):
    sizes = [c.n, c.n // 2 + 1]
    ins = c.inputs(sizes, flat=True)
    outs = c.outputs([c.world * s for s in sizes], flat=True)
    _coalesced(c, lambda: [dist.all_gather_into_tensor(o, i, group=c.group) for o, i in zip(outs, ins)])
    return c.done(None, outs)


def all_gather_coalesced(c):
    sizes = [c.n, c.n // 2 + 1]
    ins = c.inputs(sizes)
    outs = [c.outputs(sizes) for _ in range(c.world)]  # outs[r][i]: input i of rank r
    dist.all_gather_coalesced(outs, ins, group=c.group)
    return c.done(None, [t for per_rank in outs for t in per_rank])


def broadcast(c):
    (t,) = c.inputs([c.n], in_out=True)
    return c.done(dist.broadcast(t, src=c.call.root, group=c.group, async_op=c.async_op), [t])


def reduce(c):
    root = c.call.root
    # npusim leaves a non-root rank's buffer as it was; gloo may use it as scratch
    (t,) = c.inputs([c.n], in_out=c.reference or c.rank == root)
    work = dist.reduce(t, dst=root, op=c.op, group=c.group, async_op=c.async_op)
    return c.done(work, [t] if c.rank == root else [])


def gather(c):
    root = c.call.root
    (inp,) = c.inputs([c.n])
    outs = c.outputs([c.n] * c.world) if c.rank == root else None
    dist.gather(inp, outs, dst=root, group=c.group)
    return c.done(None, outs or [])


def scatter(c):
    root = c.call.root
    (out,) = c.outputs([c.n])
    ins = c.inputs([c.n] * c.world) if c.rank == root else None
    dist.scatter(out, ins, src=root, group=c.group)
    return c.done(None, [out])


def all_to_all_single(c):
    m = split_matrix(c.call, c.world, allow_zero=True)
    send = [m[c.rank][p] for p in range(c.world)]
    recv = [m[p][c.rank] for p in range(c.world)]
    (inp,) = c.inputs([sum(send)], flat=True)
    (out,) = c.outputs([sum(recv)], flat=True)
    work = dist.all_to_all_single(out, inp, output_split_sizes=recv, input_split_sizes=send, group=c.group,
                                  async_op=c.async_op)
    return c.done(work, [out])


def all_to_all_single_even(c):
    (inp,) = c.inputs([c.world * c.n], flat=True)
    (out,) = c.outputs([c.world * c.n], flat=True)
    return c.done(dist.all_to_all_single(out, inp, group=c.group, async_op=c.async_op), [out])


def all_to_all(c):
    m = split_matrix(c.call, c.world, allow_zero=False)
    send = [m[c.rank][p] for p in range(c.world)]
    recv = [m[p][c.rank] for p in range(c.world)]
    ins = c.inputs(send)
    outs = c.outputs(recv)
    if c.reference:  # gloo's list form takes equal sizes only: the same exchange, flat
        flat = torch.empty((sum(recv),) + tuple(outs[0].shape[1:]), dtype=outs[0].dtype)
        dist.all_to_all_single(flat, torch.cat(ins), recv, send, group=c.group)
        for o, part in zip(outs, flat.split(recv)):
            o.copy_(part)
    else:
        dist.all_to_all(outs, ins, group=c.group)
    return c.done(None, outs)


def send_recv(c):
    # pairs (0, 1), (2, 3), ...; with an odd world the last rank sits this one out
    peer = c.rank ^ 1
    if peer >= c.world:
        return c.done(None, [])
    (send,) = c.inputs([c.n])
    (recv,) = c.outputs([c.n])
    if c.rank % 2 == 0:
        dist.send(send, dst=peer, group=c.group)
        dist.recv(recv, src=peer, group=c.group)
    else:
        dist.recv(recv, src=peer, group=c.group)
        dist.send(send, dst=peer, group=c.group)
    return c.done(None, [recv])


def batch_isend_irecv(c):
    (send,) = c.inputs([c.n])
    (recv,) = c.outputs([c.n])
    ops = [dist.P2POp(dist.isend, send, (c.rank + 1) % c.world, c.group),
           dist.P2POp(dist.irecv, recv, (c.rank - 1) % c.world, c.group)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return c.done(None, [recv])


LAUNCHERS = {name: globals()[name] for name in KINDS}


def launch(call: Call, world: int, rank: int, group, maker: Maker, reference: bool, async_op: bool) -> Launched:
    """Issues `call` on `group`; with `async_op`, returns before waiting (kinds that allow it)."""
    ctx = CallContext(call, world, rank, group, maker, reference, async_op and KINDS[call.kind][2])
    return LAUNCHERS[call.kind](ctx)
