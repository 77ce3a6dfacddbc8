#include "distributed/FaultInjection.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "distributed/Communicator.h"

namespace torch_npu_sim::dist {
namespace {

constexpr int kAnyRank = -1;
constexpr uint32_t kMaxDelayMs = 3600 * 1000;

struct Rule {
  int id = 0;
  int rank = kAnyRank;
  int op = 0;  // OpKind, 0: any
  uint64_t call = 1;
  int64_t step = -1;  // -1: any step
  FaultAction action = FaultAction::None;
  uint32_t delay_ms = 0;
  bool at_read = false;  // at=read: while reading peers' memory in place, not on a message
  std::string text;
  uint64_t matched = 0;
  bool fired = false;
};

std::mutex registry_mutex;
std::vector<Rule> registry;
int next_id = 1;
std::atomic<int> unfired{0};
std::atomic<int64_t> current_step{-1};

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\n"), b = s.find_last_not_of(" \t\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) out.push_back(trim(part));
  return out;
}

// A whole decimal number in [lo, hi], or false.
bool parse_int(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  *out = std::stoll(s);
  return *out >= lo && *out <= hi;
}

const char* kKinds = "any, broadcast, all_reduce, reduce, all_gather, gather, scatter, reduce_scatter, all_to_all, barrier, send";

int parse_kind(const std::string& s) {
  if (s == "any") return 0;
  if (s == "send" || s == "recv" || s == "send/recv") return static_cast<int>(OpKind::Send);
  for (int k = 1; k < static_cast<int>(OpKind::kEnd); ++k)
    if (s == op_name(static_cast<OpKind>(k))) return k;
  return -1;
}

[[noreturn]] void bad(const std::string& source, size_t index, const std::string& rule, const std::string& why) {
  throw std::invalid_argument(source + ": bad fault rule " + std::to_string(index + 1) + " \"" + rule + "\": " + why +
                              " (grammar: rank=N|any,op=KIND|any,call=N,step=N,at=message|read,action=kill|stop|delay:MS|drop|corrupt; "
                              "rules separated by ';')");
}

std::vector<Rule> parse(const std::string& spec, const std::string& source) {
  std::vector<Rule> rules;
  auto texts = split(spec, ';');
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& text = texts[i];
    if (text.empty()) continue;
    Rule r;
    r.text = text;
    bool seen[6] = {};
    for (const std::string& field : split(text, ',')) {
      auto eq = field.find('=');
      if (eq == std::string::npos) bad(source, i, text, "\"" + field + "\" is not key=value");
      std::string key = trim(field.substr(0, eq)), value = trim(field.substr(eq + 1));
      static const char* keys[] = {"rank", "op", "call", "step", "action", "at"};
      int k = 0;
      while (k < 6 && key != keys[k]) ++k;
      if (k == 6) bad(source, i, text, "unknown key \"" + key + "\" (keys: rank, op, call, step, at, action)");
      if (seen[k]) bad(source, i, text, "\"" + key + "\" given twice");
      seen[k] = true;
      int64_t n = 0;
      if (key == "rank") {
        if (value == "any") continue;
        if (!parse_int(value, 0, 1 << 24, &n)) bad(source, i, text, "rank=\"" + value + "\" is not a rank (0, 1, ... or any)");
        r.rank = static_cast<int>(n);
      } else if (key == "op") {
        r.op = parse_kind(value);
        if (r.op < 0) bad(source, i, text, "op=\"" + value + "\" is not an operation (" + kKinds + ")");
      } else if (key == "call") {
        if (!parse_int(value, 1, INT64_MAX / 2, &n)) bad(source, i, text, "call=\"" + value + "\" is not a positive integer (1-based)");
        r.call = static_cast<uint64_t>(n);
      } else if (key == "at") {
        if (value != "message" && value != "read") bad(source, i, text, "at=\"" + value + "\" is not message or read");
        r.at_read = value == "read";
      } else if (key == "step") {
        if (!parse_int(value, 0, INT64_MAX / 2, &n)) bad(source, i, text, "step=\"" + value + "\" is not a non-negative integer");
        r.step = n;
      } else {
        auto colon = value.find(':');
        std::string name = value.substr(0, colon), arg = colon == std::string::npos ? "" : value.substr(colon + 1);
        if (name == "delay") {
          if (!parse_int(arg, 0, kMaxDelayMs, &n))
            bad(source, i, text, "action=\"" + value + "\": delay needs milliseconds, delay:MS with MS in 0.." + std::to_string(kMaxDelayMs));
          r.action = FaultAction::Delay;
          r.delay_ms = static_cast<uint32_t>(n);
          continue;
        }
        if (colon != std::string::npos) bad(source, i, text, "action=\"" + value + "\": only delay takes an argument");
        if (name == "kill") r.action = FaultAction::Kill;
        else if (name == "stop") r.action = FaultAction::Stop;
        else if (name == "drop") r.action = FaultAction::Drop;
        else if (name == "corrupt") r.action = FaultAction::Corrupt;
        else bad(source, i, text, "action=\"" + value + "\" is not one of kill, stop, delay:MS, drop, corrupt");
      }
    }
    if (r.action == FaultAction::None) bad(source, i, text, "no action= given");
    if (r.at_read && (r.action == FaultAction::Drop || r.action == FaultAction::Corrupt))
      bad(source, i, text, "at=read takes kill, stop or delay:MS (no message is sent there)");
    rules.push_back(std::move(r));
  }
  return rules;
}

