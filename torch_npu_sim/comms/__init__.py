"""TorchComms-style communicators on npusim's collective engine.

The names and semantics follow TorchComms (meta-pytorch/torchcomms), so code written for
it ports by changing the import::

    from torch_npu_sim import comms as torchcomms_api
    comm = torchcomms_api.new_comm("npusim", torch.device("npusim"), name="main")
    comm.all_reduce(t, torchcomms_api.ReduceOp.SUM, async_op=False)
    work = comm.all_gather_single(out, t, async_op=True); work.wait()
    sub = comm.split([0, 1], "pair")          # collective over comm
    comm.abort(); comm.finalize()

Provided: ``new_comm``; ``TorchComm`` with get_rank/get_size/get_name/get_device/
get_backend/get_options/set_timeout, send, recv, batch_op_create (BatchSendRecv),
broadcast, all_reduce, reduce, all_gather, all_gather_v, all_gather_single,
reduce_scatter, reduce_scatter_single, all_to_all_single, all_to_all_v_single,
all_to_all, barrier, scatter, gather, gather_single (each with ``async_op``, and
``hints``/``timeout`` keywords), split, abort, is_aborted, is_abort_supported,
register_abort_hook, finalize, get_init_handle, reconfigure; ``TorchWork`` (wait,
wait_blocking, is_completed, and status() -> ``WorkStatus``); ``ReduceOp``/``RedOpType``.

Beyond TorchComms: ``TorchWork.wait(timeout)`` bounds one wait (expiry: TIMEDOUT, the
communicator aborts) and ``TorchWork.exception()``.

Not provided: reduce_scatter_v, windows (new_window, put/signal), persistent all-gather
(all_gather_p_*), pre/post operation hooks, memory allocator and tensor registration,
the functional/DeviceMesh/distwrap layers, backend registration (the only backend is
"npusim"), and the streams semantics of GPU backends (work runs on the host; wait()
always blocks the calling thread). ``hints`` are accepted and ignored.
"""
from .collectives import BatchSendRecv, P2POp, P2POpType
from .comm import CommOptions, TorchComm, new_comm
from .work import RedOpType, ReduceOp, TorchWork, WorkStatus

InitHandle = str

__all__ = ["new_comm", "TorchComm", "TorchWork", "WorkStatus", "ReduceOp", "RedOpType", "CommOptions",
           "BatchSendRecv", "P2POp", "P2POpType", "InitHandle"]
