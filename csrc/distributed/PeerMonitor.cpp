#include "distributed/PeerMonitor.h"

#include <c10/util/Exception.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace torch_npu_sim::dist {
namespace {

constexpr uint32_t kControlMagic = 0x4c43504eu;  // "NPCL"
constexpr uint32_t kMaxControlPayload = 4096;
constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(100);

struct FrameHeader {
  uint32_t magic;
  uint8_t type;
  uint8_t reserved[3];
  uint32_t length;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

PeerMonitor::PeerMonitor(int rank, std::vector<int> control_fds, GroupHealth& health,
                         std::chrono::milliseconds heartbeat_timeout)
    : rank_(rank),
      fds_(std::move(control_fds)),
      health_(health),
      heartbeat_timeout_(heartbeat_timeout),
      outbox_(fds_.size()),
      inbox_(fds_.size()),
      left_(new std::atomic<bool>[fds_.size()]),
      closed_(new std::atomic<bool>[fds_.size()]),
      last_heard_ns_(new std::atomic<int64_t>[fds_.size()]) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  TORCH_CHECK(wake_fd_ >= 0, "npusim: eventfd failed: ", std::strerror(errno));
  for (size_t p = 0; p < fds_.size(); ++p) {
    left_[p] = false;
    closed_[p] = fds_[p] < 0;
    last_heard_ns_[p] = now_ns();
  }
}

PeerMonitor::~PeerMonitor() {
  stop_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  for (int fd : fds_)
    if (fd >= 0) close(fd);
  close(wake_fd_);
}

void PeerMonitor::start() { thread_ = std::thread([this] { run(); }); }

void PeerMonitor::queue_frame(int peer, FrameType type, const std::string& payload) {
  FrameHeader h{kControlMagic, type, {0, 0, 0}, static_cast<uint32_t>(payload.size())};
  std::string& out = outbox_[peer];
  out.append(reinterpret_cast<const char*>(&h), sizeof(h));
  out.append(payload);
  flush_locked(peer);
}

void PeerMonitor::flush_locked(int peer) {
  std::string& out = outbox_[peer];
  while (!out.empty() && !closed_[peer]) {
    ssize_t n = ::send(fds_[peer], out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      out.erase(0, static_cast<size_t>(n));
    } else {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;  // the monitor retries
      out.clear();
      return;
    }
  }
}

void PeerMonitor::announce(const std::vector<int>& ranks, const std::string& why) {
  std::ostringstream payload;
  payload << ranks.size();
  for (int r : ranks) payload << ' ' << r;
  payload << '\n' << why.substr(0, kMaxControlPayload - 256);
  std::lock_guard<std::mutex> lock(out_mutex_);
  for (size_t p = 0; p < fds_.size(); ++p)
    if (!closed_[p] && !left_[p]) queue_frame(static_cast<int>(p), kFailure, payload.str());
}

void PeerMonitor::leave() {
  // A rank that failed from a peer's report leaves with that cause: a third rank may see
  // this goodbye before the original report, and must still name the original cause.
  if (health_.state() == HealthState::Failed && !health_.failure_is_local())
    announce(health_.failed_ranks(), health_.reason());
  {
    std::lock_guard<std::mutex> lock(out_mutex_);
    for (size_t p = 0; p < fds_.size(); ++p) {
      if (closed_[p]) continue;
      queue_frame(static_cast<int>(p), kGoodbye, "");
      ::shutdown(fds_[p], SHUT_WR);
    }
  }
  stop_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

std::vector<int> PeerMonitor::silent_peers(std::chrono::milliseconds silence) const {
  std::vector<int> out;
  int64_t now = now_ns();
  for (size_t p = 0; p < fds_.size(); ++p) {
    if (static_cast<int>(p) == rank_ || closed_[p] || left_[p]) continue;
    if (now - last_heard_ns_[p].load() >= silence.count() * 1000000) out.push_back(static_cast<int>(p));
  }
  return out;
}

void PeerMonitor::wait_closed(int peer, std::chrono::milliseconds limit) const {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!closed_[peer] && !stop_ && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void PeerMonitor::lost(int peer, const std::string& why) {
  closed_[peer] = true;
  if (left_[peer]) return;
  health_.fail({peer}, why);
}

void PeerMonitor::on_readable(int peer) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fds_[peer], buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      inbox_[peer].append(buf, static_cast<size_t>(n));
      last_heard_ns_[peer] = now_ns();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    // EOF or reset. Frames already received (a goodbye, a failure report) still count.
    closed_[peer] = true;
    break;
  }
  std::string& in = inbox_[peer];
  while (in.size() >= sizeof(FrameHeader)) {
    FrameHeader h;
    std::memcpy(&h, in.data(), sizeof(h));
    if (h.magic != kControlMagic || h.length > kMaxControlPayload || h.type < kHeartbeat ||
        h.type > kGoodbye) {
      in.clear();
      lost(peer, "rank " + std::to_string(peer) + " sent a malformed control message");
      return;
    }
    if (in.size() < sizeof(h) + h.length) break;
    std::string payload = in.substr(sizeof(h), h.length);
    in.erase(0, sizeof(h) + h.length);
    if (h.type == kGoodbye) {
      left_[peer] = true;
    } else if (h.type == kFailure) {
      std::istringstream s(payload);
      size_t count = 0;
      std::vector<int> ranks;
      s >> count;
      for (size_t i = 0; i < count && i < fds_.size(); ++i) {
        int r = -1;
        s >> r;
        if (r >= 0 && r < static_cast<int>(fds_.size())) ranks.push_back(r);
      }
      std::string why;
      std::getline(s, why);
      std::getline(s, why, '\0');
      // a failure relayed through several peers names the rank that first reported it, the
      // same text whichever path reached this rank first
      const std::string reporter = " (reported by rank ";
      if (why.find(reporter) == std::string::npos) why += reporter + std::to_string(peer) + ")";
      health_.fail(ranks, why, /*local=*/false);
    }
  }
  if (closed_[peer] && !left_[peer]) {
    lost(peer, "rank " + std::to_string(peer) +
                   " is gone: its connection closed without a goodbye (the process exited, "
                   "crashed or was killed)");
  }
}

void PeerMonitor::run() {
  auto next_beat = std::chrono::steady_clock::now();
  bool silence_reported = false;
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    if (now >= next_beat) {
      std::lock_guard<std::mutex> lock(out_mutex_);
      for (size_t p = 0; p < fds_.size(); ++p)
        if (!closed_[p] && outbox_[p].size() < 4096) queue_frame(static_cast<int>(p), kHeartbeat, "");
      next_beat = now + kHeartbeatPeriod;
    }
    if (heartbeat_timeout_.count() > 0 && !silence_reported) {
      auto silent = silent_peers(heartbeat_timeout_);
      if (!silent.empty()) {
        silence_reported = true;
        std::string who;
        for (int r : silent) who += (who.empty() ? "rank " : ", rank ") + std::to_string(r);
        health_.fail(silent, who + " stopped responding: no heartbeat for " +
                                 std::to_string(heartbeat_timeout_.count()) +
                                 " ms (process stopped, hung or partitioned)");
      }
    }
    std::vector<pollfd> pfds;
    std::vector<int> peers;
    pfds.push_back({wake_fd_, POLLIN, 0});
    peers.push_back(-1);
    {
      std::lock_guard<std::mutex> lock(out_mutex_);
      for (size_t p = 0; p < fds_.size(); ++p) {
        if (closed_[p]) continue;
        short events = POLLIN | (outbox_[p].empty() ? 0 : POLLOUT);
        pfds.push_back({fds_[p], events, 0});
        peers.push_back(static_cast<int>(p));
      }
    }
    int r = ::poll(pfds.data(), pfds.size(), static_cast<int>(kHeartbeatPeriod.count()));
    if (r <= 0) continue;
    if (pfds[0].revents) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof(v));
    }
    for (size_t i = 1; i < pfds.size(); ++i) {
      int p = peers[i];
      if (pfds[i].revents & POLLOUT) {
        std::lock_guard<std::mutex> lock(out_mutex_);
        flush_locked(p);
      }
      if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) on_readable(p);
    }
  }
}

}  // namespace torch_npu_sim::dist
