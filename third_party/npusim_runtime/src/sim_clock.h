// Simulated time: the chip's timing figures, the cost of a launch, per-stream and host clocks,
// the activity observer and per-name totals. Streams own their clocks (queue.cpp); this file
// owns everything that is not per stream.
#pragma once

#include <atomic>
#include <cstdint>

#include "npusim_runtime.h"

namespace npusim_rt {

struct Interval {
  uint64_t start_ns, end_ns;
};

uint64_t wall_now_ns();

// durations on the current chip
uint64_t kernel_cost_ns(const npusimKernelCost* cost);
uint64_t copy_cost_ns(npusimMemcpyKind kind, double bytes);

// true when launches must be reported (observer set or cost model on); one relaxed load
bool activity_wanted();
bool simulated_timing();

// The host's simulated time on a device: work launched starts no earlier.
uint64_t host_time(int device);
void host_waits_until(int device, uint64_t ns);
// the latest end of any work on the device (what npusimDeviceSynchronize waits for)
uint64_t device_busy_until(int device);

// Advances a stream clock by `duration` from max(clock, host time); returns the work's interval.
Interval advance(std::atomic<uint64_t>& clock, int device, uint64_t duration);
// clock = max(clock, ns)
void raise_clock(std::atomic<uint64_t>& clock, uint64_t ns);

// To the per-name totals (when the cost model is on) and the observer.
void report(const npusimActivityRecord& record);

// host clocks, device busy marks and per-name totals back to zero (streams: queue.cpp)
void reset_shared_clocks();

}  // namespace npusim_rt
