// Stream capture: while a graph captures on a stream, work launched there is recorded, not
// run (as CUDA stream capture). This file owns the capture state (which streams capture,
// into which graph, in which error mode) and the checks that refuse what cannot be captured.
#pragma once

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include <ATen/core/GraphImplInterface.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/Stream.h>

#include "graphs/Recording.h"
#include "npusim_runtime.h"

namespace torch_npu_sim::graphs {

struct Capture {
  c10::DeviceIndex device;
  npusimStream_t origin;                 // the stream capture began on
  std::vector<npusimStream_t> streams;   // origin and the streams that joined it
  std::vector<npusimStream_t> unjoined;  // joined streams with work the origin has not waited for
  std::map<void*, npusimStream_t> events;  // events recorded on capturing streams during capture
  at::GraphCaptureMode mode;
  std::thread::id thread;
  c10::MempoolId_t pool;
  Recording recording;
};

extern std::atomic<int> captures_underway;  // a relaxed load keeps the hot path free
inline bool capture_underway() { return captures_underway.load(std::memory_order_relaxed) != 0; }

// The capture recording work launched on `stream` (its origin or a joined stream), or null.
Capture* capture_of(npusimStream_t stream);
// ... on the calling thread's current stream of `device`.
Capture* capture_of_current(c10::DeviceIndex device);

void begin(Capture* capture);  // registers it for its origin stream
void end(Capture* capture);    // unregisters it from every stream (and the pool routes)
void fail_unjoined(const Capture& capture);  // raises if a joined stream's work was never joined back

// Stream joins through events (CUDA's rule): a stream that waits for an event recorded on a
// capturing stream joins the capture; the origin waiting for a joined stream's event joins it back.
void note_event_record(void* event, const c10::Stream& stream);
void note_event_wait(void* event, const c10::Stream& stream);
void note_work(Capture& capture, npusimStream_t stream);  // a node recorded on `stream`

// Raises CUDA's "not permitted when stream is capturing" error for `what` when the capture
// state forbids it: a sync of (or an event recorded on) a capturing stream, or a device-wide
// sync from a thread the capture's error mode covers. stream/event may be null.
void check_sync_allowed(const char* what, c10::DeviceIndex device, npusimStream_t stream, void* event = nullptr);

// The error for an op that cannot be captured.
[[noreturn]] void fail_uncapturable(const std::string& op, const std::string& why);

}  // namespace torch_npu_sim::graphs
