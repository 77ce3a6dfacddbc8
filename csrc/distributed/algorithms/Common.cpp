#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void exchange_descriptors(CollectiveContext& c, std::vector<Transfer>& transfers) {
  for (int p = 0; p < c.world(); ++p) {
    if (p == c.rank()) continue;
    transfers.push_back(c.comm.ack_to(p, c.op));
    transfers.push_back(c.comm.ack_from(p, c.op));
  }
}

std::vector<Span> split(void* data, size_t numel, size_t esize, int parts) {
  std::vector<Span> out(parts);
  size_t base = numel / parts, extra = numel % parts, offset = 0;
  for (int i = 0; i < parts; ++i) {
    size_t n = base + (static_cast<size_t>(i) < extra ? 1 : 0);
    out[i] = {static_cast<char*>(data) + offset * esize, n};
    offset += n;
  }
  return out;
}

}  // namespace torch_npu_sim::dist
