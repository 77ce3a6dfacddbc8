// What a graph holds: the op calls captured on its streams, each ready to run again on the
// same device addresses. Capture runs no kernel: an op's results are shaped by its meta
// kernel and allocated from the graph's pool; replay runs the CPU kernels on zero-copy
// aliases of the recorded memory, with no Python, autograd, dispatch to npusim or
// device allocation per op.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include "npusim_runtime.h"

namespace torch_npu_sim::graphs {

// A random op's draw: offsets [offset, offset + count) of generator `generator` (an index
// into Recording::generators), relative to the generator's offset when a replay starts.
struct RandomDraw {
  size_t arg;
  size_t generator;
  uint64_t offset;
};

struct Node {
  std::optional<c10::OperatorHandle> op;  // an op whose CPU kernel replay runs, or
  std::function<void()> host_fn;          // a host function replay calls again (a compiled kernel)
  std::string host_fn_name;
  torch::jit::Stack args;            // CPU aliases of device memory; host scalars by value
  std::vector<c10::IValue> targets;  // per return: where a fresh result lands (None: in place, or a view)
  std::optional<RandomDraw> draw;
  npusimKernelCost cost;
  npusimStream_t stream;

  std::string name() const { return op ? op->schema().name() : host_fn_name; }
};

struct GeneratorUse {
  at::Generator generator;
  uint64_t offsets = 0;  // consumed by one replay
};

class Recording {
 public:
  // Records the boxed call whose arguments are on top of `stack` and leaves its results
  // there, as the op would: in-place results are the arguments, fresh ones come from the
  // capture's pool (their values come with each replay).
  void record(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::DeviceIndex device,
              npusimStream_t stream);
  // Records a host function that works on device memory through raw pointers (a compiled
  // kernel): replay calls it again, with the same arguments, hence on the same memory.
  void record_host_function(std::string name, std::function<void()> fn, npusimStream_t stream);
  // Runs every node in order (inside the graph's launch). bases[i]: generators[i]'s offset.
  void replay(const std::vector<uint64_t>& seeds, const std::vector<uint64_t>& bases) const;

  std::vector<Node> nodes;
  std::vector<GeneratorUse> generators;
  std::vector<c10::Storage> keep_alive;  // memory outside the graph's pool that nodes read or write
};

}  // namespace torch_npu_sim::graphs
