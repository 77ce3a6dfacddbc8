// Per-device random generator. Its state is 16 bytes, seed | offset (the layout DTensor's
// RNG tracker reads and writes). Each random op draws from a fresh CPU generator keyed by
// (seed, offset) and advances the offset, so the same seed gives the same numbers.
#pragma once

#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>

namespace torch_npu_sim {

class NpuSimGenerator : public c10::GeneratorImpl {
 public:
  explicit NpuSimGenerator(c10::DeviceIndex device);

  void set_current_seed(uint64_t seed) override;
  void set_offset(uint64_t offset) override;
  uint64_t get_offset() const override;
  uint64_t current_seed() const override;
  uint64_t seed() override;
  void set_state(const c10::TensorImpl& new_state) override;
  c10::intrusive_ptr<c10::TensorImpl> get_state() const override;
  static c10::DeviceType device_type() { return c10::DeviceType::PrivateUse1; }

  // A CPU generator for one random op consuming about `numel` values.
  at::Generator next_cpu_generator(uint64_t numel);
  // The offsets a random op consuming about `numel` values takes, and the CPU generator of
  // the op drawing at (seed, offset): graph replays draw as the eager op would.
  static uint64_t offsets_for(uint64_t numel);
  static at::Generator cpu_generator_at(uint64_t seed, uint64_t offset);
  // {seed, offset} now, and the offset advanced by `count`, in one step (a graph replay's draws)
  std::pair<uint64_t, uint64_t> reserve_offsets(uint64_t count);

 private:
  NpuSimGenerator* clone_impl() const override;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

const at::Generator& default_generator(c10::DeviceIndex device);
at::Generator new_generator(c10::DeviceIndex device);

}  // namespace torch_npu_sim
