// Per-tensor backend metadata (torch._utils.set_tensor_metadata / get_tensor_metadata):
// string -> bool entries kept on the TensorImpl, carried by shallow copies and written
// by torch.save, so they survive save/load as CUDA's conj/neg bits do.
#include <torch/csrc/jit/serialization/pickler_helper.h>

#include <string>
#include <unordered_map>

namespace torch_npu_sim {
namespace {

struct NpuSimTensorMeta : c10::BackendMeta {
  std::unordered_map<std::string, bool> entries;
  c10::intrusive_ptr<c10::BackendMeta> clone(const c10::intrusive_ptr<c10::BackendMeta>& ptr) const override {
    auto copy = c10::make_intrusive<NpuSimTensorMeta>();
    copy->entries = static_cast<const NpuSimTensorMeta*>(ptr.get())->entries;
    return copy;
  }
};

void get_metadata(const at::Tensor& t, std::unordered_map<std::string, bool>& metadata) {
  auto* meta = dynamic_cast<NpuSimTensorMeta*>(t.unsafeGetTensorImpl()->get_backend_meta());
  if (!meta) return;
  for (const auto& [key, value] : meta->entries) metadata[key] = value;
}

void set_metadata(const at::Tensor& t, std::unordered_map<std::string, bool>& metadata) {
  if (metadata.empty()) return;
  auto* impl = t.unsafeGetTensorImpl();
  auto* existing = dynamic_cast<NpuSimTensorMeta*>(impl->get_backend_meta());
  auto meta = c10::make_intrusive<NpuSimTensorMeta>();
  if (existing) meta->entries = existing->entries;
  for (const auto& [key, value] : metadata) meta->entries[key] = value;
  impl->set_backend_meta(meta);
}

const bool registered = [] {
  torch::jit::TensorBackendMetaRegistry(c10::DeviceType::PrivateUse1, &get_metadata, &set_metadata);
  return true;
}();

}  // namespace
}  // namespace torch_npu_sim
