// Which operators npusim runs through the zero-copy fallback although the dispatcher would
// give it a composite kernel (see Fallback.h): those present when npusim loads, and those
// registered afterwards by other libraries.
//
// The dispatcher tells listeners when an operator is defined (or removed), but not when a
// kernel is added, and calls them under its own lock, where no registration may be made.
// So the listener only notes the operator's name; the notes are acted on later, outside
// that lock: when the fallback next runs, when Python registers a CPU or composite kernel
// through torch.library (torch_npu_sim/_op_routing.py names the operator), and after
// torch.ops.load_library. By then an operator defined by a C++ library has all the
// kernels that library gives it.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/dispatch/OperatorOptions.h>
#include <torch/library.h>

#include "aten/Fallback.h"

namespace torch_npu_sim {
namespace {

using c10::DispatchKey;
using c10::OperatorName;

std::atomic<bool> notes_pending{false};

// Notes from the listener; a leaf lock (nothing is called while it is held).
struct Notes {
  std::mutex mutex;
  bool listening = false;
  std::vector<OperatorName> defined, removed;
  std::unordered_set<OperatorName> routed;  // a copy of the router's, for the listener
};

Notes& notes() {
  static auto* n = new Notes();  // never destroyed: the dispatcher may call it at exit
  return *n;
}

class Listener final : public c10::OpRegistrationListener {
 public:
  void onOperatorRegistered(const c10::OperatorHandle& op) override { note(op, false); }
  void onOperatorDeregistered(const c10::OperatorHandle& op) override { note(op, true); }

 private:
  static void note(const c10::OperatorHandle& op, bool removed) {
    auto& n = notes();
    std::lock_guard<std::mutex> lock(n.mutex);
    if (!n.listening) return;  // the operators present when the listener is added
    if (removed && !n.routed.count(op.operator_name())) return;  // not ours (at exit: all of them)
    (removed ? n.removed : n.defined).push_back(op.operator_name());
    notes_pending.store(true, std::memory_order_release);
  }
};

class Router {
 public:
  // The first scan: every operator present now; then listen for new ones.
  int start() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_) return static_cast<int>(routed_.size());
    started_ = true;
    auto& dispatcher = c10::Dispatcher::singleton();
    std::vector<OperatorName> names =
        dispatcher.getAllOpNamesForDispatchKey(DispatchKey::CompositeExplicitAutogradNonFunctional);
    for (auto& name : dispatcher.getAllOpNamesForDispatchKey(DispatchKey::CompositeExplicitAutograd))
      names.push_back(std::move(name));
    for (const auto& name : names) consider(name);
    // kept for the life of the process, like the registrations
    static auto* handle = new c10::RegistrationHandleRAII(dispatcher.addRegistrationListener(std::make_unique<Listener>()));
    (void)handle;
    {
      std::lock_guard<std::mutex> notes_lock(notes().mutex);
      notes().listening = true;
    }
    return static_cast<int>(routed_.size());
  }

