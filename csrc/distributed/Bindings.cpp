#include "distributed/Bindings.h"

#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/reducer_timer.hpp>
#include <torch/csrc/utils/pybind.h>

#include <mutex>

#include "distributed/ProcessGroupNpuSim.h"

namespace py = pybind11;

namespace torch_npu_sim::dist {

// DDP's timer (forward/backward/communication phases) for npusim: work on npusim runs
// on the host in issue order, so host timestamps are the device's.
class NpuSimDdpTimer : public c10d::Timer {
 public:
  explicit NpuSimDdpTimer(c10::Device) {}
  std::optional<int64_t> measureDifference(Event start, Event end) override {
    auto a = getTimestamp(start), b = getTimestamp(end);
    if (!a || !b || *b < *a) return std::nullopt;
    return *b - *a;
  }
};

}  // namespace torch_npu_sim::dist

namespace c10d {
C10_REGISTER_TYPED_CLASS(TimerRegistry, c10::kPrivateUse1, torch_npu_sim::dist::NpuSimDdpTimer);
}

namespace torch_npu_sim {

void initDistributedBindings(PyObject* module) {
  py::module m = py::reinterpret_borrow<py::module>(module);
  m.def("_init_distributed", [m]() mutable {
    if (py::hasattr(m, "ProcessGroupNpuSim")) return;
    using dist::ProcessGroupNpuSim;
    py::class_<ProcessGroupNpuSim, c10d::Backend, c10::intrusive_ptr<ProcessGroupNpuSim>>(m, "ProcessGroupNpuSim")
        .def_property_readonly("transport", &ProcessGroupNpuSim::transport_name,
                               "The transport this group uses: 'shm', 'tcp' or 'mixed' (both, per pair).")
        .def_property_readonly("peer_transports", &ProcessGroupNpuSim::peer_transports,
                               "Per group rank: how this rank reaches it, 'self', 'shm' or 'tcp'.")
        .def_property_readonly("peer_access", &ProcessGroupNpuSim::peer_access,
                               "Whether large collectives read peers' device memory in place: 'yes', 'no' "
                               "(NPUSIM_PEER_ACCESS=0, ranks on several hosts, or mapping refused), or "
                               "'unknown' until the group's first large collective on shareable memory.")
        .def_property_readonly("failed_ranks", &ProcessGroupNpuSim::failed_ranks,
                               "Group ranks named by the group's first failure ([] while healthy).")
        .def_property_readonly("health", &ProcessGroupNpuSim::health_state,
                               "'healthy', 'failed', 'aborted' or 'closed'.")
        .def("_start_time_estimate", &ProcessGroupNpuSim::start_time_estimate,
             "torch.distributed._time_estimator: collectives issued until _end_time_estimate are not run.")
        .def("_end_time_estimate", &ProcessGroupNpuSim::end_time_estimate,
             "The modelled time of the collectives issued since _start_time_estimate, in microseconds.");
    m.def(
        "_create_process_group",
        [](const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, double timeout_s, std::string name) {
          auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
          static std::once_flag at_exit;
          std::call_once(at_exit, [&] {
            // Registered with the first group, after torch's and most programs' own atexit
            // handlers, so it runs before them (atexit is last-in, first-out).
            py::gil_scoped_acquire gil;
            py::module::import("atexit").attr("register")(
                py::cpp_function(&ProcessGroupNpuSim::leave_all_groups_at_exit, py::call_guard<py::gil_scoped_release>()));
          });
          return c10::make_intrusive<ProcessGroupNpuSim>(store, rank, size, timeout, std::move(name));
        },
        py::call_guard<py::gil_scoped_release>());
  });
}

}  // namespace torch_npu_sim
