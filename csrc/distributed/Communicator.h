// The engine under the c10d backend: a group of ranks joined by a transport, a peer
// monitor and a health state machine, and a progress loop that moves many messages at
// once. Collective algorithms (algorithms/) describe each step as a set of transfers;
// the loop drives them until done, a peer fails, or the deadline passes.
#pragma once

#include <c10/core/ScalarType.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/FaultInjection.h"
#include "distributed/Health.h"
#include "distributed/PeerMonitor.h"
#include "distributed/Transport.h"
#include "distributed/Wire.h"

namespace torch_npu_sim::dist {

using Clock = std::chrono::steady_clock;

// One message to or from one peer.
struct Transfer {
  bool send = false;
  int peer = -1;
  Lane lane = Lane::Collective;
  MessageHeader header{};  // sent as is, or the header a receive expects
  uint8_t* data = nullptr;
  size_t bytes = 0;
  // Receives only: combine the payload into `data` (element-wise `reduce_op`) instead
  // of copying it. Combining receives run one at a time in list order, so sums are the
  // same from run to run.
  bool combine = false;
  c10::ScalarType dtype = c10::ScalarType::Byte;
  uint8_t reduce_op = 0;
  // Point-to-point only: called once, on completion or failure.
  std::function<void(std::exception_ptr)> on_done;
  // A receive from any source (peer < 0): told which peer's message it took.
  std::function<void(int peer)> on_matched;
  Clock::time_point deadline{};
  // Sends only: an injected fault to apply when this message starts (FaultInjection.h).
  PlannedFault fault;
  // Sends only: the algorithm's own bookkeeping (peer memory handles), not payload: an
  // injected corruption passes it by for the operation's payload.
  bool control = false;

  // progress
  size_t header_done = 0;
  size_t data_done = 0;
  MessageHeader got{};
  std::vector<uint8_t> staging;
  size_t staged = 0;
  size_t corrupt_at = SIZE_MAX;  // payload byte flipped on the wire (injected fault)
  uint32_t crc = 0;              // CRC32C of the payload bytes moved so far
  bool checked = false;          // checksum verified (receives)
  bool done() const { return header_done == sizeof(MessageHeader) && data_done == bytes; }
};

struct GroupConfig {
  std::string name;
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{1800000};
};

class Communicator {
 public:
  Communicator(GroupConfig config, std::unique_ptr<Transport> transport,
               std::unique_ptr<PeerMonitor> monitor, std::shared_ptr<GroupHealth> health);
  ~Communicator();

  int rank() const { return config_.rank; }
  int world() const { return config_.world; }
  const GroupConfig& config() const { return config_; }
  GroupHealth& health() { return *health_; }
  // The time limit of the operation about to run (named when it times out).
  void set_op_timeout(std::chrono::milliseconds t) { op_timeout_ = t; }
  Transport& transport() { return *transport_; }
  const char* transport_name() const { return transport_->name(); }
  // Per rank of the group: "self", "shm" or "tcp" (how this rank reaches it).
  void set_peer_transports(std::vector<std::string> kinds) { peer_transports_ = std::move(kinds); }
  const std::vector<std::string>& peer_transports() const { return peer_transports_; }
  // Payload checksums (NPUSIM_CHECKSUM, agreed at rendezvous): senders put the CRC32C of
  // every payload in its header, receivers verify it as the bytes arrive.
  void set_checksum(bool on) { checksum_ = on; }
  bool checksum() const { return checksum_; }

  Transfer send_to(int peer, const OpDesc& op, const void* data, size_t bytes) const;
  Transfer recv_from(int peer, const OpDesc& op, void* data, size_t bytes) const;
  // A rank that only sends in a step still learns what its peers called: each receiver
  // answers with an empty message carrying its own description of the operation.
  static constexpr uint8_t kAckStep = 0xff;
  Transfer ack_to(int peer, const OpDesc& op) const;
  Transfer ack_from(int peer, const OpDesc& op) const;
  Transfer combine_from(int peer, const OpDesc& op, void* data, size_t bytes,
                        c10::ScalarType dtype) const;

  // Drives `transfers` (and any point-to-point traffic in flight) to completion.
  // Throws c10::DistBackendError on failure, mismatch or timeout, after marking the group
  // failed and telling the peers.
  void run(std::vector<Transfer>& transfers, const OpDesc& op, Clock::time_point deadline);

  // Point-to-point: messages on the P2P lane progress beside collectives. Sends to a
  // peer leave in posting order; an arriving message goes to the first posted receive
  // from that peer with its tag (as gloo matches), so receives may be posted in any order.
  void post(Transfer transfer);
  bool p2p_pending() const { return !p2p_.empty(); }
  // Progresses point-to-point traffic until it is all done or `stop()` turns true.
  void drive_p2p(const std::function<bool()>& stop);
  void fail_p2p(std::exception_ptr error);
  uint64_t next_p2p_seq(int peer, bool send) { return (send ? p2p_send_seq_ : p2p_recv_seq_)[peer]++; }

  // Announces a failure found here to every peer, then throws it.
  [[noreturn]] void fail(std::vector<int> ranks, const std::string& why);
  void leave();  // orderly goodbye (destroy_process_group)

  std::vector<uint8_t>& scratch(size_t bytes);
  // The injected fault this rank will apply to operation `op` (planned once per operation;
  // FaultInjection.cpp), so an algorithm can choose a path the fault can act on.
  FaultAction planned_fault(const OpDesc& op);
  // Carries out an at=read fault planned for `op`, if any (`what` names the moment).
  void fault_at_read(const OpDesc& op, const std::string& what);
  // Whether every rank can map its peers' device memory (PeerMemory.cpp): learned by the
  // whole group at its first large collective.
  enum class PeerAccess : uint8_t { Unknown, Yes, No };
  std::atomic<PeerAccess> peer_access{PeerAccess::Unknown};

 private:
  bool step(Transfer& t, const OpDesc* op);
  bool combine_in_place(Transfer& t, size_t& moved);
  bool progress_p2p();
  bool read_header(int peer, const Transfer& t);
  bool peer_left_mid_operation(const std::vector<Transfer>& transfers, bool& left_seen, const std::string& during);
  bool progress_recv(Transfer& t);
  void lost_peer(int peer, const std::string& detail, const std::string& during);
  void add_interests(const Transfer& t, std::vector<Interest>& out) const;
  [[noreturn]] void timeout(const std::vector<Transfer>& pending, const OpDesc& op);
  // Fault and checksum hooks of the send and receive paths (in FaultInjection.cpp).
  void plan_faults(std::vector<Transfer>& transfers, const OpDesc& op);
  bool start_send(Transfer& t);
  size_t send_payload(Transfer& t);
  void verify_checksum(Transfer& t);

  GroupConfig config_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<PeerMonitor> monitor_;
  std::shared_ptr<GroupHealth> health_;
  std::list<Transfer> p2p_;  // stable addresses: receiving_ points into it
  std::vector<MessageHeader> incoming_;  // per peer: the header of the next P2P message
  std::vector<size_t> incoming_done_;
  std::vector<Transfer*> receiving_;     // per peer: the receive that message was matched to
  std::vector<uint64_t> p2p_send_seq_, p2p_recv_seq_;
  std::vector<uint8_t> scratch_;
  std::chrono::milliseconds op_timeout_{0};
  bool checksum_ = false;
  std::vector<std::string> peer_transports_;
  // The collective whose fault is planned, and the part not yet given to a message.
  bool fault_planned_ = false;
  uint64_t fault_seq_ = 0;
  PlannedFault op_fault_;
};

}  // namespace torch_npu_sim::dist
