#include "distributed/JoinInfo.h"

#include <c10/util/Exception.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "distributed/Wire.h"

namespace torch_npu_sim::dist {
namespace {

constexpr int kJoinVersion = kWireVersion * 100 + 3;  // handshake version 2; host identity of version 3
// PeerMonitor sends a heartbeat every 100 ms; a peer timeout needs many of them so that a
// busy but healthy rank (a loaded machine, a long kernel) is not declared hung.
constexpr double kMinPeerTimeoutS = 1.0;
constexpr double kMaxPeerTimeoutS = 86400.0;
constexpr uint64_t kMinRing = 4096, kMaxRing = uint64_t(1) << 30, kRingAlign = 64;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Where a rank runs, as far as sharing memory goes. Two ranks are on one host when they
// share the kernel (boot id), the network namespace (namespaces stand for hosts: ranks in
// two of them talk over the network between them, as separate machines would) and the
// same /dev/shm (its device: containers with a private /dev/shm differ; mount namespaces
// alone do not count, since `ip netns exec` gives every process one of its own).
// The host name (UTS namespace) counts too: a process told it runs elsewhere is believed.
std::string namespace_inode(const char* which) {
  struct stat st {};
  return stat((std::string("/proc/self/ns/") + which).c_str(), &st) == 0 ? std::to_string(st.st_ino) : "?";
}

std::string boot_id() {
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  return boot.empty() ? "?" : boot;
}

std::string host_identity(const std::string& override_id) {
  if (!override_id.empty()) return "id:" + override_id;
  const std::string boot = boot_id();
  struct stat shm {};
  std::string shm_dev = stat("/dev/shm", &shm) == 0 ? std::to_string(shm.st_dev) + "." + std::to_string(shm.st_ino) : "?";
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string("name:") + host + ",boot:" + boot + ",net:" + namespace_inode("net") + ",shm:" + shm_dev;
}

std::string pid_namespace() {
  char buf[64] = {0};
  ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : "?";
}

// Field 3 (state) and 22 (start time) of /proc/<pid>/stat; false if there is none.
bool read_stat(int64_t pid, char* state, uint64_t* start) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return false;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 3) *state = field[0];
    if (i == 22) *start = std::strtoull(field.c_str(), nullptr, 10);
  }
  return true;
}

uint64_t parse_bytes(const std::string& text) {
  const char* name = "NPUSIM_SHM_RING_BYTES";
  std::string digits = text, unit;
  size_t cut = text.find_first_not_of("0123456789");
  if (cut != std::string::npos) {
    digits = text.substr(0, cut);
    unit = text.substr(cut);
  }
  uint64_t scale = unit.empty() ? 1 : unit == "KiB" ? 1 << 10 : unit == "MiB" ? 1 << 20 : unit == "GiB" ? 1 << 30 : 0;
  TORCH_CHECK(!digits.empty() && digits.size() <= 12 && scale != 0, "npusim: ", name, "='", text,
              "' is not a byte count (e.g. 1048576 or 1MiB)");
  uint64_t v = std::strtoull(digits.c_str(), nullptr, 10) * scale;
  TORCH_CHECK(v >= kMinRing && v <= kMaxRing, "npusim: ", name, "=", text, " is out of range: it must be between ",
              kMinRing, " and ", kMaxRing, " bytes");
  TORCH_CHECK(v % kRingAlign == 0, "npusim: ", name, "=", text, " must be a multiple of ", kRingAlign,
              " bytes (each ring's counters start on a cache line after the previous ring)");
  return v;
}

std::chrono::milliseconds parse_peer_timeout(const std::string& text) {
  const char* name = "NPUSIM_PEER_TIMEOUT";
  char* end = nullptr;
  double s = std::strtod(text.c_str(), &end);
  TORCH_CHECK(!text.empty() && end && *end == '\0' && std::isfinite(s), "npusim: ", name, "='", text,
              "' is not a number of seconds");
  TORCH_CHECK(s == 0 || (s >= kMinPeerTimeoutS && s <= kMaxPeerTimeoutS), "npusim: ", name, "=", text,
              " is out of range: use 0 (no hang detection) or between ", kMinPeerTimeoutS, " and ", kMaxPeerTimeoutS,
              " seconds (heartbeats go every 0.1 s, so shorter would declare busy but healthy ranks hung)");
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

}  // namespace

LocalSettings read_settings() {
  LocalSettings s;
  if (!env("NPUSIM_TRANSPORT").empty()) s.transport = env("NPUSIM_TRANSPORT");
  TORCH_CHECK(s.transport == "auto" || s.transport == "shm" || s.transport == "tcp",
              "npusim: NPUSIM_TRANSPORT must be auto, shm or tcp, got '", s.transport, "'");
  // An empty variable counts as unset, as a shell's `VAR= command` intends.
  if (!env("NPUSIM_SHM_RING_BYTES").empty()) s.ring_bytes = parse_bytes(env("NPUSIM_SHM_RING_BYTES"));
  if (!env("NPUSIM_PEER_TIMEOUT").empty()) s.peer_timeout = parse_peer_timeout(env("NPUSIM_PEER_TIMEOUT"));
  s.socket_addr = env("NPUSIM_SOCKET_ADDR");
  s.host_id = env("NPUSIM_HOST_ID");
  TORCH_CHECK(s.host_id.size() <= 128 && s.host_id.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == std::string::npos,
              "npusim: NPUSIM_HOST_ID must be at most 128 letters, digits or '._:-', got '", s.host_id, "'");
  return s;
}

