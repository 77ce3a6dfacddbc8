#include "graphs/Recording.h"

#include <unordered_map>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>

#include "aten/CpuAlias.h"
#include "core/Allocator.h"
#include "core/BlockCache.h"
#include "core/Generator.h"
#include "graphs/Capture.h"
#include "simulation/OpCost.h"

namespace torch_npu_sim::graphs {
namespace {

using c10::IValue;
constexpr auto kNpu = c10::DeviceType::PrivateUse1;

bool is_generator_argument(const c10::Argument& arg) {
  auto type = arg.type();
  if (type->kind() == c10::TypeKind::OptionalType) type = type->castRaw<c10::OptionalType>()->getElementType();
  return type->kind() == c10::TypeKind::GeneratorType;
}

bool is_optional_tensor_list(const c10::Argument& arg) {
  return arg.type()->kind() == c10::TypeKind::ListType &&
         arg.type()->castRaw<c10::ListType>()->getElementType()->kind() == c10::TypeKind::OptionalType;
}

// An argument with each of its tensors mapped by `fn` (Tensor, Tensor[], Tensor?[]) and an
// npusim device argument replaced by `device`; anything else as it is.
template <typename Fn>
IValue map_tensors(const IValue& v, const c10::Argument& arg, c10::DeviceType device, Fn&& fn) {
  if (v.isTensor()) return fn(v.toTensor());
  if (v.isTensorList()) {
    c10::List<at::Tensor> out;
    for (const at::Tensor& t : v.toTensorList()) out.push_back(fn(t));
    return out;
  }
  if (v.isList() && is_optional_tensor_list(arg)) {
    c10::List<std::optional<at::Tensor>> out;
    for (const IValue& e : v.toListRef())
      out.push_back(e.isTensor() ? std::optional<at::Tensor>(fn(e.toTensor())) : std::nullopt);
    return out;
  }
  if (v.isDevice() && v.toDevice().type() == kNpu) return c10::Device(device);
  return v;
}

// One captured call: the meta mirror that shapes its results, and the CPU aliases its replay runs on.
class CallRecorder {
 public:
  CallRecorder(const c10::OperatorHandle& op, c10::DeviceIndex device, Recording& recording)
      : op_(op), name_(op.schema().name()), device_(device), recording_(recording) {}

  void record(torch::jit::Stack* stack, npusimStream_t stream) {
    const auto& schema = op_.schema();
    const size_t num_args = schema.arguments().size();
    const size_t first = stack->size() - num_args;
    std::vector<IValue> args(stack->begin() + first, stack->end());

    std::vector<IValue> results = shape_results(args);
    Node node;
    node.op = op_;
    node.stream = stream;
    simulation::OpCost cost(schema, args);
    cost.add_results(results);
    node.cost = *cost.get();
    for (size_t i = 0; i < num_args; ++i) node.args.push_back(for_replay(args[i], schema.arguments()[i], i, node));
    node.targets = std::move(targets_);
    recording_.nodes.push_back(std::move(node));

    stack->erase(stack->begin() + first, stack->end());
    for (auto& r : results) stack->push_back(std::move(r));
  }

 private:
  // ---- capture: the results' shapes from the meta kernel, their memory from the pool ----

