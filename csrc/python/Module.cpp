// torch_npu_sim._C: the Python face of the extension. Only glue lives here; every
// behaviour is implemented in core/, aten/ and distributed/.
#include <torch/csrc/Generator.h>
#include <torch/csrc/utils/pybind.h>

#include "core/Allocator.h"
#include "core/BlockCache.h"
#include "core/Generator.h"
#include "core/Hooks.h"
#include "core/Runtime.h"
#include "core/Stream.h"
#include "aten/Fallback.h"
#include "aten/PointwiseOps.h"
#include "distributed/Bindings.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"
#include "python/FaultBindings.h"

namespace py = pybind11;
using namespace torch_npu_sim;

namespace {

py::tuple stream_tuple(const c10::Stream& s) {
  return py::make_tuple(s.id(), s.device_index(), static_cast<int>(s.device_type()));
}

c10::DeviceIndex index_or_current(int64_t device) {
  if (device < 0) return static_cast<c10::DeviceIndex>(current_device());
  check_device_index(device);
  return static_cast<c10::DeviceIndex>(device);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "torch_npu_sim native extension";

  m.def("_init", [] {
    register_hooks();
    // Without devices (an invalid NPUSIM_* configuration, or none configured) nothing else
    // changes in the process: the CPU allocator and every op's kernels stay as they are.
    // The configuration is reported by the Python side, and on use.
    int count = 0;
    if (npusimGetDeviceCount(&count) != npusimSuccess || count == 0) return false;
    route_structured_ops_to_fallback();
    install_cpu_allocator_router();
    return true;
  });
  m.def("_fallback_calls", [] { return fallback_call_count(); });
  // graphs (torch.accelerator.Graph's implementation registers once PrivateUse1 is renamed)
  m.def("_graph_register", [] { graphs::register_graph_impl(); });
  m.def("_graph_pool_handle", [] {
    auto id = graphs::new_pool_handle();
    return py::make_tuple(id.first, id.second);
  });
  m.def("_graph_is_current_stream_capturing", [](int64_t device) {
    return graphs::current_stream_capturing(index_or_current(device));
  });
  m.def("_pool_begin_allocation", [](int64_t device, std::pair<uint64_t, uint64_t> pool) {
    auto d = index_or_current(device);
    cache().begin_pool_allocation(d, pool, runtime_stream(current_stream(d)));
  });
  m.def("_pool_end_allocation", [](int64_t device) {
    auto d = index_or_current(device);
    cache().end_pool_allocation(d, runtime_stream(current_stream(d)));
  });
  m.def("_pool_retain", [](int64_t device, std::pair<uint64_t, uint64_t> pool) {
    cache().retain_pool(index_or_current(device), pool);
  });
  m.def("_pool_release", [](int64_t device, std::pair<uint64_t, uint64_t> pool) {
    cache().release_pool(index_or_current(device), pool);
  });
  m.def("_pool_sleep", [](int64_t device, std::pair<uint64_t, uint64_t> pool, bool keep_contents) {
    return cache().sleep_pool(index_or_current(device), pool, keep_contents);
  });
  m.def("_pool_wake", [](int64_t device, std::pair<uint64_t, uint64_t> pool) {
    cache().wake_pool(index_or_current(device), pool);
  });
  m.def("_graph_pool_reserved_bytes", [](int64_t device, std::pair<uint64_t, uint64_t> pool) {
    return cache().pool_reserved_bytes(index_or_current(device), pool);
  });
  m.def("_route_new_ops", [](const std::string& name) { return route_new_ops(name); }, py::arg("name") = "");
  m.def("_unroute_op", [](const std::string& name) { return unroute_op(name); });
  m.def("_op_is_routed", [](const std::string& name) { return op_is_routed(name); });
  m.def("_route_host_kernel", [](const std::string& name) { return route_host_kernel(name); });
  m.def("_pointwise_fast_path", [] {
    auto f = pointwise_fast_path();
    py::dict d;
    d["add"] = f.add;
    d["mul"] = f.mul;
    d["div"] = f.div;
    d["calls"] = f.calls;
    return d;
  });
  m.def("_device_count", [] {
    int count = 0;
    return npusimGetDeviceCount(&count) == npusimSuccess ? count : 0;
  });
  m.def("_config_error", [] {
    const char* error = npusimGetConfigurationError();
    return std::string(error ? error : "");
  });
  m.def("_current_device", [] { return current_device(); });
  m.def("_set_device", [](int64_t device) {
    check_device_index(device);
    NPUSIM_CHECK(npusimSetDevice(static_cast<int>(device)));
  });
  m.def("_exchange_device", [](int64_t device) {
    int old = current_device();
    if (device >= 0 && device != old) {
      check_device_index(device);
      NPUSIM_CHECK(npusimSetDevice(static_cast<int>(device)));
    }
    return old;
  });
  m.def("_get_device_properties", [](int64_t device) {
    npusimDeviceProp prop;
    NPUSIM_CHECK(npusimGetDeviceProperties(&prop, static_cast<int>(index_or_current(device))));
    py::dict d;
    d["name"] = std::string(prop.name);
    d["total_memory"] = prop.totalGlobalMem;
    d["major"] = prop.major;
    d["minor"] = prop.minor;
    d["multi_processor_count"] = prop.multiProcessorCount;
    d["max_threads_per_block"] = prop.maxThreadsPerBlock;
    d["warp_size"] = prop.warpSize;
    d["L2_cache_size"] = prop.l2CacheSize;
    return d;
  });
  m.def("_mem_get_info", [](int64_t device) { return caching_allocator().getMemoryInfo(index_or_current(device)); });
  m.def("_empty_cache", [] { caching_allocator().emptyCache(); });
  // the caching allocator's sharing, for its tests (collectives call it from C++)
  m.def("_sharing_enable", [] { cache().enable_sharing(); });
  m.def("_sharing_span_shareable", [](uintptr_t ptr, size_t bytes) {
    npusimIpcMemHandle_t handle;
    return cache().share(reinterpret_cast<const void*>(ptr), bytes, &handle);
  });
  m.def("_sharing_stats", [] {
    SharingStats s = cache().sharing_stats();
    py::dict d;
    d["enabled"] = s.enabled;
    d["shareable_segments"] = s.shareable_segments;
    d["handles_exported"] = s.handles_exported;
    d["peer_mappings_open"] = s.peer_mappings_open;
    return d;
  });
  m.def("_get_default_generator", [](int64_t device) {
    return py::reinterpret_steal<py::object>(THPGenerator_initDefaultGenerator(default_generator(index_or_current(device))));
  });
  m.def("_launch_count", [](int64_t device) { return launch_count(index_or_current(device)); });
  // protected memory (NPUSIM_PROTECT_MEMORY=1): compiled kernels that take raw pointers run inside a device-access scope
  m.def("_protected_memory", [] { return npusimProtectedMemoryEnabled() != 0; });
  m.def("_device_access_openings", [] { return npusimDeviceAccessOpenings(); });
  m.def("_call_with_device_access", [](py::function fn, py::args args) {
    // while the stream captures, the kernel is recorded, not run: each replay calls it again
    // with the same arguments (its buffers are the graph's), as a CUDA graph's host node
    auto device = static_cast<c10::DeviceIndex>(current_device());
    if (graphs::capture_underway() && graphs::current_stream_capturing(device)) {
      std::shared_ptr<py::object> call(new py::object(py::make_tuple(fn, args)), [](py::object* o) {
        py::gil_scoped_acquire gil;  // graphs may be destroyed without the GIL
        delete o;
      });
      graphs::record_host_function(device, "compiled kernel " + py::str(py::getattr(fn, "__name__", py::str("?"))).cast<std::string>(), [call] {
        py::gil_scoped_acquire gil;
        auto t = call->cast<py::tuple>();
        t[0](*t[1].cast<py::tuple>());
      });
      return py::object(py::none());
    }
    npusimDeviceAccessScope scope;
    return fn(*args);
  });
  m.def("_stream_priority_range", [] {
    int least = 0, greatest = 0;
    NPUSIM_CHECK(npusimDeviceGetStreamPriorityRange(&least, &greatest));
    return py::make_tuple(least, greatest);
  });
  m.def("_current_stream", [](int64_t device) { return stream_tuple(current_stream(index_or_current(device))); });
  m.def("_default_stream", [](int64_t device) { return stream_tuple(default_stream(index_or_current(device))); });
  m.def("_set_stream", [](int64_t stream_id, int64_t device) {
    set_current_stream(c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, index_or_current(device)),
                                   stream_id));
  });
  m.def("_stream_priority", [](int64_t stream_id, int64_t device) {
    return stream_priority(c10::Stream(c10::Stream::UNSAFE,
                                       c10::Device(c10::DeviceType::PrivateUse1, index_or_current(device)), stream_id));
  });
  m.def("_is_pinned_ptr", [](uintptr_t ptr) { return is_pinned_ptr(reinterpret_cast<const void*>(ptr)); });

  initDistributedBindings(m.ptr());
  initFaultBindings(m.ptr());
}
