#include "distributed/Communicator.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "distributed/Reduction.h"

namespace torch_npu_sim::dist {
namespace {

constexpr size_t kStagingBytes = 256 << 10;  // combine in cache-sized pieces
constexpr auto kMaxSleep = std::chrono::milliseconds(100);
constexpr auto kSilence = std::chrono::milliseconds(1000);
constexpr auto kLastWordsWait = std::chrono::milliseconds(500);

std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream s;
  s << (ranks.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < ranks.size(); ++i) s << (i ? ", " : "") << ranks[i];
  return s.str();
}

}  // namespace

Communicator::Communicator(GroupConfig config, std::unique_ptr<Transport> transport,
                           std::unique_ptr<PeerMonitor> monitor, std::shared_ptr<GroupHealth> health)
    : config_(std::move(config)),
      transport_(std::move(transport)),
      monitor_(std::move(monitor)),
      health_(std::move(health)),
      incoming_(config_.world),
      incoming_done_(config_.world, 0),
      receiving_(config_.world, nullptr),
      p2p_send_seq_(config_.world, 0),
      p2p_recv_seq_(config_.world, 0) {
  Transport* t = transport_.get();
  PeerMonitor* m = monitor_.get();
  GroupHealth* h = health_.get();
  health_->on_change = [t, m, h] {
    if (h->state() == HealthState::Failed && h->failure_is_local() && m) m->announce(h->failed_ranks(), h->reason());
    t->interrupt();
  };
  if (monitor_) monitor_->start();
}

Communicator::~Communicator() {
  health_->on_change = nullptr;
  monitor_.reset();
}

void Communicator::leave() {
  if (monitor_) monitor_->leave();
}

Transfer Communicator::send_to(int peer, const OpDesc& op, const void* data, size_t bytes) const {
  Transfer t;
  t.send = true;
  t.peer = peer;
  t.lane = op.kind == OpKind::Send ? Lane::P2P : Lane::Collective;
  t.header = make_header(op, rank(), bytes);
  t.data = static_cast<uint8_t*>(const_cast<void*>(data));
  t.bytes = bytes;
  return t;
}

Transfer Communicator::recv_from(int peer, const OpDesc& op, void* data, size_t bytes) const {
  Transfer t;
  t.peer = peer;
  t.lane = op.kind == OpKind::Send ? Lane::P2P : Lane::Collective;
  t.header = make_header(op, peer, bytes);
  t.data = static_cast<uint8_t*>(data);
  t.bytes = bytes;
  return t;
}

Transfer Communicator::ack_to(int peer, const OpDesc& op) const {
  OpDesc o = op;
  o.step = kAckStep;
  return send_to(peer, o, nullptr, 0);
}

Transfer Communicator::ack_from(int peer, const OpDesc& op) const {
  OpDesc o = op;
  o.step = kAckStep;
  return recv_from(peer, o, nullptr, 0);
}

Transfer Communicator::combine_from(int peer, const OpDesc& op, void* data, size_t bytes,
                                    c10::ScalarType dtype) const {
  Transfer t = recv_from(peer, op, data, bytes);
  t.combine = true;
  t.dtype = dtype;
  t.reduce_op = op.reduce_op;
  return t;
}

std::vector<uint8_t>& Communicator::scratch(size_t bytes) {
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return scratch_;
}

void Communicator::fail(std::vector<int> ranks, const std::string& why) {
  health_->fail(std::move(ranks), why);
  health_->throw_error();
}

void Communicator::lost_peer(int peer, const std::string& detail, const std::string& during) {
  // A peer that failed first announces why on its control connection, then exits; its
  // data connection may break before the monitor has read that announcement. Let the
  // monitor finish reading the control connection, so the first cause wins.
  if (monitor_) monitor_->wait_closed(peer, kLastWordsWait);
  health_->throw_if_unhealthy();
  std::string why;
  if (monitor_ && monitor_->has_left(peer)) {
    why = "rank " + std::to_string(peer) + " left the group (its process group was destroyed or its process exited) while rank " +
          std::to_string(rank()) + " still expected data from it in " + during;
  } else {
    why = "rank " + std::to_string(peer) + " is gone: " + detail + " during " + during +
          " (the process exited, crashed or was killed)";
  }
  fail({peer}, why);
}

