// Simulated time in the driver alone (no torch): roofline kernel costs, copies over the host
// link, event dependencies, host synchronisation, the observer and per-name totals. Run by
// tests/simulation/test_runtime_sim_clock.py (NPUSIM_DEVICE_COUNT=2, NPUSIM_DEVICE_MEMORY=1MiB).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "npusim_runtime.h"

static int failures = 0;
#define EXPECT(cond)                                                \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                   \
    }                                                               \
  } while (0)

static int ran = 0;
static void work(void*) { ++ran; }

static uint64_t sim_time(npusimStream_t s) {
  uint64_t ns = ~uint64_t{0};
  EXPECT(npusimStreamGetSimTime(s, &ns) == npusimSuccess);
  return ns;
}

// round figures so that expected times are exact: 1 TFLOP/s fp32, 1 TB/s, 1 us launch
static void set_round_chip() {
  npusimChipTiming t = {{1e12, 4e12, 8e12}, 1e12, 1000.0, 1e10, 5e9, 2000.0};
  EXPECT(npusimSetChipTiming(&t) == npusimSuccess);
  npusimChipTiming back;
  EXPECT(npusimGetChipTiming(&back) == npusimSuccess && back.peak_flops[1] == 4e12 && back.d2h_bandwidth == 5e9);
  npusimChipTiming bad = t;
  bad.memory_bandwidth = 0;
  EXPECT(npusimSetChipTiming(&bad) == npusimErrorInvalidValue);
  bad = t;
  bad.launch_latency_ns = -1;
  EXPECT(npusimSetChipTiming(&bad) == npusimErrorInvalidValue);
  EXPECT(npusimSetChipTiming(nullptr) == npusimErrorInvalidValue);
}

static void test_roofline() {
  npusimStream_t s;
  EXPECT(npusimStreamCreateWithPriority(&s, 0, 0) == npusimSuccess);
  EXPECT(sim_time(s) == 0);
  // compute bound: 2e9 flops at 1e12 = 2 ms, bytes 1e6 at 1e12 = 1 us; + 1 us launch
  npusimKernelCost mm{"aten::mm", 2e9, 1e6, 0};
  EXPECT(npusimLaunchKernel(s, &work, nullptr, &mm) == npusimSuccess && ran == 1);
  EXPECT(sim_time(s) == 2000000 + 1000);
  // bf16 peak is 4x: 0.5 ms
  npusimKernelCost half{"aten::mm", 2e9, 1e6, 1};
  EXPECT(npusimLaunchKernel(s, &work, nullptr, &half) == npusimSuccess);
  EXPECT(sim_time(s) == 2001000 + 500000 + 1000);
  // memory bound: 1e9 bytes at 1e12 = 1 ms
  uint64_t before = sim_time(s);
  npusimKernelCost add{"aten::add", 1e6, 1e9, 0};
  EXPECT(npusimLaunchKernel(s, &work, nullptr, &add) == npusimSuccess);
  EXPECT(sim_time(s) - before == 1000000 + 1000);
  // no cost: the launch latency; a plain host function too
  before = sim_time(s);
  EXPECT(npusimLaunchKernel(s, &work, nullptr, nullptr) == npusimSuccess);
  EXPECT(npusimLaunchHostFunc(s, &work, nullptr) == npusimSuccess);
  EXPECT(sim_time(s) - before == 2000);
  // copies over the host link: 1e7 bytes at 1e10 B/s = 1 ms, D2H at 5e9 = 2 ms, + 2 us latency
  before = sim_time(s);
  EXPECT(npusimLaunchCopy(s, &work, nullptr, npusimMemcpyHostToDevice, 1e7, 0) == npusimSuccess);
  EXPECT(sim_time(s) - before == 1000000 + 2000);
  before = sim_time(s);
  EXPECT(npusimLaunchCopy(s, &work, nullptr, npusimMemcpyDeviceToHost, 1e7, 0) == npusimSuccess);
  EXPECT(sim_time(s) - before == 2000000 + 2000);
  // device to device reads and writes: 2e7 bytes at 1e12 = 20 us + launch
  before = sim_time(s);
  EXPECT(npusimLaunchCopy(s, &work, nullptr, npusimMemcpyDeviceToDevice, 1e7, 0) == npusimSuccess);
  EXPECT(sim_time(s) - before == 20000 + 1000);
  EXPECT(npusimLaunchCopy(s, &work, nullptr, npusimMemcpyDeviceToDevice, 1e7, 2) == npusimErrorInvalidValue);
  EXPECT(npusimLaunchKernel(s, nullptr, nullptr, &mm) == npusimErrorInvalidValue);
  EXPECT(npusimStreamGetSimTime(s, nullptr) == npusimErrorInvalidValue);
  EXPECT(npusimStreamDestroy(s) == npusimSuccess);
  EXPECT(npusimStreamGetSimTime(s, &before) == npusimErrorInvalidResourceHandle);
}