  // Acts on the listener's notes, then considers `name` if given. Returns true if `name` is
  // (now) routed by npusim.
  bool update(const std::optional<OperatorName>& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_) return false;
    std::vector<OperatorName> defined, removed;
    {
      auto& n = notes();
      std::lock_guard<std::mutex> notes_lock(n.mutex);
      defined.swap(n.defined);
      removed.swap(n.removed);
      notes_pending.store(false, std::memory_order_release);
    }
    // an operator that was removed loses its routing (it may be defined anew, differently)
    for (const auto& gone : removed) drop(gone);
    for (const auto& added : defined) consider(added);
    if (!name) return false;
    consider(*name);
    return routed_.count(*name) != 0;
  }

  // Before npusim gets a kernel of its own for `name` (torch.library), so that it replaces
  // no registration of ours (the dispatcher would warn about an override).
  bool remove(const OperatorName& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    return drop(name);
  }

  bool routed(const OperatorName& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    return routed_.count(name) != 0;
  }

 private:
  // Routes `name` if it has a CPU kernel and a composite one that npusim would otherwise
  // get, and no npusim kernel of its own.
  void consider(const OperatorName& name) {
    if (routed_.count(name)) return;
    auto op = c10::Dispatcher::singleton().findSchema(name);
    if (!op || op->hasKernelForDispatchKey(DispatchKey::PrivateUse1) ||
        !op->hasKernelForDispatchKey(DispatchKey::CPU) ||
        !(op->hasKernelForDispatchKey(DispatchKey::CompositeExplicitAutogradNonFunctional) ||
          op->hasKernelForDispatchKey(DispatchKey::CompositeExplicitAutograd)))
      return;
    register_fallback(name);
  }

 public:
  // Routes `name`, whose only kernel is a catch-all (CompositeImplicitAutograd) host kernel
  // that reads its tensors through raw pointers, so that on npusim it runs inside a launch.
  bool route_host_kernel(const OperatorName& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (routed_.count(name)) return true;
    auto op = c10::Dispatcher::singleton().findSchema(name);
    if (!op || op->hasKernelForDispatchKey(DispatchKey::PrivateUse1) ||
        op->hasKernelForDispatchKey(DispatchKey::CPU) ||
        !op->hasKernelForDispatchKey(DispatchKey::CompositeImplicitAutograd))
      return false;
    const auto& args = op->schema().arguments();
    bool takes_tensors = std::any_of(args.begin(), args.end(), [](const c10::Argument& a) {
      return a.type()->kind() == c10::TypeKind::TensorType ||
             (a.type()->kind() == c10::TypeKind::OptionalType &&
              a.type()->castRaw<c10::OptionalType>()->getElementType()->kind() == c10::TypeKind::TensorType) ||
             (a.type()->kind() == c10::TypeKind::ListType &&
              a.type()->castRaw<c10::ListType>()->getElementType()->kind() == c10::TypeKind::TensorType);
    });
    if (!takes_tensors) return false;
    register_fallback(name);
    return true;
  }

 private:
  void register_fallback(const OperatorName& name) {
    const std::string& ns_and_name = name.name;
    auto sep = ns_and_name.find("::");
    if (sep == std::string::npos) return;
    std::string op_name = ns_and_name.substr(sep + 2);
    if (!name.overload_name.empty()) op_name += "." + name.overload_name;
    auto library = std::make_unique<torch::Library>(torch::Library::IMPL, ns_and_name.substr(0, sep),
                                                    DispatchKey::PrivateUse1, __FILE__, __LINE__);
    library->impl(op_name.c_str(), npusim_fallback_function());
    routed_.emplace(name, std::move(library));
    std::lock_guard<std::mutex> notes_lock(notes().mutex);
    notes().routed.insert(name);
  }

  // Deregisters npusim's kernel for `name` (destroying its library), if it has one.
  bool drop(const OperatorName& name) {
    auto it = routed_.find(name);
    if (it == routed_.end()) return false;
    {
      std::lock_guard<std::mutex> notes_lock(notes().mutex);
      notes().routed.erase(name);
    }
    routed_.erase(it);
    return true;
  }

  std::mutex mutex_;  // taken before the dispatcher's (never while it is held)
  bool started_ = false;
  std::unordered_map<OperatorName, std::unique_ptr<torch::Library>> routed_;
};

Router& router() {
  // never destroyed: at exit the dispatcher may already be gone, and with it what the
  // registrations would deregister
  static auto* r = new Router();
  return *r;
}

std::optional<OperatorName> parse_name(const std::string& qualified) {
  if (qualified.find("::") == std::string::npos) return std::nullopt;
  auto dot = qualified.find('.', qualified.find("::") + 2);
  if (dot == std::string::npos) return OperatorName(qualified, "");
  std::string overload = qualified.substr(dot + 1);
  if (overload == "default") overload.clear();
  return OperatorName(qualified.substr(0, dot), overload);
}

}  // namespace

int route_structured_ops_to_fallback() { return router().start(); }

void route_new_ops_if_noted() {
  if (notes_pending.load(std::memory_order_acquire)) router().update(std::nullopt);
}

bool route_new_ops(const std::string& qualified_name) {
  return router().update(qualified_name.empty() ? std::nullopt : parse_name(qualified_name));
}

bool unroute_op(const std::string& qualified_name) {
  auto name = parse_name(qualified_name);
  return name && router().remove(*name);
}

bool route_host_kernel(const std::string& qualified_name) {
  auto name = parse_name(qualified_name);
  return name && router().route_host_kernel(*name);
}

bool op_is_routed(const std::string& qualified_name) {
  auto name = parse_name(qualified_name);
  return name && router().routed(*name);
}

}  // namespace torch_npu_sim
