// Argument validation for the collective adapters: runs on the caller's thread before
// anything is queued or sent, so bad input is a ValueError there and costs the group nothing.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <initializer_list>
#include <optional>
#include <vector>

namespace torch_npu_sim::dist {

void check_tensor(const at::Tensor& t, const char* op);
void check_one_device(std::initializer_list<const std::vector<at::Tensor>*> lists, const char* op);
const at::Tensor& single(const std::vector<at::Tensor>& ts, const char* op);
void check_like(const at::Tensor& t, const at::Tensor& like, const char* op, const char* what);
void check_list(const std::vector<at::Tensor>& ts, const at::Tensor& like, int world, const char* op, const char* what);
void check_root(int64_t root, int world, const char* op);
void check_reduce(const at::Tensor& t, const c10d::ReduceOp& op, const char* name);
std::optional<double> premul_factor(const c10d::ReduceOp& op);

}  // namespace torch_npu_sim::dist