bool matches(const Rule& r, int rank, OpKind kind, int64_t step) {
  return !r.fired && (r.rank == kAnyRank || r.rank == rank) && (r.op == 0 || r.op == static_cast<int>(kind)) &&
         (r.step < 0 || r.step == step);
}

const char* action_name(FaultAction a) {
  switch (a) {
    case FaultAction::Kill: return "kill";
    case FaultAction::Stop: return "stop";
    case FaultAction::Delay: return "delay";
    case FaultAction::Drop: return "drop";
    case FaultAction::Corrupt: return "corrupt";
    default: return "none";
  }
}

uint32_t crc_table_entry(uint32_t i) {
  for (int k = 0; k < 8; ++k) i = (i >> 1) ^ (0x82f63b78u & (0u - (i & 1)));
  return i;
}

uint32_t crc32c_portable(uint32_t crc, const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) t[i] = crc_table_entry(i);
    return t;
  }();
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}
#endif

}  // namespace

std::vector<int> add_faults(const std::string& spec, const std::string& source) {
  std::vector<Rule> rules = parse(spec, source);
  std::vector<int> ids;
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (Rule& r : rules) {
    r.id = next_id++;
    ids.push_back(r.id);
    registry.push_back(std::move(r));
    unfired.fetch_add(1);
  }
  return ids;
}

void check_fault_spec(const std::string& spec, const std::string& source) { parse(spec, source); }

bool remove_fault(int id) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (auto it = registry.begin(); it != registry.end(); ++it) {
    if (it->id != id) continue;
    if (!it->fired) unfired.fetch_sub(1);
    registry.erase(it);
    return true;
  }
  return false;
}

void clear_faults() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry.clear();
  unfired.store(0);
}

std::vector<FaultRuleState> list_faults() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  std::vector<FaultRuleState> out;
  for (const Rule& r : registry) out.push_back({r.id, r.text, r.matched, r.fired});
  return out;
}

void set_fault_step(int64_t step) { current_step.store(step < 0 ? -1 : step); }
int64_t fault_step() { return current_step.load(); }

void load_fault_env_once() {
  // Parsed on every call until it succeeds, so a bad spec fails every group creation.
  static std::atomic<bool> loaded{false};
  static std::mutex once;
  if (loaded.load()) return;
  std::lock_guard<std::mutex> lock(once);
  if (loaded.load()) return;
  const char* spec = std::getenv("NPUSIM_FAULTS");
  if (spec && *spec) {
    // A variable inherited by accident must not kill or corrupt a real job: the rules act
    // only with a second, explicit opt-in.
    const char* allow = std::getenv("NPUSIM_ALLOW_FAULTS");
    if (allow && std::string(allow) == "1") {
      add_faults(spec, "NPUSIM_FAULTS");
    } else {
      std::fprintf(stderr, "npusim: NPUSIM_FAULTS is set but ignored: fault injection from the environment also "
                           "needs NPUSIM_ALLOW_FAULTS=1\n");
      std::fflush(stderr);
    }
  }
  loaded.store(true);
}

bool faults_armed() { return unfired.load(std::memory_order_relaxed) > 0; }

PlannedFault plan_fault(int rank, OpKind kind) {
  PlannedFault planned;
  const int64_t step = current_step.load();
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (Rule& r : registry) {
    if (!matches(r, rank, kind, step) || ++r.matched != r.call) continue;
    r.fired = true;
    unfired.fetch_sub(1);
    if (planned.action == FaultAction::None) planned = {r.action, r.delay_ms, r.text, r.at_read};  // the first listed wins
  }
  return planned;
}

void perform_fault(const PlannedFault& fault, int rank, const std::string& what) {
  // Said before acting, so a test (or a person) can tell the injected fault from a real one.
  std::fprintf(stderr, "npusim: injected fault on rank %d: %s%s at %s (rule \"%s\")\n", rank, action_name(fault.action),
               fault.action == FaultAction::Delay ? (":" + std::to_string(fault.delay_ms)).c_str() : "",
               what.c_str(), fault.rule.c_str());
  std::fflush(stderr);
  switch (fault.action) {
    case FaultAction::Kill: std::raise(SIGKILL); break;
    case FaultAction::Stop: std::raise(SIGSTOP); break;
    case FaultAction::Delay: std::this_thread::sleep_for(std::chrono::milliseconds(fault.delay_ms)); break;
    default: break;
  }
}

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  static const bool hardware = __builtin_cpu_supports("sse4.2");
  crc = hardware ? crc32c_sse42(crc, p, n) : crc32c_portable(crc, p, n);
