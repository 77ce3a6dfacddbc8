// TCP transport: one non-blocking, authenticated socket per peer and lane; an eventfd
// lets other threads interrupt a waiter blocked in poll().
#include "distributed/Transport.h"

#include <c10/util/Exception.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace torch_npu_sim::dist {
namespace {

class TcpTransport final : public Transport {
 public:
  TcpTransport(std::vector<std::vector<int>> fds, int rank) : fds_(std::move(fds)), rank_(rank) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    TORCH_CHECK(wake_fd_ >= 0, "npusim: eventfd failed: ", std::strerror(errno));
  }
  ~TcpTransport() override {
    for (auto& lanes : fds_)
      for (int fd : lanes)
        if (fd >= 0) close(fd);
    close(wake_fd_);
  }
  const char* name() const override { return "tcp"; }

  size_t try_send(int peer, Lane lane, const void* data, size_t len) override {
    ssize_t n = ::send(fd(peer, lane), data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    throw PeerLost(peer, std::string("connection to rank ") + std::to_string(peer) +
                             " broke: " + std::strerror(errno));
  }

  size_t try_recv(int peer, Lane lane, void* data, size_t len) override {
    ssize_t n = ::recv(fd(peer, lane), data, len, MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0)
      throw PeerLost(peer, "rank " + std::to_string(peer) + " closed its connection");
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    throw PeerLost(peer, std::string("connection to rank ") + std::to_string(peer) +
                             " broke: " + std::strerror(errno));
  }

  uint64_t ticket() override { return 0; }  // poll() is level-triggered: nothing to lose

  void wait(uint64_t, const std::vector<Interest>& interests, std::chrono::microseconds timeout) override {
    wait_ready(interests, timeout);
  }

  bool wait_ready(const std::vector<Interest>& interests, std::chrono::microseconds timeout) override {
    std::vector<pollfd> pfds;
    pfds.reserve(interests.size() + 1);
    pfds.push_back({wake_fd_, POLLIN, 0});
    for (const Interest& i : interests)
      pfds.push_back({fd(i.peer, i.lane), static_cast<short>(i.send ? POLLOUT : POLLIN), 0});
    timespec ts{static_cast<time_t>(timeout.count() / 1000000), static_cast<long>(timeout.count() % 1000000) * 1000};
    int ready = ::ppoll(pfds.data(), pfds.size(), &ts, nullptr);
    if (pfds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof(v));
    }
    return ready != 0;
  }

  void interrupt() override {
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }

 private:
  int fd(int peer, Lane lane) const { return fds_[peer][static_cast<int>(lane)]; }

  std::vector<std::vector<int>> fds_;
  const int rank_;
  int wake_fd_ = -1;
};

}  // namespace

std::unique_ptr<Transport> make_tcp_transport(std::vector<std::vector<int>> fds, int rank) {
  return std::make_unique<TcpTransport>(std::move(fds), rank);
}

}  // namespace torch_npu_sim::dist
