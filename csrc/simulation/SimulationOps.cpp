// torch.ops.npusim_sim.*: the runtime's simulated-time API for the Python package
// (torch_npu_sim.simulation), registered as operators so it needs no binding module.
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <torch/library.h>

#include "core/Runtime.h"
#include "core/Stream.h"
#include "simulation/CostOnly.h"

namespace torch_npu_sim::simulation {
namespace {

npusimStream_t stream_of(int64_t stream_id, int64_t device_index, int64_t device_type) {
  auto stream = c10::Stream::unpack3(stream_id, static_cast<c10::DeviceIndex>(device_index),
                                     static_cast<c10::DeviceType>(device_type));
  TORCH_CHECK(stream.device_type() == c10::DeviceType::PrivateUse1, "expected an npusim stream, got one on ",
              stream.device());
  check_device_index(stream.device_index());
  return runtime_stream(stream);
}

void set_chip_timing(std::vector<double> peak_flops, double memory_bandwidth, double launch_latency_ns,
                     double h2d_bandwidth, double d2h_bandwidth, double host_link_latency_ns) {
  TORCH_CHECK(peak_flops.size() == npusimComputeClassCount, "peak_flops needs ", int(npusimComputeClassCount),
              " values (fp32, bf16/fp16, int8), got ", peak_flops.size());
  npusimChipTiming t{};
  for (int i = 0; i < npusimComputeClassCount; ++i) t.peak_flops[i] = peak_flops[i];
  t.memory_bandwidth = memory_bandwidth;
  t.launch_latency_ns = launch_latency_ns;
  t.h2d_bandwidth = h2d_bandwidth;
  t.d2h_bandwidth = d2h_bandwidth;
  t.host_link_latency_ns = host_link_latency_ns;
  TORCH_CHECK(npusimSetChipTiming(&t) == npusimSuccess,
              "invalid chip timing: peak FLOP/s and bandwidths must be finite and > 0, latencies finite and >= 0");
}

std::vector<double> get_chip_timing() {
  npusimChipTiming t;
  NPUSIM_CHECK(npusimGetChipTiming(&t));
  return {t.peak_flops[0], t.peak_flops[1], t.peak_flops[2], t.memory_bandwidth, t.launch_latency_ns,
          t.h2d_bandwidth, t.d2h_bandwidth, t.host_link_latency_ns};
}

// Per-op-class efficiency: `compute` and `memory` each hold (max, half, exponent) for every op
// class in order (other, matmul, attention); empty lists reset to the plain roofline.
const char* const kOpClassNames[npusimOpClassCount] = {"other", "matmul", "attention"};

void set_efficiency(std::vector<double> compute, std::vector<double> memory) {
  if (compute.empty() && memory.empty()) {
    NPUSIM_CHECK(npusimSetEfficiency(nullptr));
    return;
  }
  constexpr size_t n = 3 * npusimOpClassCount;
  TORCH_CHECK(compute.size() == n && memory.size() == n, "set_efficiency needs ", n,
              " values each for compute and memory ((max, half, exponent) for other, matmul, attention), got ",
              compute.size(), " and ", memory.size());
  npusimEfficiency e{};
  for (int i = 0; i < npusimOpClassCount; ++i) {
    for (auto [curve, values, what] : {std::make_tuple(&e.compute[i], &compute, "compute"),
                                       std::make_tuple(&e.memory[i], &memory, "memory")}) {
      double max = (*values)[3 * i], half = (*values)[3 * i + 1], exponent = (*values)[3 * i + 2];
      TORCH_CHECK(std::isfinite(max) && max > 0 && max <= 1, "efficiency ", what, "[", kOpClassNames[i],
                  "].max must be in (0, 1], got ", max);
      TORCH_CHECK(std::isfinite(half) && half >= 0, "efficiency ", what, "[", kOpClassNames[i],
                  "].half must be finite and >= 0, got ", half);
      TORCH_CHECK(std::isfinite(exponent) && exponent > 0 && exponent <= 1, "efficiency ", what, "[",
                  kOpClassNames[i], "].exponent must be in (0, 1], got ", exponent);
      *curve = npusimEfficiencyCurve{max, half, exponent};
    }
  }
  NPUSIM_CHECK(npusimSetEfficiency(&e));
}

std::tuple<std::vector<double>, std::vector<double>> get_efficiency() {
  npusimEfficiency e;
  NPUSIM_CHECK(npusimGetEfficiency(&e));
  std::vector<double> compute, memory;
  for (int i = 0; i < npusimOpClassCount; ++i) {
    compute.insert(compute.end(), {e.compute[i].max, e.compute[i].half, e.compute[i].exponent});
    memory.insert(memory.end(), {e.memory[i].max, e.memory[i].half, e.memory[i].exponent});
  }
  return {compute, memory};
}

// what the runtime charges a kernel launch of this cost on the current chip and efficiency
int64_t kernel_time_ns(double flops, double bytes, int64_t compute_class, int64_t op_class) {
  TORCH_CHECK(compute_class >= 0 && compute_class < npusimComputeClassCount, "compute_class must be 0 (fp32/other), "
              "1 (bf16/fp16) or 2 (int8), got ", compute_class);
  TORCH_CHECK(op_class >= 0 && op_class < npusimOpClassCount, "op_class must be 0 (other), 1 (matmul) or "
              "2 (attention), got ", op_class);
  npusimKernelCost cost{};
  cost.name = "kernel_time_ns";
  cost.flops = flops;
  cost.bytes = bytes;
  cost.compute_class = static_cast<int>(compute_class);
  cost.op_class = static_cast<int>(op_class);
  uint64_t ns = 0;
  NPUSIM_CHECK(npusimKernelTime(&cost, &ns));
  return static_cast<int64_t>(ns);
}

void set_chip_memory(int64_t bytes, std::string name) {
  TORCH_CHECK(bytes > 0, "chip memory must be > 0 bytes, got ", bytes);
  npusimError_t err = npusimSetChipMemory(static_cast<size_t>(bytes), name.empty() ? nullptr : name.c_str());
  TORCH_CHECK(err != npusimErrorMemoryAllocation, "cannot set the chip's memory to ", bytes,
              " bytes: a device already uses more");
  TORCH_CHECK(err != npusimErrorInvalidValue, "invalid chip name '", name,
              "': 1 to 63 bytes without control characters");
  NPUSIM_CHECK(err);
}

int64_t stream_sim_time(int64_t stream_id, int64_t device_index, int64_t device_type) {
  uint64_t ns = 0;
  NPUSIM_CHECK(npusimStreamGetSimTime(stream_of(stream_id, device_index, device_type), &ns));
  return static_cast<int64_t>(ns);
}

// Names given to charge() must outlive the runtime's per-name totals: interned here.
const char* intern(const std::string& name) {
  static std::mutex m;
  static auto* names = new std::vector<std::unique_ptr<std::string>>();
  std::lock_guard<std::mutex> lock(m);
  for (auto& n : *names)
    if (*n == name) return n->c_str();
  names->push_back(std::make_unique<std::string>(name));
  return names->back()->c_str();
}

void charge(int64_t stream_id, int64_t device_index, int64_t device_type, int64_t kind, std::string name,
            double bytes, int64_t ns) {
  TORCH_CHECK(kind >= npusimActivityKernel && kind <= npusimActivityCollective, "activity kind must be 0..3, got ",
              kind);
  TORCH_CHECK(ns >= 0, "a charged duration must be >= 0 ns, got ", ns);
  NPUSIM_CHECK(npusimStreamChargeActivity(stream_of(stream_id, device_index, device_type),
                                          static_cast<npusimActivityKind>(kind), intern(name), bytes,
                                          static_cast<uint64_t>(ns)));
}

std::tuple<std::vector<std::string>, std::vector<int64_t>, std::vector<int64_t>, std::vector<double>,
           std::vector<double>, std::vector<int64_t>>
op_stats() {
  size_t count = 0;
  NPUSIM_CHECK(npusimGetOpStats(nullptr, 0, &count));
  std::vector<npusimOpStat> stats(count + 16);  // room for names added meanwhile
  NPUSIM_CHECK(npusimGetOpStats(stats.data(), stats.size(), &count));
  stats.resize(std::min(count, stats.size()));
  std::tuple<std::vector<std::string>, std::vector<int64_t>, std::vector<int64_t>, std::vector<double>,
             std::vector<double>, std::vector<int64_t>>
      out;
  for (const auto& s : stats) {
    std::get<0>(out).emplace_back(s.name);
    std::get<1>(out).push_back(s.kind);
    std::get<2>(out).push_back(static_cast<int64_t>(s.count));
    std::get<3>(out).push_back(s.flops);
    std::get<4>(out).push_back(s.bytes);
    std::get<5>(out).push_back(static_cast<int64_t>(s.sim_ns));
  }
  return out;
}

// A simple activity log (for traces when no profiler is attached): the runtime has one
// observer, so recording replaces any other until it stops.
struct LoggedActivity {
  std::string name;
  int64_t kind, device, stream_id, sim_start_ns, sim_end_ns;
  double flops, bytes;
};
std::mutex log_mutex;
std::vector<LoggedActivity> activity_log;

void log_activity(const npusimActivityRecord* r, void*) {
  std::lock_guard<std::mutex> lock(log_mutex);
  activity_log.push_back({r->name ? r->name : "", r->kind, r->device, static_cast<int64_t>(r->stream_id),
                          static_cast<int64_t>(r->sim_start_ns), static_cast<int64_t>(r->sim_end_ns), r->flops,
                          r->bytes});
}

void record_activities(bool on) { NPUSIM_CHECK(npusimSetActivityCallback(on ? &log_activity : nullptr, nullptr)); }

std::tuple<std::vector<std::string>, std::vector<int64_t>, std::vector<double>, std::vector<double>>
take_activities() {
  std::vector<LoggedActivity> taken;
  {
    std::lock_guard<std::mutex> lock(log_mutex);
    taken.swap(activity_log);
  }
  std::tuple<std::vector<std::string>, std::vector<int64_t>, std::vector<double>, std::vector<double>> out;
  for (const auto& a : taken) {
    std::get<0>(out).push_back(a.name);
    // kind, device, stream id, start, end: five integers per record
    for (int64_t v : {a.kind, a.device, a.stream_id, a.sim_start_ns, a.sim_end_ns}) std::get<1>(out).push_back(v);
    std::get<2>(out).push_back(a.flops);
    std::get<3>(out).push_back(a.bytes);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(npusim_sim, m) {
  m.def("set_chip_timing(float[] peak_flops, float memory_bandwidth, float launch_latency_ns, float h2d_bandwidth, "
        "float d2h_bandwidth, float host_link_latency_ns) -> ()",
        &set_chip_timing);
  m.def("get_chip_timing() -> float[]", &get_chip_timing);
  m.def("set_chip_memory(int bytes, str name) -> ()", &set_chip_memory);
  m.def("set_efficiency(float[] compute, float[] memory) -> ()", &set_efficiency);
  m.def("get_efficiency() -> (float[], float[])", &get_efficiency);
  m.def("kernel_time_ns(float flops, float bytes, int compute_class, int op_class) -> int", &kernel_time_ns);
  m.def("set_cost_model(bool on) -> ()", [](bool on) { NPUSIM_CHECK(npusimSetCostModel(on ? 1 : 0)); });
  m.def("cost_model_enabled() -> bool", [] { return npusimCostModelEnabled() != 0; });
  m.def("set_simulated_timing(bool on) -> ()", [](bool on) { NPUSIM_CHECK(npusimSetSimulatedTiming(on ? 1 : 0)); });
  m.def("simulated_timing() -> bool", [] {
    int on = 0;
    NPUSIM_CHECK(npusimGetSimulatedTiming(&on));
    return on != 0;
  });
  m.def("stream_sim_time(int stream_id, int device_index, int device_type) -> int", &stream_sim_time);
  m.def("charge(int stream_id, int device_index, int device_type, int kind, str name, float bytes, int ns) -> ()",
        &charge);
  m.def("op_stats() -> (str[], int[], int[], float[], float[], int[])", &op_stats);
  m.def("record_activities(bool on) -> ()", &record_activities);
  m.def("take_activities() -> (str[], int[], float[], float[])", &take_activities);
  m.def("reset() -> ()", [] { NPUSIM_CHECK(npusimResetSimulatedTime()); });
  m.def("set_cost_only(bool on) -> ()", [](bool on) { NPUSIM_CHECK(npusimSetCostOnly(on ? 1 : 0)); });
  m.def("cost_only() -> bool", [] { return npusimCostOnly() != 0; });
  m.def("set_refuse_host_reads(bool refuse) -> ()", [](bool refuse) { set_refuse_host_reads(refuse); });
  m.def("refuse_host_reads() -> bool", [] { return refuse_host_reads(); });
}

}  // namespace torch_npu_sim::simulation