#else
  crc = crc32c_portable(crc, p, n);
#endif
  return ~crc;
}

bool checksum_from_env() {
  const char* v = std::getenv("NPUSIM_CHECKSUM");
  std::string s = v ? trim(v) : "";
  if (s.empty() || s == "0") return false;
  if (s == "1") return true;
  throw std::invalid_argument("NPUSIM_CHECKSUM=\"" + s + "\" is not 0 or 1");
}

// ---------------------------------------------------------------- the communicator's hooks

// Counts each collective once (an operation may run several steps under one number) and
// gives its injected fault, if any, to its first outgoing message that can carry it.
FaultAction Communicator::planned_fault(const OpDesc& op) {
  if (!fault_planned_ || op.seq != fault_seq_) {
    if (!faults_armed()) return FaultAction::None;
    fault_planned_ = true;
    fault_seq_ = op.seq;
    op_fault_ = plan_fault(rank(), op.kind);
  }
  return op_fault_.action;
}

void Communicator::fault_at_read(const OpDesc& op, const std::string& what) {
  if (planned_fault(op) == FaultAction::None || !op_fault_.at_read) return;
  perform_fault(std::exchange(op_fault_, PlannedFault{}), rank(), what);
}

void Communicator::plan_faults(std::vector<Transfer>& transfers, const OpDesc& op) {
  if (!fault_planned_ || op.seq != fault_seq_) {
    fault_planned_ = true;
    fault_seq_ = op.seq;
    op_fault_ = faults_armed() ? plan_fault(rank(), op.kind) : PlannedFault{};
  }
  if (op_fault_.action == FaultAction::None || op_fault_.at_read) return;
  for (Transfer& t : transfers) {
    if (!t.send || (op_fault_.action == FaultAction::Corrupt && (t.bytes == 0 || t.control))) continue;
    t.fault = std::exchange(op_fault_, PlannedFault{});
    return;
  }
}

// Before a message's first byte leaves: its checksum, then any injected fault. False when
// the fault drops the message (it counts as sent; its peer never gets it).
bool Communicator::start_send(Transfer& t) {
  if (t.checked) return true;
  t.checked = true;
  if (checksum_) {
    t.header.flags |= kHeaderHasChecksum;
    t.header.checksum = crc32c(0, t.data, t.bytes);
  }
  if (t.fault.action == FaultAction::None) return true;
  PlannedFault fault = std::exchange(t.fault, PlannedFault{});
  perform_fault(fault, rank(), "its message of " + describe(t.header) + " to rank " + std::to_string(t.peer));
  if (fault.action == FaultAction::Drop) {
    t.header_done = sizeof(MessageHeader);
    t.data_done = t.bytes;
    return false;
  }
  if (fault.action == FaultAction::Corrupt && t.bytes > 0) t.corrupt_at = t.bytes / 2;
  return true;
}

// Sends payload bytes; an injected corruption goes out as a flipped copy of one byte
// (the caller's buffer is never touched).
size_t Communicator::send_payload(Transfer& t) {
  size_t len = t.bytes - t.data_done;
  if (t.corrupt_at < t.bytes && t.data_done <= t.corrupt_at) {
    if (t.data_done == t.corrupt_at) {
      uint8_t flipped = static_cast<uint8_t>(t.data[t.corrupt_at] ^ 0xff);
      return transport_->try_send(t.peer, t.lane, &flipped, 1);
    }
    len = t.corrupt_at - t.data_done;
  }
  return transport_->try_send(t.peer, t.lane, t.data + t.data_done, len);
}

void Communicator::verify_checksum(Transfer& t) {
  t.checked = true;
  std::ostringstream why;
  if (!(t.got.flags & kHeaderHasChecksum)) {
    why << "malformed message from rank " << t.peer << " in " << describe(t.got)
        << ": it carries no payload checksum, but this group checks payloads (NPUSIM_CHECKSUM)";
    fail({t.peer}, why.str());
  }
  if (t.crc == t.got.checksum) return;
  char sums[64];
  std::snprintf(sums, sizeof(sums), "CRC32C 0x%08x sent, 0x%08x received", t.got.checksum, t.crc);
  why << "checksum mismatch: the payload rank " << t.peer << " sent to rank " << rank() << " in " << describe(t.got)
      << " was corrupted on the way (" << t.bytes << " bytes, " << sums
      << "); the operation fails rather than return wrong data";
  fail({t.peer}, why.str());
}

}  // namespace torch_npu_sim::dist
