// Python bindings of the collective engine; called once from the extension's module init.
#pragma once

#include <Python.h>

namespace torch_npu_sim {
void initDistributedBindings(PyObject* module);
}