// Combines whole elements straight out of the transport's memory when it can (shared
// memory), saving a copy; false when the staging path must be used.
bool Communicator::combine_in_place(Transfer& t, size_t& moved) {
  moved = 0;
  if (t.staged != 0) return false;  // finish a split element through staging first
  size_t available = 0;
  const void* src = transport_->peek(t.peer, t.lane, &available);
  if (!src) return false;
  size_t esize = c10::elementSize(t.dtype);
  size_t take = std::min(std::min(available, t.bytes - t.data_done), kStagingBytes);
  take -= take % esize;
  if (take == 0) return available == 0;  // nothing yet (true), or an element split by the ring's end (false)
  if (checksum_) t.crc = crc32c(t.crc, src, take);
  combine(t.data + t.data_done, src, take / esize, t.dtype, t.reduce_op);
  transport_->consume(t.peer, t.lane, take);
  t.data_done += take;
  moved = take;
  return true;
}

// One non-blocking attempt to move `t` forward; true if any byte moved.
bool Communicator::step(Transfer& t, const OpDesc* op) {
  bool moved = false;
  try {
    if (t.send && t.header_done == 0 && !start_send(t)) return true;
    if (t.header_done < sizeof(MessageHeader)) {
      size_t n = t.send ? transport_->try_send(t.peer, t.lane, reinterpret_cast<const char*>(&t.header) + t.header_done,
                                               sizeof(MessageHeader) - t.header_done)
                        : transport_->try_recv(t.peer, t.lane, reinterpret_cast<char*>(&t.got) + t.header_done,
                                               sizeof(MessageHeader) - t.header_done);
      t.header_done += n;
      moved = n > 0;
      if (t.header_done < sizeof(MessageHeader)) return moved;
      if (!t.send) {
        std::string problem = check_header(t.got, t.header, t.peer, rank());
        if (!problem.empty()) fail({t.peer}, problem);
      }
    }
    while (t.data_done < t.bytes) {
      size_t n;
      if (t.send) {
        n = send_payload(t);
        t.data_done += n;
      } else if (!t.combine) {
        n = transport_->try_recv(t.peer, t.lane, t.data + t.data_done, t.bytes - t.data_done);
        if (checksum_) t.crc = crc32c(t.crc, t.data + t.data_done, n);
        t.data_done += n;
      } else if (combine_in_place(t, n)) {
        // combined straight from the transport's memory
      } else {
        if (t.staging.empty()) t.staging.resize(std::min(kStagingBytes, t.bytes));
        size_t want = std::min(t.staging.size() - t.staged, t.bytes - t.data_done - t.staged);
        n = transport_->try_recv(t.peer, t.lane, t.staging.data() + t.staged, want);
        if (checksum_) t.crc = crc32c(t.crc, t.staging.data() + t.staged, n);
        t.staged += n;
        size_t esize = c10::elementSize(t.dtype);
        size_t whole = t.staged - t.staged % esize;
        if (whole > 0) {
          combine(t.data + t.data_done, t.staging.data(), whole / esize, t.dtype, t.reduce_op);
          t.data_done += whole;
          std::memmove(t.staging.data(), t.staging.data() + whole, t.staged - whole);
          t.staged -= whole;
        }
      }
      if (n == 0) break;
      moved = true;
    }
    if (checksum_ && !t.send && !t.checked && t.done()) verify_checksum(t);
  } catch (const PeerLost& e) {
    lost_peer(e.peer, e.what(), op ? describe(*op) : describe(t.header));
  }
  return moved;
}

void Communicator::add_interests(const Transfer& t, std::vector<Interest>& out) const {
  if (t.done()) return;
  if (t.peer >= 0) {
    out.push_back({t.peer, t.lane, t.send});
    return;
  }
  for (int p = 0; p < world(); ++p)  // a receive from any source
    if (p != rank()) out.push_back({p, t.lane, t.send});
}

