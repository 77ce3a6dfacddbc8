#include "distributed/Bindings.h"

namespace torch_npu_sim {
void initDistributedBindings(PyObject* /*module*/) {}
}  // namespace torch_npu_sim
