// Glue only (no torch headers): the rules live in distributed/FaultInjection.cpp. Bad
// specs raise std::invalid_argument, which pybind11 turns into ValueError.
#include "python/FaultBindings.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "distributed/FaultInjection.h"

namespace py = pybind11;

namespace torch_npu_sim {

void initFaultBindings(PyObject* module) {
  using namespace torch_npu_sim::dist;
  py::module m = py::reinterpret_borrow<py::module>(module);
  // Each call first loads NPUSIM_FAULTS, so that clear() and the listing see its rules.
  m.def("_faults_add", [](const std::string& spec, const std::string& source) {
    load_fault_env_once();
    return add_faults(spec, source);
  });
  m.def("_faults_check", &check_fault_spec);
  m.def("_faults_remove", [](int id) { return remove_fault(id); });
  m.def("_faults_clear", [] {
    load_fault_env_once();
    clear_faults();
  });
  m.def("_faults_list", [] {
    load_fault_env_once();
    py::list out;
    for (const FaultRuleState& r : list_faults()) {
      py::dict d;
      d["id"] = r.id;
      d["spec"] = r.spec;
      d["matched"] = r.matched;
      d["fired"] = r.fired;
      out.append(d);
    }
    return out;
  });
  m.def("_faults_set_step", &set_fault_step);
  m.def("_faults_step", &fault_step);
  m.def("_checksum_from_env", &checksum_from_env);
}

}  // namespace torch_npu_sim