static void test_dependencies_and_elapsed_time() {
  EXPECT(npusimResetSimulatedTime() == npusimSuccess);
  npusimStream_t compute, comm;
  EXPECT(npusimStreamCreateWithPriority(&compute, 1, 0) == npusimSuccess);
  EXPECT(npusimStreamCreateWithPriority(&comm, 1, 0) == npusimSuccess);
  npusimEvent_t start, mid, end;
  EXPECT(npusimEventCreateWithFlags(&start, 0) == npusimSuccess);
  EXPECT(npusimEventCreateWithFlags(&mid, 0) == npusimSuccess);
  EXPECT(npusimEventCreateWithFlags(&end, 0) == npusimSuccess);
  EXPECT(npusimEventRecord(start, compute) == npusimSuccess);
  npusimKernelCost k{"k", 1e9, 0, 0};  // 1 ms + 1 us
  EXPECT(npusimLaunchKernel(compute, &work, nullptr, &k) == npusimSuccess);
  EXPECT(npusimEventRecord(mid, compute) == npusimSuccess);
  // the collective stream overlaps: 3 ms charged from time 0
  EXPECT(npusimStreamChargeActivity(comm, npusimActivityCollective, "all_reduce", 4096, 3000000) == npusimSuccess);
  EXPECT(sim_time(comm) == 3000000);
  EXPECT(sim_time(compute) == 1001000);
  // the compute stream waits for the collective before its next kernel
  EXPECT(npusimEventRecord(end, comm) == npusimSuccess);
  EXPECT(npusimStreamWaitEvent(compute, end) == npusimSuccess);
  EXPECT(sim_time(compute) == 3000000);
  EXPECT(npusimLaunchKernel(compute, &work, nullptr, &k) == npusimSuccess);
  EXPECT(sim_time(compute) == 4001000);
  // a wait on an earlier event does not move the clock back
  EXPECT(npusimStreamWaitEvent(compute, mid) == npusimSuccess && sim_time(compute) == 4001000);
  EXPECT(npusimStreamChargeActivity(comm, (npusimActivityKind)9, "x", 0, 1) == npusimErrorInvalidValue);

  int on = -1;
  EXPECT(npusimGetSimulatedTiming(&on) == npusimSuccess && on == 0);
  EXPECT(npusimSetSimulatedTiming(2) == npusimErrorInvalidValue);
  EXPECT(npusimSetSimulatedTiming(1) == npusimSuccess);
  EXPECT(npusimGetSimulatedTiming(&on) == npusimSuccess && on == 1);
  float ms = 0;
  EXPECT(npusimEventElapsedTime(&ms, start, mid) == npusimSuccess && ms > 1.0009f && ms < 1.0011f);
  EXPECT(npusimEventElapsedTime(&ms, start, end) == npusimSuccess && ms > 2.9999f && ms < 3.0001f);
  EXPECT(npusimSetSimulatedTiming(0) == npusimSuccess);

  // the host waits for the compute stream; a fresh stream then starts at the host's time
  EXPECT(npusimStreamSynchronize(compute) == npusimSuccess);
  npusimStream_t late;
  EXPECT(npusimStreamCreateWithPriority(&late, 1, 0) == npusimSuccess);
  EXPECT(npusimLaunchKernel(late, &work, nullptr, nullptr) == npusimSuccess);
  EXPECT(sim_time(late) == 4001000 + 1000);
  // a blocking copy makes the host wait too; the other device's host clock is untouched
  EXPECT(npusimLaunchCopy(late, &work, nullptr, npusimMemcpyDeviceToHost, 5e6, 1) == npusimSuccess);
  npusimStream_t other;
  EXPECT(npusimStreamCreateWithPriority(&other, 0, 0) == npusimSuccess);
  EXPECT(npusimLaunchKernel(other, &work, nullptr, nullptr) == npusimSuccess && sim_time(other) == 1000);
  // device synchronize waits for every stream of the current device
  EXPECT(npusimSetDevice(1) == npusimSuccess);
  EXPECT(npusimStreamChargeActivity(comm, npusimActivityCollective, "all_gather", 0, 50000000) == npusimSuccess);
  EXPECT(npusimDeviceSynchronize() == npusimSuccess);
  EXPECT(npusimLaunchKernel(late, &work, nullptr, nullptr) == npusimSuccess);
  EXPECT(sim_time(late) == sim_time(comm) + 1000);
  EXPECT(npusimSetDevice(0) == npusimSuccess);

  EXPECT(npusimResetSimulatedTime() == npusimSuccess);
  EXPECT(sim_time(compute) == 0 && sim_time(comm) == 0 && sim_time(late) == 0);
  for (npusimStream_t s : {compute, comm, late, other}) EXPECT(npusimStreamDestroy(s) == npusimSuccess);
  for (npusimEvent_t e : {start, mid, end}) EXPECT(npusimEventDestroy(e) == npusimSuccess);
}

