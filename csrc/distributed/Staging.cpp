#include "distributed/Staging.h"

namespace torch_npu_sim::dist {

Span Staged::span() const {
  at::Tensor t = flat.is_complex() ? at::view_as_real(flat) : flat;
  return {t.data_ptr(), static_cast<size_t>(t.numel())};
}

void Staged::write_back() const {
  if (!flat.is_same(user)) user.copy_(flat);
}

Staged stage(const at::Tensor& t, bool copy_in, std::optional<double> scale) {
  if (scale) return {t, at::mul(t, *scale).contiguous()};
  if (t.is_contiguous()) return {t, t};
  return {t, copy_in ? t.contiguous() : at::empty_like(t, at::MemoryFormat::Contiguous)};
}

c10::ScalarType wire_dtype(const at::Tensor& t) {
  return t.is_complex() ? c10::toRealValueType(t.scalar_type()) : t.scalar_type();
}

uint64_t wire_numel(const at::Tensor& t) { return static_cast<uint64_t>(t.numel()) * (t.is_complex() ? 2 : 1); }

std::vector<Span> spans(const std::vector<Staged>& staged) {
  std::vector<Span> out;
  for (const auto& s : staged) out.push_back(s.span());
  return out;
}

std::vector<Staged> stage_all(const std::vector<at::Tensor>& ts, bool copy_in) {
  std::vector<Staged> out;
  for (const auto& t : ts) out.push_back(stage(t, copy_in));
  return out;
}

void write_back_all(const std::vector<Staged>& staged) {
  for (const auto& s : staged) s.write_back();
}

}  // namespace torch_npu_sim::dist