JoinRecord local_record(int world, const LocalSettings& settings, const std::string& addr, int port) {
  JoinRecord r;
  r.world = world;
  r.version = kJoinVersion;
  r.host = host_identity(settings.host_id);
  r.pidns = boot_id() + "/" + pid_namespace();  // pids compare only under one kernel
  r.pid = getpid();
  char state = 0;
  read_stat(r.pid, &state, &r.start_time);
  r.transport = settings.transport;
  r.ring_bytes = settings.ring_bytes;
  r.addr = addr;
  r.port = port;
  r.addr_explicit = !settings.socket_addr.empty();
  return r;
}

std::string JoinRecord::encode() const {
  if (!error.empty()) return "error=" + error;  // last and only field: it may hold anything
  std::ostringstream o;
  o << "world=" << world << ";version=" << version << ";host=" << host << ";pidns=" << pidns << ";pid=" << pid
    << ";start=" << start_time << ";transport=" << transport << ";ring=" << ring_bytes << ";addr=" << addr
    << ";port=" << port << ";explicit=" << addr_explicit;
  return o.str();
}

JoinRecord JoinRecord::decode(const std::string& text, int rank) {
  JoinRecord r;
  if (text.rfind("error=", 0) == 0) {
    r.error = text.substr(6);
    return r;
  }
  int seen = 0;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ';')) {
    auto eq = item.find('=');
    TORCH_CHECK(eq != std::string::npos, "npusim: malformed join record from rank ", rank, ": '", text, "'");
    std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    char* end = nullptr;
    long long n = std::strtoll(v.c_str(), &end, 10);
    bool numeric = !v.empty() && *end == '\0';
    ++seen;
    if (k == "world" && numeric) r.world = static_cast<int>(n);
    else if (k == "version" && numeric) r.version = static_cast<int>(n);
    else if (k == "host") r.host = v;
    else if (k == "pidns") r.pidns = v;
    else if (k == "pid" && numeric) r.pid = n;
    else if (k == "start" && numeric) r.start_time = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "transport") r.transport = v;
    else if (k == "ring" && numeric) r.ring_bytes = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "addr") r.addr = v;
    else if (k == "port" && numeric && n > 0 && n < 65536) r.port = static_cast<int>(n);
    else if (k == "explicit" && numeric) r.addr_explicit = n != 0;
    else --seen;
  }
  TORCH_CHECK(seen == 11, "npusim: malformed join record from rank ", rank, ": '", text, "'");
  return r;
}

bool can_watch(const JoinRecord& a, const JoinRecord& b) { return a.host == b.host && a.pidns == b.pidns; }

ProcessTag this_process() {
  ProcessTag t;
  std::string ns = pid_namespace();  // "pid:[4026531836]"
  auto open = ns.find('[');
  if (open != std::string::npos) t.ns = std::strtoull(ns.c_str() + open + 1, nullptr, 10);
  t.pid = getpid();
  char state = 0;
  read_stat(t.pid, &state, &t.start_time);
  return t;
}

bool process_gone(int64_t pid, uint64_t start_time) {
  if (pid <= 0) return true;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  char state = 0;
  uint64_t start = 0;
  // Exists but unreadable (another user under hidepid): alive as far as we can tell.
  if (!read_stat(pid, &state, &start)) return false;
  return state == 'Z' || state == 'X' || start != start_time;
}

std::string first_disagreement(const std::vector<std::optional<JoinRecord>>& records, bool shm) {
  const JoinRecord* base = nullptr;
  int base_rank = -1;
  for (size_t r = 0; r < records.size(); ++r) {
    if (!records[r]) continue;
    const JoinRecord& x = *records[r];
    if (!base) {
      base = &x;
      base_rank = static_cast<int>(r);
      continue;
    }
    auto differ = [&](const std::string& what, const std::string& mine, const std::string& theirs) {
      return "rank " + std::to_string(r) + " has " + what + " " + mine + ", rank " + std::to_string(base_rank) +
             " has " + theirs;
    };
    if (x.version != base->version)
      return differ("protocol version", std::to_string(x.version), std::to_string(base->version)) +
             " (different builds of torch_npu_sim)";
    if (x.world != base->world)
      return differ("world size", std::to_string(x.world), std::to_string(base->world));
    if (shm && x.ring_bytes != base->ring_bytes)
      return differ("NPUSIM_SHM_RING_BYTES", std::to_string(x.ring_bytes), std::to_string(base->ring_bytes));
  }
  return "";
}

}  // namespace torch_npu_sim::dist
