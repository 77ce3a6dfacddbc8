// Simulated time of the backend's collectives (see csrc/simulation/CollectiveCost.h).
#pragma once

#include <ATen/ATen.h>

#include "distributed/Wire.h"

namespace torch_npu_sim::dist {

// Charges the alpha-beta time of the algorithm `kind` runs on `numel` elements (as next_op
// receives them) among `world` ranks to the current stream of `like`'s npusim device; nothing
// for CPU tensors or while the cost model is off.
void charge_collective_cost(OpKind kind, const at::Tensor& like, uint64_t numel, int world);

// The same collective's simulated ns (0 for barriers, point-to-point and CPU tensors),
// whether or not the cost model is on: torch.distributed._time_estimator's figure.
uint64_t collective_cost_ns(OpKind kind, const at::Tensor& like, uint64_t numel, int world);

}  // namespace torch_npu_sim::dist
