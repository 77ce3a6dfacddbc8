"""torchft on npusim (the ``torchft`` extra, torchft==0.2.0: ``bash scripts/install_torchft.sh``).

    from torchft import Manager
    from torch_npu_sim.integrations.torchft import DistributedDataParallel, ProcessGroupNpuSim

    manager = Manager(pg=ProcessGroupNpuSim(), min_replica_size=1, ...)
    model = DistributedDataParallel(manager, model.to("npusim"))

``ProcessGroupNpuSim`` is torchft's reconfigurable process group over npusim's c10d backend:
torchft's Manager and Lighthouse then run DDP (and HSDP: FSDP2 inside a replica group on
the ``npusim`` c10d backend, ``manager.allreduce`` across groups) replica groups on npusim
devices, and a replica group that dies is healed from a peer when it comes back.
``DistributedDataParallel`` is torchft's, with a communication hook that survives a step in
which a peer died (see ``ddp.py``).
"""
from .ddp import DistributedDataParallel
from .process_group import BACKEND_NAME, ProcessGroupNpuSim

__all__ = ["BACKEND_NAME", "DistributedDataParallel", "ProcessGroupNpuSim"]
