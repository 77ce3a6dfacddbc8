// The zero-copy fallback: every ATen op without a native npusim kernel runs its CPU
// kernel on CPU aliases of the npusim arguments (same bytes, no copy). Outputs allocated
// by the kernel already live in npusim memory (AllocateOnNpuSim) and are adopted as
// npusim tensors; outputs that alias an argument come back as views of its npusim storage.
#include <atomic>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/op_registration/op_registration.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "aten/CpuAlias.h"
#include "aten/Fallback.h"
#include "core/Allocator.h"
#include "core/Generator.h"
#include "core/Runtime.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"
#include "simulation/CostOnly.h"
#include "simulation/OpCost.h"

namespace torch_npu_sim {
namespace {

using c10::IValue;

constexpr auto kNpu = c10::DeviceType::PrivateUse1;

struct AliasedStorage {
  c10::StorageImpl* original;
  c10::intrusive_ptr<c10::StorageImpl> alias;
};

struct AliasedTensor {
  at::Tensor original;
  at::Tensor alias;
};

class FallbackCall {
 public:
  explicit FallbackCall(const c10::OperatorHandle& op) : op_(op) {}

  void run(torch::jit::Stack* stack) {
    const auto& schema = op_.schema();
    const size_t num_args = schema.arguments().size();
    auto args = torch::jit::last(*stack, num_args);
    for (size_t i = 0; i < num_args; ++i) inspect(args[i], schema.arguments()[i]);
    check_devices();
    TORCH_CHECK(device_ >= 0 || !saw_cpu_tensor_, "internal: npusim fallback reached without npusim arguments for ",
                schema.name());
    if (device_ < 0) device_ = static_cast<c10::DeviceIndex>(current_device());
    if (graphs::capture_underway() && graphs::current_stream_capturing(device_)) {
      graphs::record_call(op_, stack, device_);  // recorded, not run: replay runs it
      return;
    }

    if (simulation::cost_only()) {
      simulation::run_without_values(op_, stack, device_);
      return;
    }

    // the simulated cost, only while simulation wants it (the hot path stays free)
    std::optional<simulation::OpCost> cost;
    if (simulation_costs_wanted()) cost.emplace(schema, args);

    const size_t first = stack->size() - num_args;
    for (size_t i = 0; i < num_args; ++i) convert_argument((*stack)[first + i], schema.arguments()[i]);

    {
      c10::OptionalDeviceGuard guard;
      if (current_device() != device_) guard.reset_device(c10::Device(kNpu, device_));
      AllocateOnNpuSim allocate_here(device_);
      launch_on_stream(
          device_,
          [&] {
            op_.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::CPU), stack);
            if (cost) cost->add_results(torch::jit::last(*stack, schema.returns().size()));
          },
          cost ? cost->get() : nullptr);
    }

    sync_back_mutated_arguments();
    const size_t num_returns = schema.returns().size();
    for (size_t i = stack->size() - num_returns; i < stack->size(); ++i) (*stack)[i] = convert_output((*stack)[i]);
  }

 private:
  void note_tensor(const at::Tensor& t, bool cpu_allowed = false) {
    if (!t.defined()) return;
    max_numel_ = std::max<uint64_t>(max_numel_, static_cast<uint64_t>(t.numel()));
    auto dev = t.device();
    if (dev.type() == kNpu) {
      if (device_ < 0) device_ = dev.index();
      else if (dev.index() != device_) conflict_ = dev;
    } else if (dev.type() == c10::kCPU) {
      // A 0-dim CPU tensor is a scalar and mixes with any device, as in CUDA; so do CPU
      // index tensors (Tensor?[] of index / index_put_).
      if (t.dim() != 0 && !cpu_allowed) saw_cpu_tensor_ = true;
    } else {
      conflict_ = dev;
    }
  }

