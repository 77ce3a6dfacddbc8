// Python bindings of fault injection (torch_npu_sim.distributed.faults).
#pragma once

#include <Python.h>

namespace torch_npu_sim {
void initFaultBindings(PyObject* module);
}
