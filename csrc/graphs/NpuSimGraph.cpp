// npusim's implementation of at::GraphImplInterface (torch.accelerator.Graph and
// torch.npusim.NPUGraph): capture on the current stream into a private memory pool,
// replay as one launch on the current stream, with CUDA graphs' semantics.
#include <fstream>

#include <ATen/core/GraphImplInterface.h>
#include <ATen/record_function.h>
#include <c10/core/DeviceType.h>

#include "core/BlockCache.h"
#include "core/Generator.h"
#include "core/Runtime.h"
#include "core/Stream.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"

namespace torch_npu_sim::graphs {
namespace {

std::atomic<uint64_t> next_pool_id{1};

class NpuSimGraph : public at::GraphImplInterface {
 public:
  explicit NpuSimGraph(const at::GraphImplArgs& args) : keep_graph_(args.keep_graph) {}
  ~NpuSimGraph() override {
    try {
      reset();
    } catch (...) {  // a destructor never throws
    }
  }

  void capture_begin(c10::MempoolId_t pool, at::GraphCaptureMode mode) override {
    TORCH_CHECK(!capture_ && !recorded_, "npusim graph: this graph has already captured; reset() it before capturing again");
    c10::DeviceIndex device = static_cast<c10::DeviceIndex>(current_device());
    c10::Stream stream = current_stream(device);
    TORCH_CHECK(stream.id() != default_stream(device).id(),
                "npusim graph: capture on the default stream is not supported (as in CUDA); capture on a side "
                "stream: `with torch.npusim.stream(torch.npusim.Stream()):` or `torch.npusim.graph(g)`, which uses one");
    TORCH_CHECK(pool.first == 0 || pool.second == 0, "npusim graph: invalid pool id (", pool.first, ", ", pool.second, ")");
    pool_ = (pool.first == 0 && pool.second == 0) ? c10::MempoolId_t{0, next_pool_id.fetch_add(1)} : pool;
    auto capture = std::make_unique<Capture>();
    capture->device = device;
    capture->origin = runtime_stream(stream);
    capture->streams = {capture->origin};
    capture->mode = mode == at::GraphCaptureMode::Default ? at::GraphCaptureMode::Global : mode;
    capture->thread = std::this_thread::get_id();
    capture->pool = pool_;
    cache().retain_pool(device, pool_);
    cache().begin_pool_allocation(device, pool_, capture->origin);
    try {
      begin(capture.get());
    } catch (...) {
      cache().end_pool_allocation(device, capture->origin);
      cache().release_pool(device, pool_);
      throw;
    }
    device_ = device;
    capture_ = std::move(capture);
  }

  void capture_end() override {
    TORCH_CHECK(capture_, "npusim graph: capture_end() without capture_begin()");
    TORCH_CHECK(runtime_stream(current_stream(device_)) == capture_->origin,
                "npusim graph: capture_end() must be called on the stream capture began on");
    std::unique_ptr<Capture> capture = std::move(capture_);
    end(capture.get());
    fail_unjoined(*capture);  // the capture is over either way, as CUDA invalidates it
    recording_ = std::move(capture->recording);
    costs_.clear();
    for (const Node& node : recording_.nodes) costs_.push_back(node.cost);
    recorded_ = true;
    if (!keep_graph_) instantiate();
  }

  void instantiate() override {
    TORCH_CHECK(recorded_, "npusim graph: instantiate() needs a captured graph");
    instantiated_ = true;
  }

