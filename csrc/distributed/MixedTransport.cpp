// A group spanning several hosts: shared memory towards the ranks on this host, TCP
// towards the others, behind the one Transport interface. Each call goes to the
// transport of its peer; a wait that involves both sleeps on TCP's poll in short slices
// and checks the shared-memory doorbell between them (a futex and a poll cannot be
// waited on together).
#include "distributed/Transport.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace torch_npu_sim::dist {
namespace {

constexpr auto kFirstSlice = std::chrono::microseconds(20);
constexpr auto kMaxSlice = std::chrono::microseconds(1000);

class MixedTransport final : public Transport {
 public:
  MixedTransport(std::unique_ptr<Transport> shm, std::unique_ptr<Transport> tcp, std::vector<int> shm_index)
      : shm_(std::move(shm)), tcp_(std::move(tcp)), shm_index_(std::move(shm_index)) {}
  const char* name() const override { return "mixed"; }

  size_t try_send(int peer, Lane lane, const void* data, size_t len) override {
    int local = shm_index_[peer];
    return local >= 0 ? shm_->try_send(local, lane, data, len) : tcp_->try_send(peer, lane, data, len);
  }
  size_t try_recv(int peer, Lane lane, void* data, size_t len) override {
    int local = shm_index_[peer];
    return local >= 0 ? shm_->try_recv(local, lane, data, len) : tcp_->try_recv(peer, lane, data, len);
  }
  const void* peek(int peer, Lane lane, size_t* available) override {
    int local = shm_index_[peer];
    return local >= 0 ? shm_->peek(local, lane, available) : tcp_->peek(peer, lane, available);
  }
  void consume(int peer, Lane lane, size_t n) override {
    int local = shm_index_[peer];
    local >= 0 ? shm_->consume(local, lane, n) : tcp_->consume(peer, lane, n);
  }

  uint64_t ticket() override { return shm_->ticket(); }  // TCP's poll is level-triggered: no ticket

  void wait(uint64_t ticket, const std::vector<Interest>& interests, std::chrono::microseconds timeout) override {
    std::vector<Interest> local, remote;
    for (const Interest& i : interests) {
      int l = shm_index_[i.peer];
      if (l >= 0)
        local.push_back({l, i.lane, i.send});
      else
        remote.push_back(i);
    }
    if (remote.empty()) return shm_->wait(ticket, local, timeout);  // interrupt() rings the doorbell too
    if (local.empty()) return tcp_->wait(0, remote, timeout);       // ... and wakes the poll
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto slice = kFirstSlice;
    while (shm_->ticket() == ticket) {
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      if (tcp_->wait_ready(remote, std::min(slice, left))) return;
      slice = std::min(slice * 2, std::chrono::duration_cast<std::chrono::microseconds>(kMaxSlice));
    }
  }

  void interrupt() override {
    shm_->interrupt();
    tcp_->interrupt();
  }

 private:
  std::unique_ptr<Transport> shm_, tcp_;
  std::vector<int> shm_index_;
};

}  // namespace

std::unique_ptr<Transport> make_mixed_transport(std::unique_ptr<Transport> shm, std::unique_ptr<Transport> tcp,
                                                std::vector<int> shm_index) {
  TORCH_CHECK(shm && tcp, "npusim: a mixed transport needs both a shared-memory and a TCP transport");
  return std::make_unique<MixedTransport>(std::move(shm), std::move(tcp), std::move(shm_index));
}

}  // namespace torch_npu_sim::dist