void Communicator::timeout(const std::vector<Transfer>& pending, const OpDesc& op) {
  std::vector<int> waiting;
  for (const Transfer& t : pending)
    for (int p = 0; p < world(); ++p)
      if (!t.done() && (t.peer == p || (t.peer < 0 && p != rank())) &&
          std::find(waiting.begin(), waiting.end(), p) == waiting.end())
        waiting.push_back(p);
  std::sort(waiting.begin(), waiting.end());
  std::vector<int> silent = monitor_ ? monitor_->silent_peers(kSilence) : std::vector<int>{};
  std::ostringstream why;
  why << "Timed out after " << (op_timeout_.count() > 0 ? op_timeout_ : config_.timeout).count() << " ms in " << describe(op) << " on rank "
      << rank() << ", waiting for " << rank_list(waiting);
  if (!silent.empty())
    why << "; no heartbeat from " << rank_list(silent) << " for over " << kSilence.count()
        << " ms (the process is stopped, hung or unreachable)";
  fail(silent.empty() ? waiting : silent, why.str());
}

void Communicator::run(std::vector<Transfer>& transfers, const OpDesc& op, Clock::time_point deadline) {
  health_->throw_if_unhealthy();
  if (faults_armed() || fault_planned_) plan_faults(transfers, op);
  std::vector<Interest> interests;
  std::vector<uint8_t> busy;
  bool left_seen = false;
  for (;;) {
    uint64_t ticket = transport_->ticket();
    bool moved = false, all_done = true, combining = false;
    // Each stream (peer, direction) carries one message at a time, in list order.
    busy.assign(static_cast<size_t>(world()) * 2, 0);
    for (Transfer& t : transfers) {
      if (t.done()) continue;
      all_done = false;
      uint8_t& stream = busy[static_cast<size_t>(t.peer) * 2 + (t.send ? 1 : 0)];
      if (stream) continue;
      stream = 1;
      if (t.combine) {
        if (combining) continue;  // an earlier combining receive goes first
        combining = true;
      }
      moved |= step(t, &op);
    }
    moved |= progress_p2p();
    if (all_done) return;
    if (moved) continue;
    health_->throw_if_unhealthy();
    if (peer_left_mid_operation(transfers, left_seen, describe(op))) continue;
    auto now = Clock::now();
    if (now >= deadline) timeout(transfers, op);
    interests.clear();
    for (const Transfer& t : transfers) add_interests(t, interests);
    for (const Transfer& t : p2p_) add_interests(t, interests);
    auto sleep = std::min<Clock::duration>(kMaxSleep, deadline - now);
    transport_->wait(ticket, interests, std::chrono::duration_cast<std::chrono::microseconds>(sleep));
  }
}

void Communicator::post(Transfer transfer) {
  if (transfer.send && faults_armed()) transfer.fault = plan_fault(rank(), OpKind::Send);
  p2p_.push_back(std::move(transfer));
}

// Reads the header of peer p's next point-to-point message, as far as it has arrived.
bool Communicator::read_header(int p, const Transfer& t) {
  if (incoming_done_[p] >= sizeof(MessageHeader)) return false;
  try {
    size_t n = transport_->try_recv(p, Lane::P2P, reinterpret_cast<char*>(&incoming_[p]) + incoming_done_[p],
                                    sizeof(MessageHeader) - incoming_done_[p]);
    incoming_done_[p] += n;
    return n > 0;
  } catch (const PeerLost& e) {
    lost_peer(e.peer, e.what(), describe(t.header));
  }
  return false;
}

