#pragma once

namespace torch_npu_sim {
// Registers the PrivateUse1 hooks with ATen (idempotent; done at module import).
void register_hooks();
}  // namespace torch_npu_sim
