// Simulated time of the backend's collectives (see csrc/simulation/CollectiveCost.h).
#pragma once

#include <ATen/ATen.h>

#include "distributed/Wire.h"

namespace torch_npu_sim::dist {

// Charges the alpha-beta time of the algorithm `kind` runs on `numel` elements (as next_op
// receives them) among `world` ranks to the current stream of `like`'s npusim device; nothing
// for CPU tensors or while the cost model is off.
void charge_collective_cost(OpKind kind, const at::Tensor& like, uint64_t numel, int world);

}  // namespace torch_npu_sim::dist