// A receive: the next message from its peer is read up to its header, then given to
// the first posted receive with that tag; the payload goes to that receive. A receive
// from any source takes the first peer (in rank order) whose next message has its tag.
bool Communicator::progress_recv(Transfer& t) {
  bool moved = false;
  if (t.peer < 0) {
    for (int p = 0; p < world() && t.peer < 0; ++p) {
      if (p == rank() || receiving_[p] != nullptr) continue;
      moved |= read_header(p, t);
      const MessageHeader& h = incoming_[p];
      if (incoming_done_[p] == sizeof(MessageHeader) && (h.magic != kWireMagic || h.tag == t.header.tag)) {
        t.peer = p;
        t.header.src_rank = p;
        if (t.on_matched) t.on_matched(p);
      }
    }
    if (t.peer < 0) return moved;
  }
  const int p = t.peer;
  if (receiving_[p] != nullptr && receiving_[p] != &t) return moved;
  if (receiving_[p] == nullptr) {
    moved |= read_header(p, t);
    if (incoming_done_[p] < sizeof(MessageHeader)) return moved;
    const MessageHeader& h = incoming_[p];
    if (h.magic == kWireMagic && h.tag != t.header.tag) return moved;  // for another receive
    std::string problem = check_header(h, t.header, p, rank());
    if (!problem.empty()) fail({p}, problem);
    t.got = h;
    t.header_done = sizeof(MessageHeader);
    incoming_done_[p] = 0;
    receiving_[p] = &t;
  }
  moved |= step(t, nullptr);
  if (t.done()) receiving_[p] = nullptr;
  return moved;
}

bool Communicator::progress_p2p() {
  if (p2p_.empty()) return false;
  bool moved = false;
  // Sends to a peer leave one at a time, in posting order.
  std::vector<uint8_t> sending(static_cast<size_t>(world()), 0);
  for (auto it = p2p_.begin(); it != p2p_.end();) {
    if (it->send) {
      if (sending[it->peer]) {
        ++it;
        continue;
      }
      sending[it->peer] = 1;
      moved |= step(*it, nullptr);
    } else {
      moved |= progress_recv(*it);
    }
    if (it->done()) {
      auto done = std::move(it->on_done);
      it = p2p_.erase(it);
      if (done) done(nullptr);
      sending.assign(sending.size(), 0);  // the next message of that stream may start now
      it = p2p_.begin();
      continue;
    }
    if (Clock::now() >= it->deadline) {
      std::vector<Transfer> pending{*it};
      OpDesc desc;
      desc.kind = OpKind::Send;
      desc.tag = it->header.tag;
      desc.dtype = it->header.dtype;
      desc.numel = it->header.numel;
      timeout(pending, desc);
    }
    ++it;
  }
  return moved;
}

// A peer that said goodbye sends nothing more. Over TCP its closed sockets show that;
// shared memory has no such signal, so a transfer still waiting on a departed peer fails
// here, after one more full pass has consumed whatever it sent before leaving.
bool Communicator::peer_left_mid_operation(const std::vector<Transfer>& transfers, bool& left_seen,
                                           const std::string& during) {
  if (!monitor_) return false;
  int gone = -1;
  for (const Transfer& t : transfers)
    if (!t.done() && t.peer >= 0 && monitor_->has_left(t.peer)) gone = t.peer;
  for (const Transfer& t : p2p_)
    if (!t.done() && t.peer >= 0 && monitor_->has_left(t.peer)) gone = t.peer;
  if (gone < 0) return false;
  if (left_seen) lost_peer(gone, "", during);
  left_seen = true;
  return true;
}

void Communicator::drive_p2p(const std::function<bool()>& stop) {
  std::vector<Interest> interests;
  bool left_seen = false;
  while (!p2p_.empty() && !stop()) {
    uint64_t ticket = transport_->ticket();
    if (progress_p2p()) continue;
    health_->throw_if_unhealthy();
    if (peer_left_mid_operation({}, left_seen, "a send/recv")) continue;
    interests.clear();
    for (const Transfer& t : p2p_) add_interests(t, interests);
    transport_->wait(ticket, interests, std::chrono::duration_cast<std::chrono::microseconds>(kMaxSleep));
  }
}

void Communicator::fail_p2p(std::exception_ptr error) {
  std::fill(receiving_.begin(), receiving_.end(), nullptr);
  while (!p2p_.empty()) {
    auto done = std::move(p2p_.front().on_done);
    p2p_.pop_front();
    if (done) done(error);
  }
}

}  // namespace torch_npu_sim::dist
