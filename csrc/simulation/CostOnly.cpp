// Cost-only execution of one op: the op runs on Meta aliases of its arguments (same sizes,
// strides, offsets and storage sharing, no bytes), which gives every output's geometry and
// which outputs alias which arguments; outputs are then made on the device, the op is charged
// its cost, and nothing is computed.
#include "simulation/CostOnly.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <atomic>
#include <string>

#include "aten/CpuAlias.h"
#include "core/Allocator.h"
#include "core/Runtime.h"
#include "simulation/OpCost.h"

namespace torch_npu_sim::simulation {
namespace {

using c10::IValue;

constexpr auto kNpu = c10::DeviceType::PrivateUse1;

bool is_native_pointwise(const std::string& name) {
  for (const char* n : {"aten::add", "aten::sub", "aten::mul", "aten::div", "aten::add_", "aten::sub_", "aten::mul_",
                        "aten::div_"})
    if (name == n) return true;
  return false;
}

struct Aliased {
  c10::StorageImpl* original;                 // an argument's storage
  c10::intrusive_ptr<c10::StorageImpl> meta;  // its Meta alias
};

class WithoutValues {
 public:
  WithoutValues(const c10::OperatorHandle& op, c10::DeviceIndex device) : op_(op), device_(device) {}

  void run(torch::jit::Stack* stack) {
    const auto& schema = op_.schema();
    const size_t num_args = schema.arguments().size();
    std::optional<OpCost> cost;
    if (simulation_costs_wanted()) cost.emplace(schema, torch::jit::last(*stack, num_args));
    originals_.assign(stack->end() - num_args, stack->end());
    const size_t first = stack->size() - num_args;
    for (size_t i = 0; i < num_args; ++i) (*stack)[first + i] = to_meta((*stack)[first + i], schema.arguments()[i]);
    metas_.assign(stack->end() - num_args, stack->end());
    try {
      op_.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::Meta), stack);
    } catch (const c10::Error& e) {
      refuse(e.msg());
    } catch (const std::exception& e) {
      refuse(e.what());
    }
    c10::OptionalDeviceGuard guard;
    if (current_device() != device_) guard.reset_device(c10::Device(kNpu, device_));
    update_mutated_arguments();
    const size_t num_returns = schema.returns().size();
    for (size_t i = stack->size() - num_returns; i < stack->size(); ++i) (*stack)[i] = from_meta((*stack)[i]);
    if (cost) cost->add_results(torch::jit::last(*stack, num_returns));
    const npusimKernelCost* charged = cost ? cost->get() : nullptr;
    npusimKernelCost pointwise{};
    if (cost && is_native_pointwise(schema.name()) && originals_.size() >= 2 && originals_[0].isTensor()) {
      // as the native pointwise kernels charge themselves (PointwiseOps.cpp)
      const IValue& b = originals_[1];
      pointwise = pointwise_cost(schema.name().c_str(), originals_[0].toTensor(), b.isTensor() ? b.toTensor() : at::Tensor(),
                                 (*stack).back().toTensor());
      charged = &pointwise;
    }
    launch_on_stream(device_, [] {}, charged);  // charged, not run
  }

 private:
  [[noreturn]] void refuse(const std::string& why) {
    std::string first_line = why.substr(0, why.find('\n'));
    TORCH_CHECK(false, "npusim cost-only mode: ", op_.schema().name(),
                " cannot run without tensor values (its Meta kernel says: ", first_line,
                "). Ops whose output shapes depend on values (nonzero, masked_select, unique, boolean-mask "
                "indexing, .item() of integers) need a real run: turn cost-only mode off for this code.");
  }

