#include "graphs/Capture.h"

#include <algorithm>
#include <mutex>

#include "core/BlockCache.h"
#include "core/Stream.h"

namespace torch_npu_sim::graphs {

std::atomic<int> captures_underway{0};

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
// capturing stream -> its capture (few entries: a linear scan beats hashing)
std::vector<std::pair<npusimStream_t, Capture*>>& registry() {
  static std::vector<std::pair<npusimStream_t, Capture*>> r;
  return r;
}

Capture* find_locked(npusimStream_t stream) {
  for (auto& [s, c] : registry())
    if (s == stream) return c;
  return nullptr;
}

const char* mode_name(at::GraphCaptureMode mode) {
  switch (mode) {
    case at::GraphCaptureMode::ThreadLocal: return "thread_local";
    case at::GraphCaptureMode::Relaxed: return "relaxed";
    default: return "global";
  }
}

[[noreturn]] void fail_capturing(const char* what, const Capture& c) {
  TORCH_CHECK(false, "npusim graph capture: ", what, " is not permitted while a stream of npusim:",
              static_cast<int>(c.device), " is capturing (capture error mode '", mode_name(c.mode),
              "'), as in CUDA: it would wait for work that is recorded, not run. End the capture first.");
}

}  // namespace

Capture* capture_of(npusimStream_t stream) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  return find_locked(stream);
}

Capture* capture_of_current(c10::DeviceIndex device) {
  return capture_of(runtime_stream(current_stream(device)));
}

void begin(Capture* capture) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  TORCH_CHECK(!find_locked(capture->origin), "npusim graph capture: the current stream is already capturing");
  registry().emplace_back(capture->origin, capture);
  captures_underway.fetch_add(1);
}

void end(Capture* capture) {
  std::vector<npusimStream_t> streams;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto& r = registry();
    r.erase(std::remove_if(r.begin(), r.end(), [&](const auto& e) { return e.second == capture; }), r.end());
    captures_underway.fetch_sub(1);
    streams = capture->streams;
  }
  for (npusimStream_t s : streams) cache().end_pool_allocation(capture->device, s);
}

void fail_unjoined(const Capture& capture) {
  if (capture.unjoined.empty()) return;
  TORCH_CHECK(false, "npusim graph capture: ", capture.unjoined.size(),
              " stream(s) joined the capture and did work the capturing stream never waited for; "
              "make the capturing stream wait for them (wait_stream or an event) before ending the capture");
}

void note_event_record(void* event, const c10::Stream& stream) {
  if (!capture_underway() || !event) return;
  npusimStream_t s = runtime_stream(stream);
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (auto& [_, c] : registry()) c->events.erase(event);  // re-recorded: an earlier capture's mark is stale
  if (Capture* c = find_locked(s)) c->events[event] = s;
}

void note_event_wait(void* event, const c10::Stream& stream) {
  if (!capture_underway() || !event) return;
  npusimStream_t waiter = runtime_stream(stream);
  Capture* joined = nullptr;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    for (auto& entry : registry()) {
      Capture* c = entry.second;  // a copy: joining below grows the registry
      auto it = c->events.find(event);
      if (it == c->events.end()) continue;
      if (Capture* other = find_locked(waiter); other && other != c)
        TORCH_CHECK(false, "npusim graph capture: a stream capturing one graph waited for an event of another capture");
      if (waiter == c->origin) {  // joins a stream back
        auto& u = c->unjoined;
        u.erase(std::remove(u.begin(), u.end(), it->second), u.end());
      } else if (!find_locked(waiter)) {
        c->streams.push_back(waiter);
        registry().emplace_back(waiter, c);
        joined = c;
      }
      break;
    }
  }
  // a joined stream allocates from the graph's pool, as the origin does
  if (joined) cache().begin_pool_allocation(joined->device, joined->pool, waiter);
}

void note_work(Capture& capture, npusimStream_t stream) {
  if (stream == capture.origin) return;
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& u = capture.unjoined;
  if (std::find(u.begin(), u.end(), stream) == u.end()) u.push_back(stream);
}

void check_sync_allowed(const char* what, c10::DeviceIndex device, npusimStream_t stream, void* event) {
  if (!capture_underway()) return;
  std::lock_guard<std::mutex> lock(registry_mutex());
  const auto self = std::this_thread::get_id();
  for (auto& [s, c] : registry()) {
    if (stream && s == stream) fail_capturing(what, *c);
    if (event && c->events.count(event)) fail_capturing(what, *c);
    bool device_wide = !stream && !event && (device < 0 || device == c->device);
    if (device_wide && (c->mode == at::GraphCaptureMode::Global || c->thread == self)) fail_capturing(what, *c);
  }
}

void fail_uncapturable(const std::string& op, const std::string& why) {
  TORCH_CHECK(false, "npusim graph capture: ", op, " cannot be captured: ", why);
}

}  // namespace torch_npu_sim::graphs