struct Seen {
  std::vector<npusimActivityRecord> records;
  std::vector<std::string> names;
};
static void observe(const npusimActivityRecord* r, void* user) {
  auto* seen = static_cast<Seen*>(user);
  seen->records.push_back(*r);
  seen->names.push_back(r->name ? r->name : "");
}

static void test_observer_and_totals() {
  EXPECT(npusimResetSimulatedTime() == npusimSuccess);
  EXPECT(npusimCostModelEnabled() == 0);
  Seen seen;
  EXPECT(npusimSetActivityCallback(&observe, &seen) == npusimSuccess);
  EXPECT(npusimCostModelEnabled() == 1);
  npusimStream_t s;
  EXPECT(npusimStreamGetDefault(&s, 0) == npusimSuccess);
  npusimKernelCost k{"aten::mm", 1e9, 8, 0};
  EXPECT(npusimLaunchKernel(nullptr, &work, nullptr, &k) == npusimSuccess);
  void* dev = nullptr;
  EXPECT(npusimMalloc(&dev, 4096) == npusimSuccess);
  std::vector<char> host(4096, 7);
  EXPECT(npusimMemcpyAsync(dev, host.data(), 4096, npusimMemcpyHostToDevice, s) == npusimSuccess);
  EXPECT(npusimMemsetAsync(dev, 0, 4096, s) == npusimSuccess);
  EXPECT(npusimSetActivityCallback(nullptr, nullptr) == npusimSuccess);
  EXPECT(npusimLaunchKernel(s, &work, nullptr, &k) == npusimSuccess);  // not observed
  EXPECT(seen.records.size() == 3);
  if (seen.records.size() == 3) {
    EXPECT(seen.records[0].kind == npusimActivityKernel && seen.names[0] == "aten::mm");
    EXPECT(seen.records[0].flops == 1e9 && seen.records[0].bytes == 8 && seen.records[0].stream == s);
    EXPECT(seen.records[0].sim_end_ns - seen.records[0].sim_start_ns == 1001000);
    EXPECT(seen.records[0].wall_end_ns >= seen.records[0].wall_start_ns);
    EXPECT(seen.records[1].kind == npusimActivityMemcpy && seen.records[1].bytes == 4096);
    EXPECT(seen.records[1].sim_start_ns == seen.records[0].sim_end_ns);
    EXPECT(seen.records[2].kind == npusimActivityMemset && seen.records[2].stream_id == seen.records[0].stream_id);
  }
  // per-name totals while the cost model is on
  size_t count = 99;
  EXPECT(npusimSetCostModel(3) == npusimErrorInvalidValue);
  EXPECT(npusimSetCostModel(1) == npusimSuccess && npusimCostModelEnabled() == 1);
  EXPECT(npusimResetSimulatedTime() == npusimSuccess);
  EXPECT(npusimLaunchKernel(s, &work, nullptr, &k) == npusimSuccess);
  EXPECT(npusimLaunchKernel(s, &work, nullptr, &k) == npusimSuccess);
  EXPECT(npusimLaunchKernel(s, &work, nullptr, nullptr) == npusimSuccess);
  EXPECT(npusimGetOpStats(nullptr, 0, &count) == npusimSuccess && count == 2);
  npusimOpStat stats[2];
  EXPECT(npusimGetOpStats(stats, 2, &count) == npusimSuccess && count == 2);
  bool found = false;
  for (auto& st : stats)
    if (std::strcmp(st.name, "aten::mm") == 0) {
      found = true;
      EXPECT(st.count == 2 && st.flops == 2e9 && st.sim_ns == 2 * 1001000 && st.kind == npusimActivityKernel);
    }
  EXPECT(found);
  EXPECT(npusimGetOpStats(nullptr, 1, &count) == npusimErrorInvalidValue);
  EXPECT(npusimSetCostModel(0) == npusimSuccess && npusimCostModelEnabled() == 0);
  EXPECT(npusimFree(dev) == npusimSuccess);
}

static void test_chip_memory() {
  EXPECT(npusimSetChipMemory(0, nullptr) == npusimErrorInvalidValue);
  EXPECT(npusimSetChipMemory(1 << 20, "bad\\nname\n") == npusimErrorInvalidValue);
  // NPUSIM_DEVICE_MEMORY is set by the test: the environment wins over the chip
  EXPECT(npusimSetChipMemory(size_t(80) << 30, "Chip-X") == npusimSuccess);
  npusimDeviceProp prop;
  EXPECT(npusimGetDeviceProperties(&prop, 0) == npusimSuccess);
  EXPECT(prop.totalGlobalMem == (1u << 20) && std::strcmp(prop.name, "Chip-X") == 0);
}

int main() {
  set_round_chip();
  test_roofline();
  test_dependencies_and_elapsed_time();
  test_observer_and_totals();
  test_chip_memory();
  if (failures) return 1;
  std::printf("sim clock tests passed\n");
  return 0;
}
