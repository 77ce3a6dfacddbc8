// Tensors as the collective engine sees them: contiguous host memory (npusim device
// memory is host memory). Non-contiguous tensors go through a contiguous copy, written
// back after; complex tensors travel as their real view. Shared by every collective
// adapter of ProcessGroupNpuSim.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

struct Staged {
  at::Tensor user;
  at::Tensor flat;
  Span span() const;
  void write_back() const;
};

// `scale` premultiplies (PREMUL_SUM) into a fresh contiguous copy.
Staged stage(const at::Tensor& t, bool copy_in, std::optional<double> scale = std::nullopt);
std::vector<Staged> stage_all(const std::vector<at::Tensor>& ts, bool copy_in);
std::vector<Span> spans(const std::vector<Staged>& staged);
void write_back_all(const std::vector<Staged>& staged);

// The element type and count on the wire (complex as pairs of reals).
c10::ScalarType wire_dtype(const at::Tensor& t);
uint64_t wire_numel(const at::Tensor& t);

}  // namespace torch_npu_sim::dist
