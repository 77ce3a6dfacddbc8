"""torchft's DistributedDataParallel, with a communication hook that survives a failed step.

torchft 0.2.0's hook hands DDP the underlying future of ``manager.allreduce``'s work
(``fut._fut``). Once the Manager has recorded an error in a step (a peer died during an
earlier gradient bucket), ``manager.allreduce`` skips the collective and returns a plain,
completed future, which has no ``_fut``: the hook raises ``AttributeError`` and the backward
pass fails, on any backend. This hook returns that completed future instead (the step
is not committed anyway), so a model of several buckets trains through a failure.
"""
# no `from __future__ import annotations`: DDP checks the hook's annotations are the real types
import torch
import torch.distributed as dist
from torchft import ddp as torchft_ddp


class DistributedDataParallel(torchft_ddp.DistributedDataParallel):
    """``torchft.ddp.DistributedDataParallel(manager, module)`` that survives a failed step."""

    @staticmethod
    def _comm_hook(state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        work = state.allreduce(bucket.buffer())
        work.wait()
        fut = work.get_future()
        inner = getattr(fut, "_fut", None)  # a managed future's underlying one (as torchft's hook returns)
        if inner is not None:
            return inner
        if type(fut) is torch.futures.Future:  # the skipped collective's completed future
            return fut
        done = torch.futures.Future()  # a managed chain that never started: keep the local gradients
        done.set_result(bucket.buffer())
        return done
