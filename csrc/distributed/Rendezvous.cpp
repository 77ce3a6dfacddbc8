// Joining a group, in four steps, every wait bounded by the group's timeout and watched
// so that a failure anywhere ends every rank's wait early with the reason:
//   1. records: each rank publishes its settings, host, pid and listening address in the
//      store (rank 0 also the group secret) and reads everyone's; disagreements (world
//      size, ring size, build) are named at once, on every rank.
//   2. addresses: ranks on several hosts without NPUSIM_SOCKET_ADDR re-listen on a
//      routable address and publish it (one host: loopback, known from step 1).
//   3. connections: dial lower ranks, accept higher ones, mutual HMAC proof (Handshake).
//   4. commit over the control connections: each host's lowest rank creates that host's
//      shared memory, the host's other ranks map it and say so, it unlinks it and reports
//      to rank 0, which tells everyone the outcome, so the group is created on all ranks
//      or on none. Pairs on one host use shared memory, pairs across hosts TCP; a host
//      is a kernel, network namespace and /dev/shm (JoinInfo.h), or NPUSIM_HOST_ID.
// While waiting, a rank watches the store for failures reported by others and, on its
// own host, whether the processes that joined are still alive.
#include "distributed/Rendezvous.h"

#include "core/BlockCache.h"
#include "distributed/PeerMemory.h"

#include <c10/util/Exception.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <thread>

#include "distributed/Handshake.h"
#include "distributed/JoinInfo.h"
#include "distributed/ErrorMessage.h"
#include "distributed/FaultInjection.h"
#include "distributed/Socket.h"

namespace torch_npu_sim::dist {
namespace {

enum Channel : uint8_t { kControl = 0, kDataCollective = 1, kDataP2P = 2 };
constexpr auto kSlice = std::chrono::milliseconds(100);  // store waits, between two watches

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) (s += hex[p[i] >> 4]) += hex[p[i] & 15];
  return s;
}

// Thrown when another rank's reported failure ends this rank's join (not re-reported).
struct Propagated {};

class Joiner {
 public:
  Joiner(const KeyValueStore& store, const GroupConfig& config)
      : store_(store), config_(config), deadline_(net::Clock::now() + config.timeout),
        records_(config.world) {}

  ~Joiner() {
    if (listen_fd_ >= 0) close(listen_fd_);
    for (int fd : control_)
      if (fd >= 0) close(fd);
    for (auto& lanes : data_)
      for (int fd : lanes)
        if (fd >= 0) close(fd);
  }

  std::unique_ptr<Communicator> join() {
    const int me = config_.rank;
    generation_ = static_cast<uint64_t>(store_.add("npusim/join/" + std::to_string(me), 1) - 1);
    prefix_ = "npusim/" + std::to_string(generation_) + "/";
    try {
      settings_ = read_settings();
      load_fault_env_once();
      checksum_ = checksum_from_env();
      peer_access_ = peer_access_from_env();
      std::string bound;
      listen_fd_ = net::listen_on(settings_.socket_addr.empty() ? "127.0.0.1" : settings_.socket_addr, &port_, &bound);
      records_[me] = local_record(config_.world, settings_, bound, port_);
    } catch (const std::exception& e) {
      JoinRecord failed;
      failed.error = message_of(e);
      try {
        publish("rank/" + std::to_string(me), failed.encode());  // so the others fail now, not at the timeout
      } catch (...) {
      }
      report(failed.error);
      throw;
    }
    try {
      if (me == 0) {
        random_bytes(secret_.data(), secret_.size());
        publish("secret", to_hex(secret_.data(), secret_.size()));
        publish("checksum", checksum_ ? "1" : "0");  // before rank 0's record, which the others wait for
      }
      publish("rank/" + std::to_string(me), records_[me]->encode());
      return build();
    } catch (const Propagated&) {
      C10_THROW_ERROR(DistBackendError, propagated_);
    } catch (const std::exception& e) {
      if (!everyone_knows_) report(message_of(e));
      throw;
    }
  }

