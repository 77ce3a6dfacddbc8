#include "core/Generator.h"

#include <cstring>
#include <mutex>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Utils.h>
#include <ATen/core/Tensor.h>
#include <c10/core/TensorImpl.h>

#include "core/Runtime.h"

namespace torch_npu_sim {
namespace {

constexpr uint64_t kDefaultSeed = 67280421310721ULL;  // the same default as CUDA's

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

NpuSimGenerator::NpuSimGenerator(c10::DeviceIndex device)
    : c10::GeneratorImpl(c10::Device(c10::DeviceType::PrivateUse1, device),
                         c10::DispatchKeySet(c10::DispatchKey::PrivateUse1)),
      seed_(kDefaultSeed) {}

void NpuSimGenerator::set_current_seed(uint64_t seed) {
  seed_ = seed;
  offset_ = 0;
}
void NpuSimGenerator::set_offset(uint64_t offset) { offset_ = offset; }
uint64_t NpuSimGenerator::get_offset() const { return offset_; }
uint64_t NpuSimGenerator::current_seed() const { return seed_; }
uint64_t NpuSimGenerator::seed() {
  set_current_seed(c10::detail::getNonDeterministicRandom());
  return seed_;
}

void NpuSimGenerator::set_state(const c10::TensorImpl& new_state) {
  TORCH_CHECK(new_state.dtype() == caffe2::TypeMeta::Make<uint8_t>() && new_state.numel() == 16 &&
                  new_state.device().is_cpu() && new_state.is_contiguous(),
              "npusim RNG state must be a contiguous 16-byte torch.uint8 CPU tensor (seed | offset), got ",
              new_state.numel(), " elements of ", new_state.dtype());
  uint64_t words[2];
  std::memcpy(words, new_state.data(), sizeof(words));
  seed_ = words[0];
  offset_ = words[1];
}

c10::intrusive_ptr<c10::TensorImpl> NpuSimGenerator::get_state() const {
  auto state = at::detail::empty_cpu({16}, at::kByte, std::nullopt, std::nullopt, std::nullopt, std::nullopt);
  uint64_t words[2] = {seed_, offset_};
  std::memcpy(state.data_ptr(), words, sizeof(words));
  return state.getIntrusivePtr();
}

at::Generator NpuSimGenerator::next_cpu_generator(uint64_t numel) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t offset = offset_;
  offset_ += offsets_for(numel);
  return cpu_generator_at(seed_, offset);
}

uint64_t NpuSimGenerator::offsets_for(uint64_t numel) {
  return std::max<uint64_t>(4, (numel + 3) / 4 * 4);  // philox-style: 4 values per step
}

at::Generator NpuSimGenerator::cpu_generator_at(uint64_t seed, uint64_t offset) {
  return at::make_generator<at::CPUGeneratorImpl>(splitmix64(seed ^ splitmix64(offset)));
}

std::pair<uint64_t, uint64_t> NpuSimGenerator::reserve_offsets(uint64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::pair<uint64_t, uint64_t> now{seed_, offset_};
  offset_ += count;
  return now;
}

NpuSimGenerator* NpuSimGenerator::clone_impl() const {
  auto* copy = new NpuSimGenerator(device().index());
  copy->seed_ = seed_;
  copy->offset_ = offset_;
  return copy;
}

const at::Generator& default_generator(c10::DeviceIndex device) {
  static std::once_flag once;
  static std::vector<at::Generator> generators;
  std::call_once(once, [] {
    for (int i = 0; i < device_count(); ++i)
      generators.push_back(at::make_generator<NpuSimGenerator>(static_cast<c10::DeviceIndex>(i)));
  });
  if (device < 0) device = static_cast<c10::DeviceIndex>(current_device());
  check_device_index(device);
  return generators[device];
}

at::Generator new_generator(c10::DeviceIndex device) {
  if (device < 0) device = static_cast<c10::DeviceIndex>(current_device());
  check_device_index(device);
  return at::make_generator<NpuSimGenerator>(device);
}

}  // namespace torch_npu_sim