  void inspect(const IValue& v, const c10::Argument& arg) {
    if (v.isTensor()) {
      note_tensor(v.toTensor());
    } else if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorList()) note_tensor(t);
    } else if (v.isList()) {
      bool indices = arg.type()->kind() == c10::TypeKind::ListType &&
                     arg.type()->castRaw<c10::ListType>()->getElementType()->kind() == c10::TypeKind::OptionalType;
      for (const IValue& e : v.toListRef()) if (e.isTensor()) note_tensor(e.toTensor(), indices);
    } else if (v.isDevice() && v.toDevice().type() == kNpu) {
      auto index = v.toDevice().has_index() ? v.toDevice().index() : static_cast<c10::DeviceIndex>(current_device());
      if (device_ < 0) device_ = index;
    }
  }

  void check_devices() {
    const char* name = op_.schema().name().c_str();
    if (conflict_.has_value() && device_ >= 0)
      TORCH_CHECK(false, "Expected all tensors to be on the same device, but found at least two devices, ",
                  c10::Device(kNpu, device_), " and ", *conflict_, "! (when checking arguments for ", name, ")");
    if (saw_cpu_tensor_ && device_ >= 0)
      TORCH_CHECK(false, "Expected all tensors to be on the same device, but found at least two devices, ",
                  c10::Device(kNpu, device_), " and cpu! (when checking arguments for ", name, ")");
    if (device_ >= 0) check_device_index(device_);
  }

  at::Tensor to_cpu(const at::Tensor& t) {
    if (!t.defined() || t.device().type() != kNpu) return t;
    auto* storage = t.storage().unsafeGetStorageImpl();
    c10::intrusive_ptr<c10::StorageImpl> alias;
    for (const auto& s : storages_) if (s.original == storage) alias = s.alias;
    if (!alias) {
      alias = cpu_alias_storage(t.storage());
      storages_.push_back({storage, alias});
    }
    at::Tensor cpu = tensor_on_storage(c10::Storage(alias), c10::DispatchKey::CPU, t);
    tensors_.push_back({t, cpu});
    return cpu;
  }

  void convert_argument(IValue& v, const c10::Argument& arg) {
    if (v.isTensor()) {
      v = to_cpu(v.toTensor());
    } else if (v.isTensorList()) {
      auto list = v.toTensorList();
      c10::List<at::Tensor> cpu;
      cpu.reserve(list.size());
      for (const at::Tensor& t : list) cpu.push_back(to_cpu(t));
      v = cpu;
    } else if (v.isList() && arg.type()->kind() == c10::TypeKind::ListType) {
      auto elem = arg.type()->castRaw<c10::ListType>()->getElementType();
      if (elem->kind() == c10::TypeKind::OptionalType) {  // Tensor?[] (index, index_put_)
        c10::List<std::optional<at::Tensor>> cpu;
        for (const IValue& e : v.toListRef())
          cpu.push_back(e.isTensor() ? std::optional<at::Tensor>(to_cpu(e.toTensor())) : std::nullopt);
        v = cpu;
      }
    } else if (v.isDevice() && v.toDevice().type() == kNpu) {
      v = c10::Device(c10::kCPU);
    } else if (is_generator_argument(arg)) {
      v = cpu_generator(v);
    }
  }

  static bool is_generator_argument(const c10::Argument& arg) {
    auto type = arg.type();
    if (type->kind() == c10::TypeKind::OptionalType) type = type->castRaw<c10::OptionalType>()->getElementType();
    return type->kind() == c10::TypeKind::GeneratorType;
  }

  // A random op draws from a CPU generator keyed by the npusim generator's (seed, offset).
  IValue cpu_generator(const IValue& v) {
    at::Generator source;
    if (v.isNone()) {
      source = default_generator(device_);
    } else {
      source = v.toGenerator();
      TORCH_CHECK(source.device().type() == kNpu, "Expected a 'npusim' device type for generator but found '",
                  source.device().type(), "'");
    }
    return source.get<NpuSimGenerator>()->next_cpu_generator(max_numel_);
  }

  // in-place and out= kernels may have resized or re-strided their CPU aliases
  void sync_back_mutated_arguments() {
    for (auto& s : storages_) {
      if (s.alias->data() == s.original->data() && s.alias->nbytes() == s.original->nbytes()) continue;
      c10::DataPtr moved = s.alias->set_data_ptr(c10::DataPtr(nullptr, c10::Device(c10::kCPU)));
      if (moved.get() != nullptr && !CachingAllocator::owns(moved)) {
        TORCH_INTERNAL_ASSERT(false, "npusim fallback: kernel replaced an argument's memory with foreign memory");
      }
      auto device = s.original->device();
      if (moved.get() != nullptr) moved.unsafe_set_device(device);
      else moved = c10::DataPtr(nullptr, device);
      s.original->set_data_ptr_noswap(std::move(moved));
      s.original->set_nbytes(s.alias->nbytes());
      // later outputs that still point at the alias storage must see the new bytes
      s.alias->set_data_ptr_noswap(c10::DataPtr(s.original->mutable_data(), c10::Device(c10::kCPU)));
      s.alias->set_nbytes(s.original->nbytes());
    }
    for (auto& t : tensors_) {
      auto* orig = t.original.unsafeGetTensorImpl();
      auto* alias = t.alias.unsafeGetTensorImpl();
      if (orig->sizes() != alias->sizes() || orig->strides() != alias->strides() ||
          orig->storage_offset() != alias->storage_offset())
        orig->set_sizes_and_strides(alias->sizes(), alias->strides(), alias->storage_offset());
    }
  }

  at::Tensor output_tensor(const at::Tensor& out) {
    if (!out.defined() || out.device().type() == kNpu) return out;
    // npusim memory holds dense tensors only: a quantized, sparse or nested result would
    // silently lose what makes it so
    TORCH_CHECK_NOT_IMPLEMENTED(out.layout() == c10::kStrided && !out.is_quantized() && !out.is_nested(),
                                "npusim supports dense (strided, non-quantized) tensors only, but ", op_.schema().name(),
                                " returns a ", out.is_quantized() ? "quantized" : out.is_nested() ? "nested" : "sparse",
                                " tensor; run it on the CPU");
    auto* impl = out.unsafeGetTensorImpl();
    for (const auto& t : tensors_)
      if (t.alias.unsafeGetTensorImpl() == impl) return t.original;  // in-place / out=: the argument itself
    auto* storage = out.storage().unsafeGetStorageImpl();
    for (const auto& s : storages_)  // a view of an argument
      if (s.alias.get() == storage)
        return tensor_on_storage(c10::Storage(c10::intrusive_ptr<c10::StorageImpl>::reclaim_copy(s.original)),
                                 c10::DispatchKey::PrivateUse1, out);
    return adopt_as_npusim(out, device_);
  }

  IValue convert_output(const IValue& v) {
    if (v.isTensor()) return output_tensor(v.toTensor());
    if (v.isTensorList()) {
      c10::List<at::Tensor> out;
      out.reserve(v.toTensorList().size());
      for (const at::Tensor& t : v.toTensorList()) out.push_back(output_tensor(t));
      return out;
    }
    return v;
  }

  const c10::OperatorHandle& op_;
  c10::DeviceIndex device_ = -1;
  std::optional<c10::Device> conflict_;
  bool saw_cpu_tensor_ = false;
  uint64_t max_numel_ = 0;
  c10::SmallVector<AliasedStorage, 4> storages_;
  c10::SmallVector<AliasedTensor, 4> tensors_;
};

std::atomic<uint64_t> fallback_calls{0};

void npusim_fallback(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  fallback_calls.fetch_add(1, std::memory_order_relaxed);
  route_new_ops_if_noted();  // operators defined since the last call (OpRouting.cpp)
  FallbackCall(op).run(stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&npusim_fallback>());
}

// Ops whose only kernel is a CompositeExplicitAutograd one that checks for CPU/CUDA/XPU
// itself: on CPU aliases they run as on the CPU.
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("mode.values", torch::CppFunction::makeFromBoxedFunction<&npusim_fallback>());
}

uint64_t fallback_call_count() { return fallback_calls.load(std::memory_order_relaxed); }

torch::CppFunction npusim_fallback_function() {
  return torch::CppFunction::makeFromBoxedFunction<&npusim_fallback>();
}

}  // namespace torch_npu_sim