 private:
  std::unique_ptr<Communicator> build() {
    const int world = config_.world, me = config_.rank;
    for (int r = 0; r < world; ++r) {
      if (r == me) continue;
      JoinRecord rec = JoinRecord::decode(fetch("rank/" + std::to_string(r), "rank " + std::to_string(r) + " to join"), r);
      TORCH_CHECK_WITH(DistBackendError, rec.error.empty(), "npusim: rank ", r, " could not join the group: ", rec.error);
      records_[r] = std::move(rec);
      check_agreement(false);
    }
    if (me != 0) {
      std::string hex = fetch("secret", "the group secret from rank 0");
      TORCH_CHECK(hex.size() == 2 * secret_.size() && hex.find_first_not_of("0123456789abcdef") == std::string::npos,
                  "npusim: malformed group secret in the store");
      for (size_t i = 0; i < secret_.size(); ++i)
        secret_[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
      checksum_ = fetch("checksum", "the checksum setting of rank 0") == "1";  // rank 0 decides
    }
    bool one_host = true;
    for (auto& r : records_) one_host &= r->host == records_[0]->host;
    const std::string wanted = records_[0]->transport;  // rank 0 decides
    for (int r = 1; r < world && wanted == "shm"; ++r)
      TORCH_CHECK(records_[r]->host == records_[0]->host, "npusim: NPUSIM_TRANSPORT=shm (rank 0) needs all ranks on ",
                  "one host, but rank ", r, " is on another");
    // Per pair: shared memory between ranks on one host (unless rank 0 asked for TCP),
    // TCP between hosts. Each host's ranks share one segment, led by their lowest rank.
    leader_.assign(world, 0);
    for (int r = 0; r < world; ++r) {
      leader_[r] = r;
      for (int q = 0; q < r && wanted != "tcp"; ++q)
        if (records_[q]->host == records_[r]->host) {
          leader_[r] = q;
          break;
        }
    }
    tcp_only_ = wanted == "tcp";
    bool any_shm = false;
    for (int r = 0; r < world; ++r) {
      if (leader_[r] == leader_[me]) locals_.push_back(r);
      any_shm |= leader_[r] != r;
    }
    check_agreement(any_shm);

    std::vector<PeerAddress> lower(me);
    if (!one_host && !records_[me]->addr_explicit) relisten();
    for (int r = 0; r < me; ++r) {
      lower[r] = {records_[r]->addr, records_[r]->port};
      if (!one_host && !records_[r]->addr_explicit) {
        std::string a = fetch("addr/" + std::to_string(r), "the address of rank " + std::to_string(r));
        auto space = a.rfind(' ');
        TORCH_CHECK(space != std::string::npos, "npusim: malformed address of rank ", r);
        lower[r] = {a.substr(0, space), std::atoi(a.c_str() + space + 1)};
      }
    }

    HandshakeSpec spec;
    spec.rank = me;
    spec.world = world;
    spec.peer_channels.assign(world, 3);  // control, collective data, point-to-point data
    for (int p : locals_) spec.peer_channels[p] = 1;  // data goes through shared memory
    spec.generation = generation_;
    spec.secret = secret_;
    spec.deadline = deadline_;
    spec.timeout = config_.timeout;
    auto fds = connect_group(listen_fd_, lower, spec, [this] { watch(); });
    close(std::exchange(listen_fd_, -1));  // nobody may connect once the group is up
    control_.assign(world, -1);
    data_.assign(world, std::vector<int>(kLanes, -1));
    std::vector<int> shm_index(world, -1);
    for (size_t i = 0; i < locals_.size(); ++i) shm_index[locals_[i]] = static_cast<int>(i);
    std::vector<std::string> kinds(world);
    for (int p = 0; p < world; ++p) {
      control_[p] = fds[p][kControl];
      kinds[p] = p == me ? "self" : shm_index[p] >= 0 ? "shm" : "tcp";
      if (p != me && shm_index[p] < 0) {
        data_[p][0] = fds[p][kDataCollective];
        data_[p][1] = fds[p][kDataP2P];
      }
    }
    std::unique_ptr<ShmSegment> seg = commit();

    auto health = std::make_shared<GroupHealth>(config_.name);
    auto monitor = std::make_unique<PeerMonitor>(me, std::exchange(control_, {}), *health, settings_.peer_timeout);
    const int nlocal = static_cast<int>(locals_.size());
    std::unique_ptr<Transport> transport;
    if (nlocal == world && seg)
      transport = make_shm_transport(std::move(seg), me, world, settings_.ring_bytes);
    else if (nlocal == 1)
      transport = make_tcp_transport(std::exchange(data_, {}), me);
    else
      transport = make_mixed_transport(make_shm_transport(std::move(seg), shm_index[me], nlocal, settings_.ring_bytes),
                                       make_tcp_transport(std::exchange(data_, {}), me), shm_index);
    auto comm = std::make_unique<Communicator>(config_, std::move(transport), std::move(monitor), health);
    comm->set_checksum(checksum_);
    if (!peer_access_) comm->peer_access = Communicator::PeerAccess::No;
    // peers may read this process's device memory in place: from now on the caching
    // allocator makes large segments shareable at allocation
    else if (nlocal == world && world > 1) cache().enable_sharing();
    comm->set_peer_transports(std::move(kinds));
    return comm;
  }

  void check_agreement(bool shm) {
    std::string d = first_disagreement(records_, shm);
    everyone_knows_ = !d.empty();  // every rank reads the same records and finds the same
    TORCH_CHECK_WITH(DistBackendError, d.empty(), "npusim: the ranks disagree on their configuration: ", d);
  }

  // Ranks on several hosts: listen where peers can reach this one, and say where.
  void relisten() {
    const char* master = std::getenv("MASTER_ADDR");
    std::string addr = net::address_toward(master ? master : "");
    if (addr.empty() || net::is_loopback(addr)) addr = net::hostname_address();
    TORCH_CHECK(!addr.empty(), "npusim: rank ", config_.rank, " is in a group spanning several hosts but has no ",
                "non-loopback address; set NPUSIM_SOCKET_ADDR to the address its peers can reach");
    close(std::exchange(listen_fd_, -1));
    std::string bound;
    listen_fd_ = net::listen_on(addr, &port_, &bound);
    publish("addr/" + std::to_string(config_.rank), bound + " " + std::to_string(port_));
  }

  // Step 4 (see the top of the file); returns this host's mapped segment, if it has one.
  // Each host's leader creates the segment and offers it to the host's other ranks; they
  // map it and say so; the leader unlinks it and reports to rank 0 (a leader itself),
  // which tells every rank the outcome.
  std::unique_ptr<ShmSegment> commit() {
    const int world = config_.world, me = config_.rank, lead = locals_[0];
    const int nlocal = static_cast<int>(locals_.size());
    auto exited = [](int p) { return "npusim: rank " + std::to_string(p) + " exited while the group was being created"; };
    std::unique_ptr<ShmSegment> seg;
    std::string error;
    SetupType type;
    std::string payload;
    std::vector<SetupReader> readers(world);
    if (me == lead) {
      try {
        if (nlocal > 1 || (world == 1 && !tcp_only_)) seg = shm_create(nlocal, settings_.ring_bytes);
      } catch (const std::exception& e) {
        error = "npusim: rank " + std::to_string(me) + " could not create the shared memory: " + message_of(e);
      }
      // Every local rank gets an offer (empty when there is no segment) and answers it.
      std::vector<bool> reached(world, false);
      for (int i = 1; i < nlocal; ++i) {
        reached[locals_[i]] = send_setup(control_[locals_[i]], SetupType::Offer, seg ? seg->name : "", deadline_);
        if (!reached[locals_[i]] && error.empty()) error = exited(locals_[i]);
      }
      for (int i = 1; i < nlocal; ++i) {
        int p = locals_[i];
        if (!reached[p]) continue;
        if (!await(p, &readers[p], &type, &payload) || type != SetupType::Ready) {
          if (error.empty()) error = exited(p);
        } else if (!payload.empty() && error.empty()) {
          error = payload;
        }
      }
      if (seg) shm_unlink_quietly(seg->name);  // mapped on the host (or failed): the name can go
      if (me != 0) {
        TORCH_CHECK_WITH(DistBackendError, send_setup(control_[0], SetupType::Ready, error, deadline_), exited(0));
      } else {
        for (int p = 1; p < world; ++p) {
          if (leader_[p] != p) continue;  // answered through its own host's leader
          if (!await(p, &readers[p], &type, &payload) || type != SetupType::Ready) {
            if (error.empty()) error = exited(p);
          } else if (!payload.empty() && error.empty()) {
            error = payload;
          }
        }
        for (int p = 1; p < world; ++p) send_setup(control_[p], SetupType::Commit, error, deadline_);
        TORCH_CHECK_WITH(DistBackendError, error.empty(), error);
        return seg;
      }
    } else {
      TORCH_CHECK_WITH(DistBackendError, await(lead, &readers[lead], &type, &payload), exited(lead));
      if (type == SetupType::Offer) {
        std::string reply;
        try {
          if (!payload.empty()) seg = shm_open_existing(payload, nlocal, settings_.ring_bytes);
        } catch (const std::exception& e) {
          reply = "npusim: rank " + std::to_string(me) + " could not map the shared memory: " + message_of(e);
        }
        TORCH_CHECK_WITH(DistBackendError, send_setup(control_[lead], SetupType::Ready, reply, deadline_), exited(lead));
      } else {
        TORCH_CHECK_WITH(DistBackendError, false, "npusim: rank ", lead, " sent rank ", me,
                         " an unexpected message while the group was being created");
      }
    }
    TORCH_CHECK_WITH(DistBackendError, await(0, &readers[0], &type, &payload), exited(0));
    if (type != SetupType::Commit || !payload.empty()) {
      propagated_ = payload.empty() ? exited(0) : payload;
      throw Propagated{};  // rank 0 found and reported the cause
    }
    return seg;
  }

  // One set-up message from `peer`; false when its connection broke.
  bool await(int peer, SetupReader* reader, SetupType* type, std::string* payload) {
    auto next_watch = net::Clock::now();
    while (true) {
      bool broken = false;
      if (reader->next(control_[peer], type, payload, &broken)) return true;
      if (broken) return false;
      if (net::Clock::now() >= next_watch) {
        watch();
        next_watch = net::Clock::now() + kSlice;
      }
      TORCH_CHECK_WITH(DistBackendError, net::Clock::now() < deadline_, "npusim: rank ", config_.rank,
                       " timed out after ", config_.timeout.count(), " ms waiting for rank ", peer,
                       " to finish creating the group");
      pollfd p{control_[peer], POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(kSlice.count()));
    }
  }

  // Ends the wait early: a rank on this host exited, or another rank reported a failure.
  void watch() {
    for (size_t r = 0; r < records_.size(); ++r) {
      if (static_cast<int>(r) == config_.rank || !records_[r] || !can_watch(*records_[config_.rank], *records_[r]))
        continue;
      TORCH_CHECK_WITH(DistBackendError, !process_gone(records_[r]->pid, records_[r]->start_time), "npusim: rank ", r, " (pid ", records_[r]->pid,
                       ") exited while the group was being created");
    }
    if (via_store([&] { return store_.add(prefix_ + "failures", 0); }) > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - net::Clock::now());
      auto wait = std::clamp(left, std::chrono::milliseconds(1), std::chrono::milliseconds(2000));
      bool told = via_store([&] { return store_.wait(prefix_ + "failure/1", wait); });
      propagated_ = "npusim: rank " + std::to_string(config_.rank) + " gave up creating the group because " +
                    (told ? via_store([&] { return store_.get(prefix_ + "failure/1"); }) : "another rank failed");
      throw Propagated{};
    }
  }