  c10::intrusive_ptr<c10::StorageImpl> meta_storage_of(c10::StorageImpl* storage) {
    for (const auto& a : aliased_)
      if (a.original == storage) return a.meta;
    auto meta = c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), storage->nbytes(),
                                                      c10::DataPtr(nullptr, c10::Device(c10::kMeta)),
                                                      c10::GetAllocator(c10::kMeta), /*resizable=*/true);
    aliased_.push_back({storage, meta});
    return meta;
  }

  at::Tensor to_meta(const at::Tensor& t) {
    if (!t.defined() || t.device().type() == c10::kMeta) return t;
    if (t.device().is_cpu() && t.dim() == 0) return t;  // a CPU scalar mixes with any device
    if (device_ < 0 && t.device().type() == kNpu) device_ = t.device().index();
    auto meta = meta_storage_of(t.storage().unsafeGetStorageImpl());
    return tensor_on_storage(c10::Storage(meta), c10::DispatchKey::Meta, t);
  }

  IValue to_meta(const IValue& v, const c10::Argument& arg) {
    if (v.isTensor()) return to_meta(v.toTensor());
    if (v.isTensorList()) {
      c10::List<at::Tensor> out;
      for (const at::Tensor& t : v.toTensorList()) out.push_back(to_meta(t));
      return out;
    }
    if (v.isList() && arg.type()->kind() == c10::TypeKind::ListType &&
        arg.type()->castRaw<c10::ListType>()->getElementType()->kind() == c10::TypeKind::OptionalType) {
      c10::List<std::optional<at::Tensor>> out;  // Tensor?[] (index, index_put_)
      for (const IValue& e : v.toListRef())
        out.push_back(e.isTensor() ? std::optional<at::Tensor>(to_meta(e.toTensor())) : std::nullopt);
      return out;
    }
    if (v.isDevice() && v.toDevice().type() == kNpu) return c10::Device(c10::kMeta);
    if (v.isGenerator()) return IValue();  // no values, no random draws
    return v;
  }

  // out= and in-place kernels may have resized or re-strided their Meta aliases
  void update_mutated_arguments() {
    for (auto& a : aliased_) {
      if (a.meta->nbytes() > a.original->nbytes()) {
        // host tensors here are scalars and index lists, which no kernel resizes
        TORCH_CHECK(a.original->device().type() == kNpu, "npusim cost-only mode: ", op_.schema().name(),
                    " resized a host tensor's storage");
        resize_storage_bytes(a.original, a.meta->nbytes());
      }
    }
    for (size_t i = 0; i < originals_.size(); ++i) {
      if (!originals_[i].isTensor() || !metas_[i].isTensor()) continue;
      const at::Tensor& orig = originals_[i].toTensor();
      const at::Tensor& meta = metas_[i].toTensor();
      if (!orig.defined() || !meta.defined() || orig.is_same(meta)) continue;
      auto* impl = orig.unsafeGetTensorImpl();
      if (impl->sizes() != meta.sizes() || impl->strides() != meta.strides() ||
          impl->storage_offset() != meta.storage_offset())
        impl->set_sizes_and_strides(meta.sizes(), meta.strides(), meta.storage_offset());
    }
  }

  at::Tensor from_meta(const at::Tensor& out) {
    if (!out.defined() || out.device().type() != c10::kMeta) return out;
    for (size_t i = 0; i < metas_.size(); ++i)  // in-place / out=: the argument itself
      if (metas_[i].isTensor() && metas_[i].toTensor().defined() &&
          metas_[i].toTensor().unsafeGetTensorImpl() == out.unsafeGetTensorImpl())
        return originals_[i].toTensor();
    auto* storage = out.storage().unsafeGetStorageImpl();
    for (const auto& a : aliased_)  // a view of an argument
      if (a.meta.get() == storage)
        return tensor_on_storage(c10::Storage(c10::intrusive_ptr<c10::StorageImpl>::reclaim_copy(a.original)),
                                 c10::DispatchKey::PrivateUse1, out);
    // a new result: device memory of the Meta storage's size, shared by results that share it
    auto fresh = make_storage(storage->nbytes());
    aliased_.push_back({fresh.get(), c10::intrusive_ptr<c10::StorageImpl>::reclaim_copy(storage)});
    return tensor_on_storage(c10::Storage(std::move(fresh)), c10::DispatchKey::PrivateUse1, out);
  }

  c10::intrusive_ptr<c10::StorageImpl> make_storage(size_t nbytes) {
    owned_.push_back(c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), nbytes,
                                                           caching_allocator().allocate_on(device_, nbytes),
                                                           &caching_allocator(), /*resizable=*/true));
    return owned_.back();
  }

  IValue from_meta(const IValue& v) {
    if (v.isTensor()) return from_meta(v.toTensor());
    if (v.isTensorList()) {
      c10::List<at::Tensor> out;
      for (const at::Tensor& t : v.toTensorList()) out.push_back(from_meta(t));
      return out;
    }
    return v;
  }

  const c10::OperatorHandle& op_;
  c10::DeviceIndex device_;
  std::vector<IValue> originals_, metas_;
  std::vector<Aliased> aliased_;
  std::vector<c10::intrusive_ptr<c10::StorageImpl>> owned_;  // keeps new storages alive while results are built
};

c10::DeviceIndex first_npusim_device(const torch::jit::Stack& stack, size_t num_args) {
  for (const IValue& v : torch::jit::last(stack, num_args)) {
    if (v.isTensor() && v.toTensor().defined() && v.toTensor().device().type() == kNpu) return v.toTensor().device().index();
    if (v.isTensorList())
      for (const at::Tensor& t : v.toTensorList())
        if (t.defined() && t.device().type() == kNpu) return t.device().index();
  }
  return static_cast<c10::DeviceIndex>(current_device());
}

}  // namespace

namespace {
std::atomic<bool> refuse_reads{false};
}  // namespace

void set_refuse_host_reads(bool refuse) { refuse_reads.store(refuse); }
bool refuse_host_reads() { return refuse_reads.load(std::memory_order_relaxed); }

void run_without_values(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::DeviceIndex device) {
  WithoutValues(op, device).run(stack);
}

void without_values_boxed(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  run_without_values(op, stack, first_npusim_device(*stack, op.schema().arguments().size()));
}

}  // namespace torch_npu_sim::simulation
