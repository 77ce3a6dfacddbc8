// Python bindings of the collective engine; called once from the extension's module init.
#pragma once

#include <Python.h>

namespace torch_npu_sim {
// Adds `_init_distributed()` to the module: it binds the backend class once
// torch.distributed (and with it c10d's Python types) has been initialised.
void initDistributedBindings(PyObject* module);
}
