// Collective algorithms over a Communicator, one per file. Buffers are raw host memory
// (npusim device memory is host memory); the backend flattens tensors before calling.
//
// All are "direct": each step sends to and receives from every peer at once over the
// pair streams, which suits the few ranks of one host and keeps every step a single
// round of messages. Large all-reduce, all-gather and reduce-scatter among the ranks of
// one host read their peers' device memory in place instead (PeerMemory.h). Reductions combine in a fixed order, and each element is reduced
// on exactly one rank, so every rank ends with bit-identical results.
#pragma once

#include <c10/util/Exception.h>

#include <vector>

#include "distributed/Communicator.h"

namespace torch_npu_sim::dist {

// all_reduce up to this size runs direct (every rank reduces everything); larger ones as
// reduce-scatter then all-gather. The simulated cost model (SimCost.cpp) follows it.
constexpr size_t kAllReduceDirectMaxBytes = 64 << 10;

struct Span {
  void* data = nullptr;
  size_t numel = 0;
};

struct CollectiveContext {
  Communicator& comm;
  OpDesc op;
  c10::ScalarType dtype;
  Clock::time_point deadline;

  size_t esize() const { return c10::elementSize(dtype); }
  size_t bytes(const Span& s) const { return s.numel * esize(); }
  OpDesc at_step(uint8_t step) const {
    OpDesc o = op;
    o.step = step;
    return o;
  }
  int rank() const { return comm.rank(); }
  int world() const { return comm.world(); }
};

// Rooted collectives move data between the root and each rank only, so every rank also
// swaps an empty message with every peer: each then knows what all the others called,
// and a mismatch (kind, size, dtype, root) fails on every rank, not only the root.
void exchange_descriptors(CollectiveContext& c, std::vector<Transfer>& transfers);

// Splits `numel` elements into `parts` contiguous pieces whose sizes differ by at most 1.
std::vector<Span> split(void* data, size_t numel, size_t esize, int parts);

void broadcast(CollectiveContext& c, Span buffer, int root);
void all_reduce(CollectiveContext& c, Span buffer);  // in place
void reduce(CollectiveContext& c, Span buffer, int root);  // result in place on root
void all_gather(CollectiveContext& c, Span input, const std::vector<Span>& outputs);
void gather(CollectiveContext& c, Span input, const std::vector<Span>& outputs, int root);
void scatter(CollectiveContext& c, const std::vector<Span>& inputs, Span output, int root);
// inputs[r] is reduced across ranks into rank r's output.
void reduce_scatter(CollectiveContext& c, const std::vector<Span>& inputs, Span output);
// Through the transport only (all_reduce's fallback, which already asked for peer access).
void reduce_scatter_streamed(CollectiveContext& c, const std::vector<Span>& inputs, Span output);
void all_gather_streamed(CollectiveContext& c, Span input, const std::vector<Span>& outputs);

// Steps of the algorithms that read peers' memory in place (PeerMemory.h); the streamed
// ones use 0-2.
constexpr uint8_t kPeerHandlesStep = 10;  // and 11, the first time a group agrees on access
constexpr uint8_t kPeerReducedStep = 12;
constexpr uint8_t kPeerDoneStep = 13;
constexpr uint8_t kPeerReleaseStep = 14;
void all_to_all(CollectiveContext& c, const std::vector<Span>& inputs, const std::vector<Span>& outputs);
void barrier(CollectiveContext& c);

}  // namespace torch_npu_sim::dist
