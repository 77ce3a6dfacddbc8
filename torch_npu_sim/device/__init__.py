"""``torch.npusim``: the device module, shaped like ``torch.cuda``."""
from ._device import (
    _is_in_bad_fork,
    _lazy_init,
    current_device,
    device,
    device_count,
    device_of,
    get_device_capability,
    get_device_name,
    get_device_properties,
    init,
    is_available,
    is_bf16_supported,
    is_initialized,
    launch_count,
    mem_get_info,
    set_device,
    synchronize,
    get_amp_supported_dtype,
)
from .graphs import NPUGraph, graph, graph_pool_handle, is_current_stream_capturing
from . import graphs, pools
from .memory import (
    empty_cache,
    max_memory_allocated,
    max_memory_reserved,
    memory_allocated,
    memory_reserved,
    memory_stats,
    reset_accumulated_memory_stats,
    reset_peak_memory_stats,
    sharing_stats,
)
from .random import (
    default_generators,
    get_rng_state,
    get_rng_state_all,
    initial_seed,
    manual_seed,
    manual_seed_all,
    seed,
    seed_all,
    set_rng_state,
    set_rng_state_all,
)
from .streams import Event, Stream, StreamContext, current_stream, default_stream, set_stream, stream


def __getattr__(name: str):
    # torch.cuda exposes its `_initialized` flag, and device-generic torch code reads it from
    # the device module: torch.utils.checkpoint saves and restores the device's RNG state for
    # recomputation only when `getattr(torch.<device>, "_initialized", False)` is true. The
    # flag lives in _device (it changes after import), so it is read from there.
    if name == "_initialized":
        from . import _device

        return _device._initialized
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Simulated time (torch.npusim.simulation): the chip, the streams' simulated clocks and a
# per-op breakdown; NPUSIM_CHIP and NPUSIM_SIM_TIMING are applied here, at load.
from .. import simulation  # noqa: E402
from ..simulation import sim_time, sim_time_ns  # noqa: E402

simulation._apply_environment_at_load()
