// What a rank brings to a group: its settings (read from the environment and checked
// before anything is published) and the record it shows the other ranks through the
// store, so that they can compare configurations and watch it while the group forms.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace torch_npu_sim::dist {

struct LocalSettings {
  std::string transport = "auto";  // NPUSIM_TRANSPORT: auto, shm or tcp
  uint64_t ring_bytes = 1 << 20;   // NPUSIM_SHM_RING_BYTES
  std::chrono::milliseconds peer_timeout{0};  // NPUSIM_PEER_TIMEOUT (0: group timeout only)
  std::string socket_addr;         // NPUSIM_SOCKET_ADDR ("" when unset)
  std::string host_id;             // NPUSIM_HOST_ID ("" when unset: detected)
};
// Throws c10::Error naming the variable and the accepted values on a bad setting.
LocalSettings read_settings();

struct JoinRecord {
  std::string error;  // set: this rank could not join, and why (nothing else is set)
  int world = 0;
  int version = 0;    // wire and handshake version
  std::string host;   // host identity (boot id, namespaces, /dev/shm): ranks that share memory
  std::string pidns;  // pid namespace: where `pid` means something
  int64_t pid = 0;
  uint64_t start_time = 0;  // of `pid`, so that a reused pid is not taken for it
  std::string transport;
  uint64_t ring_bytes = 0;
  std::string addr;  // where this rank listens
  int port = 0;
  bool addr_explicit = false;  // from NPUSIM_SOCKET_ADDR

  std::string encode() const;
  static JoinRecord decode(const std::string& text, int rank);  // throws if malformed
};

JoinRecord local_record(int world, const LocalSettings& settings, const std::string& addr, int port);
// This process as other processes on the host can recognise it, even after it is gone:
// pid namespace (inode), pid and start time (so that a reused pid is not taken for it).
struct ProcessTag {
  uint64_t ns = 0;
  int64_t pid = 0;
  uint64_t start_time = 0;
};
ProcessTag this_process();
// Has that process exited (or become a zombie, or been replaced under its pid)?
bool process_gone(int64_t pid, uint64_t start_time);

// Can `a` see `b`'s process (same host and pid namespace)?
bool can_watch(const JoinRecord& a, const JoinRecord& b);

// The first setting on which the ranks that have joined so far disagree, phrased as
// "rank 2 has world size 4, rank 0 has 3"; "" when they agree. The same records give
// the same text on every rank. `shm`: the ring size matters too.
std::string first_disagreement(const std::vector<std::optional<JoinRecord>>& records, bool shm);

}  // namespace torch_npu_sim::dist
