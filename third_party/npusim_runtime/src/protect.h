// Protected device memory (NPUSIM_PROTECT_MEMORY=1), used by memory.cpp; see protect.cpp.
#pragma once

#include <cstddef>

namespace npusim_rt {

bool protect_enabled();
// A page-aligned mapping, inaccessible outside device-access scopes; nullptr on failure.
void* protected_alloc(size_t size, int device);
void protected_free(void* ptr);

}  // namespace npusim_rt