  void replay() override {
    TORCH_CHECK(recorded_, "npusim graph: replay() needs a captured graph (capture_begin/capture_end first)");
    if (!instantiated_) instantiate();
    c10::Stream stream = current_stream(device_);
    TORCH_CHECK(!capture_of(runtime_stream(stream)),
                "npusim graph: replaying a graph inside another capture is not supported");
    // each replay draws fresh numbers: the generators' offsets advance by what one replay uses
    std::vector<uint64_t> seeds, bases;
    for (const auto& use : recording_.generators) {
      auto [seed, offset] = use.generator.get<NpuSimGenerator>()->reserve_offsets(use.offsets);
      seeds.push_back(seed);
      bases.push_back(offset);
    }
    struct Launch {
      const Recording* recording;
      const std::vector<uint64_t>* seeds;
      const std::vector<uint64_t>* bases;
      std::exception_ptr error;
    } launch{&recording_, &seeds, &bases, nullptr};
    auto run = [](void* arg) {
      auto* l = static_cast<Launch*>(arg);
      try {
        l->recording->replay(*l->seeds, *l->bases);
      } catch (...) {
        l->error = std::current_exception();
      }
    };
    // the profiler shows each replay as one kernel of this name on the stream
    RECORD_FUNCTION_WITH_SCOPE(at::RecordScope::USER_SCOPE, "npusim::graph_replay", c10::ArrayRef<const c10::IValue>{});
    NPUSIM_CHECK(npusimLaunchGraph(runtime_stream(stream), run, &launch, "npusim::graph_replay", costs_.data(),
                                   costs_.size()));
    replays_++;
    if (launch.error) std::rethrow_exception(launch.error);
  }

  void reset() override {
    if (capture_) {
      end(capture_.get());
      capture_.reset();
    }
    if (device_ >= 0 && (recorded_ || pool_ != c10::MempoolId_t{0, 0})) cache().release_pool(device_, pool_);
    recording_ = Recording();
    costs_.clear();
    recorded_ = instantiated_ = false;
    pool_ = {0, 0};
  }

  c10::MempoolId_t pool() const override { return pool_; }

  void enable_debug_mode() override { debug_ = true; }

  // A DOT graph of the recorded nodes in replay order, with the streams they were captured on.
  void debug_dump(const std::string& path) override {
    TORCH_CHECK(debug_, "npusim graph: debug_dump() needs enable_debug_mode() before capture");
    TORCH_CHECK(recorded_, "npusim graph: debug_dump() needs a captured graph");
    std::ofstream out(path);
    TORCH_CHECK(out, "npusim graph: cannot write ", path);
    out << "digraph npusim_graph {\n";
    const auto& nodes = recording_.nodes;
    for (size_t i = 0; i < nodes.size(); ++i) {
      out << "  n" << i << " [label=\"" << nodes[i].name() << "\\nstream " << nodes[i].stream
          << (nodes[i].draw ? "\\nrandom" : "") << "\"];\n";
      if (i > 0) out << "  n" << i - 1 << " -> n" << i << ";\n";
    }
    out << "}\n";
  }

  size_t node_count() const { return recording_.nodes.size(); }

 private:
  bool keep_graph_;
  bool debug_ = false;
  bool recorded_ = false;
  bool instantiated_ = false;
  c10::DeviceIndex device_ = -1;
  c10::MempoolId_t pool_{0, 0};
  std::unique_ptr<Capture> capture_;
  Recording recording_;
  std::vector<npusimKernelCost> costs_;
  uint64_t replays_ = 0;
};

}  // namespace

void register_graph_impl() {
  // the registry's key is the device type's upper-case name, which is ours only once
  // PrivateUse1 has been renamed
  auto key = c10::DeviceTypeName(c10::DeviceType::PrivateUse1, /*lower_case=*/false);
  if (at::GraphImplRegistry()->Has(key)) return;
  at::GraphImplRegistry()->Register(
      key, [](at::GraphImplArgs args) -> std::unique_ptr<at::GraphImplInterface> {
        return std::make_unique<NpuSimGraph>(args);
      });
}

c10::MempoolId_t new_pool_handle() { return {0, next_pool_id.fetch_add(1)}; }

bool current_stream_capturing(c10::DeviceIndex device) {
  return capture_underway() && capture_of_current(device) != nullptr;
}

void record_host_function(c10::DeviceIndex device, std::string name, std::function<void()> fn) {
  npusimStream_t stream = runtime_stream(current_stream(device));
  Capture* capture = capture_of(stream);
  TORCH_INTERNAL_ASSERT(capture, "npusim graph: record_host_function without a capture");
  capture->recording.record_host_function(std::move(name), std::move(fn), stream);
  note_work(*capture, stream);
}

void record_call(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::DeviceIndex device) {
  npusimStream_t stream = runtime_stream(current_stream(device));
  Capture* capture = capture_of(stream);
  TORCH_INTERNAL_ASSERT(capture, "npusim graph: record_call without a capture");
  capture->recording.record(op, stack, device, stream);
  note_work(*capture, stream);
}

}  // namespace torch_npu_sim::graphs