  std::vector<IValue> shape_results(const std::vector<IValue>& args) {
    const auto& schema = op_.schema();
    torch::jit::Stack meta;
    for (size_t i = 0; i < args.size(); ++i) meta.push_back(to_meta(args[i], schema.arguments()[i]));
    const torch::jit::Stack meta_inputs = meta;
    try {
      op_.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::Meta), &meta);
    } catch (const std::exception& e) {
      if (!results_are_arguments()) {
        std::string why = e.what();
        if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) why = c10e->what_without_backtrace();
        fail_uncapturable(name_, "its results' shapes cannot be known without running it (" + why.substr(0, 400) + ")");
      }
      // an op that only writes its arguments (vLLM's kernels, say) needs no meta kernel
      std::vector<IValue> results;
      for (const auto& ret : schema.returns()) results.push_back(argument_aliased_by(ret, args));
      targets_.assign(results.size(), IValue());
      return results;
    }
    if (is_pure() || resized_written_argument(meta_inputs)) take_eager_layouts(args, meta_inputs, meta);
    std::vector<IValue> results;
    for (const IValue& r : meta) results.push_back(from_meta(r, args));
    return results;
  }

  bool is_pure() const {
    for (const auto& a : op_.schema().arguments())
      if (is_written(a)) return false;
    return true;
  }

  static bool is_written(const c10::Argument& a) { return a.alias_info() && a.alias_info()->isWrite(); }

  // An out= argument the meta kernel resized (to its own choice of strides).
  bool resized_written_argument(const torch::jit::Stack& meta_inputs) const {
    const auto& params = op_.schema().arguments();
    for (size_t i = 0; i < params.size(); ++i) {
      if (!is_written(params[i]) || !meta_inputs[i].isTensor()) continue;
      for (const auto& [meta, original] : meta_args_)
        if (meta.is_same(meta_inputs[i].toTensor()) &&
            (meta.sizes() != original.sizes() || meta.strides() != original.strides()))
          return true;
    }
    return false;
  }

  // Meta kernels give results the right shape but not always the strides the CPU kernel
  // gives (abs of a transposed tensor: contiguous on meta, transposed on the CPU), and later
  // ops round by layout: replay must see eager's layouts. An op that writes no argument can
  // run at capture for that, its results thrown away; if it fails on the (unwritten) memory
  // it reads, the meta layout stands.
  void take_eager_layouts(const std::vector<IValue>& args, const torch::jit::Stack& meta_inputs,
                          torch::jit::Stack& meta) {
    const auto& schema = op_.schema();
    torch::jit::Stack cpu;
    std::vector<std::pair<at::Tensor, at::Tensor>> scratch;  // (written argument's meta mirror, its stand-in)
    for (size_t i = 0; i < args.size(); ++i) {
      const auto& param = schema.arguments()[i];
      if (is_generator_argument(param)) {
        cpu.push_back(at::make_generator<at::CPUGeneratorImpl>(0));
      } else if (is_written(param) && args[i].isTensor() && args[i].toTensor().defined()) {
        // writes go to a stand-in with the argument's geometry, never to the argument
        const at::Tensor& t = args[i].toTensor();
        at::Tensor stand_in = at::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kCPU));
        scratch.emplace_back(meta_inputs[i].toTensor(), stand_in);
        cpu.push_back(stand_in);
      } else {
        cpu.push_back(scratch_view(args[i], param));
      }
    }
    try {
      npusimDeviceAccessScope device_access;  // protected memory: this reads device memory
      op_.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::CPU), &cpu);
    } catch (const std::exception&) {
      return;
    }
    for (size_t i = 0; i < meta.size() && i < cpu.size(); ++i) {
      if (!meta[i].isTensor() || !cpu[i].isTensor()) continue;
      const at::Tensor& m = meta[i].toTensor();
      const at::Tensor& c = cpu[i].toTensor();
      if (!m.defined() || !c.defined() || m.sizes() != c.sizes() || m.dtype() != c.dtype()) continue;
      if (originals_.count(m.storage().unsafeGetStorageImpl())) continue;  // a view of an argument
      if (m.strides() == c.strides() && m.storage_offset() == c.storage_offset()) continue;
      meta[i] = at::empty_strided(c.sizes(), c.strides(), m.options());
    }
    for (auto& [m, c] : scratch) {  // the CPU kernel's resize of an out= argument
      if (m.sizes() != c.sizes() || (m.strides() == c.strides() && m.storage_offset() == c.storage_offset())) continue;
      size_t needed = at::detail::computeStorageNbytes(c.sizes(), c.strides(), c.element_size(),
                                                       static_cast<size_t>(c.storage_offset()));
      auto* storage = m.storage().unsafeGetStorageImpl();
      if (storage->nbytes() < needed) storage->set_nbytes(needed);
      m.unsafeGetTensorImpl()->set_sizes_and_strides(c.sizes(), c.strides(), c.storage_offset());
    }
  }

  static IValue scratch_view(const IValue& v, const c10::Argument& arg) {
    return map_tensors(v, arg, c10::kCPU, [](const at::Tensor& t) {
      return t.defined() && t.device().type() == kNpu ? cpu_alias(t) : t;
    });
  }

  // Every return is an argument the op writes (Tensor(a!)), or there are none.
  bool results_are_arguments() const {
    for (const auto& ret : op_.schema().returns())
      if (!ret.alias_info() || !ret.alias_info()->isWrite()) return false;
    return true;
  }

  IValue argument_aliased_by(const c10::Argument& ret, const std::vector<IValue>& args) const {
    const auto& params = op_.schema().arguments();
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].alias_info() && *params[i].alias_info() == *ret.alias_info()) return args[i];
    return IValue();
  }

  at::Tensor meta_tensor(const at::Tensor& t) {
    if (!t.defined()) return t;
    if (t.device().type() == c10::kCPU && t.dim() == 0) return t;  // a host scalar, as in CUDA
    if (t.device().type() == c10::kCPU && !t.is_pinned())
      fail_uncapturable(name_, "it reads pageable host memory (a CPU tensor argument of shape " +
                                   c10::str(t.sizes()) + "); pin it or move it to npusim before capture");
    auto* storage = t.storage().unsafeGetStorageImpl();
    auto& mirror = meta_storages_[storage];
    if (!mirror) {
      mirror = c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), t.storage().nbytes(),
                                                     c10::DataPtr(nullptr, c10::Device(c10::kMeta)),
                                                     c10::GetAllocator(c10::kMeta), /*resizable=*/true);
      originals_[mirror.get()] = t;
    }
    at::Tensor m = tensor_on_storage(c10::Storage(mirror), c10::DispatchKey::Meta, t);
    meta_args_.emplace_back(m, t);
    return m;
  }

  IValue to_meta(const IValue& v, const c10::Argument& arg) {
    if (is_generator_argument(arg)) return IValue();  // meta kernels draw nothing
    return map_tensors(v, arg, c10::kMeta, [this](const at::Tensor& t) { return meta_tensor(t); });
  }

  at::Tensor from_meta_tensor(const at::Tensor& m) {
    if (!m.defined()) {
      targets_.emplace_back();
      return m;
    }
    for (auto& [meta, original] : meta_args_) {
      if (meta.unsafeGetTensorImpl() != m.unsafeGetTensorImpl()) continue;
      // in place / out=: the argument itself, resized as the meta kernel resized its mirror
      at::Tensor out = original;
      if (out.sizes() != m.sizes() || out.strides() != m.strides()) {
        if (out.storage().nbytes() < m.storage().nbytes()) resize_storage_bytes(out.storage().unsafeGetStorageImpl(), m.storage().nbytes());
        out.unsafeGetTensorImpl()->set_sizes_and_strides(m.sizes(), m.strides(), m.storage_offset());
      }
      targets_.emplace_back();
      return out;
    }
    auto* storage = m.storage().unsafeGetStorageImpl();
    auto it = originals_.find(storage);
    if (it != originals_.end()) {  // a view of an argument
      targets_.emplace_back();
      return tensor_on_storage(it->second.storage(), c10::DispatchKey::PrivateUse1, m);
    }
    auto& fresh = fresh_[storage];
    if (!fresh.has_value()) {
      size_t nbytes = m.storage().nbytes();
      fresh = c10::Storage(c10::Storage::use_byte_size_t(), nbytes, caching_allocator().allocate_on(device_, nbytes),
                           &caching_allocator(), /*resizable=*/true);
    }
    at::Tensor out = tensor_on_storage(*fresh, c10::DispatchKey::PrivateUse1, m);
    targets_.emplace_back(tensor_on_storage(c10::Storage(cpu_alias_storage(*fresh)), c10::DispatchKey::CPU, m));
    return out;
  }

  IValue from_meta(const IValue& r, const std::vector<IValue>& args) {
    if (r.isTensor()) return from_meta_tensor(r.toTensor());
    if (r.isTensorList()) {
      c10::List<at::Tensor> out;
      c10::List<at::Tensor> targets;
      for (const at::Tensor& m : r.toTensorList()) {
        out.push_back(from_meta_tensor(m));
        targets.push_back(targets_.back().isTensor() ? targets_.back().toTensor() : at::Tensor());
        targets_.pop_back();
      }
      targets_.emplace_back(targets);
      return out;
    }
    if (r.isNone()) {
      targets_.emplace_back();
      return r;
    }
    fail_uncapturable(name_, std::string("it returns a host value (") + r.tagKind() +
                                 ") computed from device data, which needs the device to have run it");
  }

  // ---- replay: the arguments as CPU aliases of the same memory ----

  at::Tensor cpu_tensor(const at::Tensor& t) {
    if (!t.defined()) return t;
    if (t.device().type() != kNpu) {
      if (t.dim() != 0) return t;  // pinned memory, read at replay
      at::Tensor value = t.clone();  // a host scalar, by value; a wrapped Python number stays one
      value.unsafeGetTensorImpl()->set_wrapped_number(t.unsafeGetTensorImpl()->is_wrapped_number());
      return value;
    }
    auto* storage = t.storage().unsafeGetStorageImpl();
    auto& alias = cpu_storages_[storage];
    if (!alias) {
      alias = cpu_alias_storage(t.storage());
      if (!cache().in_private_pool(storage->mutable_data())) recording_.keep_alive.push_back(t.storage());
    }
    return tensor_on_storage(c10::Storage(alias), c10::DispatchKey::CPU, t);
  }

  IValue for_replay(const IValue& v, const c10::Argument& arg, size_t index, Node& node) {
    if (is_generator_argument(arg)) {
      node.draw = draw(v, index);
      return IValue();  // filled in by each replay
    }
    return map_tensors(v, arg, c10::kCPU, [this](const at::Tensor& t) { return cpu_tensor(t); });
  }

  RandomDraw draw(const IValue& v, size_t index) {
    at::Generator generator = v.isNone() ? default_generator(device_) : v.toGenerator();
    TORCH_CHECK(generator.device().type() == kNpu, "Expected a 'npusim' device type for generator but found '",
                generator.device().type(), "'");
    uint64_t numel = 0;
    for (auto& [meta, original] : meta_args_) numel = std::max<uint64_t>(numel, original.numel());
    auto& uses = recording_.generators;
    size_t g = 0;
    while (g < uses.size() && uses[g].generator != generator) ++g;
    if (g == uses.size()) uses.push_back({generator, 0});
    RandomDraw d{index, g, uses[g].offsets};
    uses[g].offsets += NpuSimGenerator::offsets_for(numel);
    return d;
  }

  const c10::OperatorHandle& op_;
  std::string name_;
  c10::DeviceIndex device_;
  Recording& recording_;
  std::unordered_map<c10::StorageImpl*, c10::intrusive_ptr<c10::StorageImpl>> meta_storages_;
  std::unordered_map<c10::StorageImpl*, at::Tensor> originals_;  // meta storage -> an argument on the original
  std::vector<std::pair<at::Tensor, at::Tensor>> meta_args_;     // (meta mirror, original)
  std::unordered_map<c10::StorageImpl*, std::optional<c10::Storage>> fresh_;
  std::unordered_map<c10::StorageImpl*, c10::intrusive_ptr<c10::StorageImpl>> cpu_storages_;
  std::vector<IValue> targets_;
};