  // Tells the other ranks why this one failed, so they stop waiting for it (best effort).
  void report(const std::string& why) {
    try {
      int64_t n = store_.add(prefix_ + "failures", 1);
      store_.set(prefix_ + "failure/" + std::to_string(n), "rank " + std::to_string(config_.rank) + " failed: " + why);
    } catch (...) {
    }
  }

  // Store calls, with the likely cause when the store itself is gone.
  template <typename F>
  auto via_store(F&& call) -> decltype(call()) {
    try {
      return call();
    } catch (const c10::DistNetworkError& e) {
      C10_THROW_ERROR(DistNetworkError, "npusim: rank " + std::to_string(config_.rank) +
                                            " lost the rendezvous store while the group was being created (did the "
                                            "process hosting it exit?): " + e.what_without_backtrace());
    }
  }

  void publish(const std::string& key, const std::string& value) {
    via_store([&] { store_.set(prefix_ + key, value); });
  }

  std::string fetch(const std::string& key, const std::string& what) {
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - net::Clock::now());
      TORCH_CHECK_WITH(DistBackendError, left.count() > 0, "npusim: rank ", config_.rank, " timed out after ",
                       config_.timeout.count(), " ms waiting for ", what,
                       " (did every rank call init_process_group with the same world size?)");
      if (via_store([&] { return store_.wait(prefix_ + key, std::min(left, kSlice)); }))
        return via_store([&] { return store_.get(prefix_ + key); });
      watch();
    }
  }

  const KeyValueStore& store_;
  const GroupConfig& config_;
  const net::Clock::time_point deadline_;
  uint64_t generation_ = 0;
  std::string prefix_;
  LocalSettings settings_;
  Secret secret_{};
  std::vector<std::optional<JoinRecord>> records_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<int> control_;
  std::vector<std::vector<int>> data_;
  std::vector<int> leader_;  // per rank: the lowest rank on its host (itself over TCP)
  std::vector<int> locals_;  // the ranks sharing memory with this one, itself included
  bool tcp_only_ = false;    // rank 0 asked for TCP (a group of one still gets shared memory otherwise)
  std::string propagated_;
  bool everyone_knows_ = false;
  bool checksum_ = false;
  bool peer_access_ = true;
};

}  // namespace

std::unique_ptr<Communicator> rendezvous(const KeyValueStore& store, const GroupConfig& config) {
  TORCH_CHECK(config.world >= 1 && config.rank >= 0 && config.rank < config.world,
              "npusim: invalid rank ", config.rank, " for world size ", config.world);
  return Joiner(store, config).join();
}

}  // namespace torch_npu_sim::dist