void write_back(const IValue& result, const IValue& target) {
  if (target.isTensor()) {
    const at::Tensor& t = target.toTensor();
    const at::Tensor& r = result.toTensor();
    if (t.defined() && r.defined() && r.data_ptr() != t.data_ptr()) t.copy_(r);
  } else if (target.isTensorList()) {
    auto results = result.toTensorList();
    auto targets = target.toTensorList();
    for (size_t i = 0; i < targets.size(); ++i) write_back(results.get(i), targets.get(i));
  }
}

}  // namespace

void Recording::record(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::DeviceIndex device,
                       npusimStream_t stream) {
  CallRecorder(op, device, *this).record(stack, stream);
}

void Recording::record_host_function(std::string name, std::function<void()> fn, npusimStream_t stream) {
  Node node;
  node.host_fn = std::move(fn);
  node.host_fn_name = std::move(name);
  node.stream = stream;
  node.cost.name = "npusim::host_function";
  nodes.push_back(std::move(node));
}

void Recording::replay(const std::vector<uint64_t>& seeds, const std::vector<uint64_t>& bases) const {
  const auto cpu = c10::DispatchKeySet(c10::DispatchKey::CPU);
  torch::jit::Stack stack;
  for (const Node& node : nodes) {
    if (node.host_fn) {
      node.host_fn();
      continue;
    }
    stack = node.args;
    if (node.draw)
      stack[node.draw->arg] = NpuSimGenerator::cpu_generator_at(seeds[node.draw->generator],
                                                                bases[node.draw->generator] + node.draw->offset);
    node.op->redispatchBoxed(cpu, &stack);
    for (size_t i = 0; i < node.targets.size() && i < stack.size(); ++i) write_back(stack[i], node.targets[i]);
  }
}

}  // namespace torch_npu_sim::graphs
