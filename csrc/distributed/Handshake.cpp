#include "distributed/Handshake.h"

#include <c10/util/Exception.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <algorithm>
#include <list>
#include <thread>
#include <utility>

#include "distributed/Hmac.h"
#include "distributed/Socket.h"

namespace torch_npu_sim::dist {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kHelloMagic = 0x3248504eu;  // "NPH2"
constexpr uint32_t kSetupMagic = 0x5453504eu;  // "NPST"
constexpr uint16_t kHandshakeVersion = 2;
// An unauthenticated connection gets this long to prove itself; a real peer needs
// microseconds, and one dropped by mistake simply dials again.
constexpr auto kPendingLimit = std::chrono::seconds(2);
constexpr size_t kMaxPending = 64;  // strangers beyond this push out the oldest stranger
constexpr auto kWatchPeriod = std::chrono::milliseconds(50);
constexpr auto kRedialDelay = std::chrono::milliseconds(50);
constexpr int kMaxRedials = 20;
constexpr uint32_t kMaxSetupPayload = 4096;

struct Hello {
  uint32_t magic;
  uint16_t version;
  uint8_t channel;
  uint8_t reserved;
  int32_t rank;
  int32_t world;
  uint64_t generation;
  uint8_t nonce[32];
};
struct Challenge {
  uint32_t magic;
  uint32_t status;
  int32_t rank;
  uint32_t reserved;
  uint8_t nonce[32];
  uint8_t mac[32];
};
struct Proof {
  uint32_t magic;
  uint32_t reserved;
  uint8_t mac[32];
};
struct Ack {
  uint32_t magic;
  uint32_t status;
};
static_assert(sizeof(Hello) == 56 && sizeof(Challenge) == 80 && sizeof(Proof) == 40 && sizeof(Ack) == 8);

enum Status : uint32_t { kOk = 0, kBadVersion = 1, kBadWorld = 2, kBadGeneration = 3, kUnexpected = 4 };

const char* status_text(uint32_t s) {
  switch (s) {
    case kBadVersion: return "different handshake version (another build of torch_npu_sim?)";
    case kBadWorld: return "different world size";
    case kBadGeneration: return "different group generation (a stale or repeated join?)";
    case kUnexpected: return "it does not expect this rank or channel";
    default: return "unknown reason";
  }
}

Digest server_mac(const Secret& k, const Hello& h, const Challenge& c) {
  return hmac_sha256(k.data(), k.size(), "npusim-server", 13, &h, sizeof(h), &c, offsetof(Challenge, mac));
}
Digest client_mac(const Secret& k, const Hello& h, const Challenge& c) {
  return hmac_sha256(k.data(), k.size(), "npusim-client", 13, &h, sizeof(h), &c, sizeof(c));
}

// One connection being set up, from either side.
struct Conn {
  enum Step { Connecting, AwaitChallenge, AwaitAck, AwaitHello, AwaitProof, Admitting, Rejecting };
  int fd = -1;
  bool dialer = false;
  Step step = Connecting;
  int peer = -1, channel = 0;
  Clock::time_point expires{};  // listener side: drop if not authenticated by then
  Hello hello{};
  Challenge challenge{};
  uint8_t in[sizeof(Challenge)];
  size_t have = 0, want = 0;
  std::string out;
  size_t sent = 0;
  int slot = -1;  // index in this round's poll set

  void expect(size_t n) {
    have = 0;
    want = n;
  }
  template <typename T>
  void queue(const T& msg) {
    out.append(reinterpret_cast<const char*>(&msg), sizeof(msg));
  }
};

class Connector {
 public:
  Connector(int listen_fd, const std::vector<PeerAddress>& lower, const HandshakeSpec& spec)
      : listen_fd_(listen_fd), lower_(lower), spec_(spec),
        fds_(spec.world, std::vector<int>(max_channels(spec), -1)), redials_(spec.world, 0) {}

  ~Connector() {
    for (auto& c : conns_)
      if (c.fd >= 0) close(c.fd);
    for (auto& row : fds_)
      for (int fd : row)
        if (fd >= 0) close(fd);
  }

  std::vector<std::vector<int>> run(const std::function<void()>& watch) {
    for (int p = 0; p < spec_.rank; ++p)
      for (int ch = 0; ch < channels_of(p); ++ch) dial(p, ch);
    auto next_watch = Clock::now();
    while (missing() > 0) {
      auto now = Clock::now();
      if (now >= next_watch) {
        watch();
        next_watch = now + kWatchPeriod;
      }
      if (now >= spec_.deadline) timed_out();
      step(std::min(next_watch, spec_.deadline));
    }
    return std::exchange(fds_, {});
  }

 private:
  static int max_channels(const HandshakeSpec& s) {
    int n = s.channels;
    for (int c : s.peer_channels) n = std::max(n, c);
    return n;
  }
  int channels_of(int peer) const { return spec_.peer_channels.empty() ? spec_.channels : spec_.peer_channels[peer]; }
  int missing() const {
    int n = 0;
    for (int p = 0; p < spec_.world; ++p)
      for (int ch = 0; ch < channels_of(p); ++ch) n += p != spec_.rank && fds_[p][ch] < 0;
    return n;
  }
  std::string where(int peer) const { return lower_[peer].host + ":" + std::to_string(lower_[peer].port); }
  std::string me() const { return "npusim: rank " + std::to_string(spec_.rank); }

  void dial(int peer, int ch) {
    std::string error;
    int fd = net::connect_start(lower_[peer].host, lower_[peer].port, &error);
    if (fd < 0) unreachable(peer, error);
    Conn c;
    c.fd = fd;
    c.dialer = true;
    c.peer = peer;
    c.channel = ch;
    conns_.push_back(std::move(c));
  }

  void redial(int peer, int ch) {
    if (++redials_[peer] > kMaxRedials) unreachable(peer, "the connection kept closing during the handshake");
    std::this_thread::sleep_for(kRedialDelay);
    dial(peer, ch);
  }

  [[noreturn]] void unreachable(int peer, const std::string& why) const {
    C10_THROW_ERROR(DistNetworkError, me() + " cannot connect to rank " + std::to_string(peer) + " at " + where(peer) +
                                          ": " + why + " (did rank " + std::to_string(peer) + " fail or exit?)");
  }

  [[noreturn]] void timed_out() const {
    std::string to, from;
    for (int p = 0; p < spec_.world; ++p) {
      bool gap = false;
      for (int ch = 0; ch < channels_of(p); ++ch) gap |= p != spec_.rank && fds_[p][ch] < 0;
      std::string& list = p < spec_.rank ? to : from;
      if (gap) list += (list.empty() ? "" : ", ") + std::to_string(p);
    }
    C10_THROW_ERROR(DistNetworkError,
                    me() + " timed out after " + std::to_string(spec_.timeout.count()) + " ms connecting to the group" +
                        (to.empty() ? "" : "; not yet connected to rank(s) " + to) +
                        (from.empty() ? "" : "; no authenticated connection yet from rank(s) " + from));
  }

  void step(Clock::time_point until) {
    std::vector<pollfd> pfds;
    const bool accepting = listen_fd_ >= 0 && spec_.rank < spec_.world - 1;
    if (accepting) pfds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : conns_) {
      if (!c.dialer && c.expires < until) until = c.expires;
      c.slot = static_cast<int>(pfds.size());
      pfds.push_back({c.fd, static_cast<short>(c.step == Conn::Connecting || c.sent < c.out.size() ? POLLOUT : POLLIN), 0});
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count() + 1;
    if (::poll(pfds.data(), pfds.size(), static_cast<int>(std::clamp<int64_t>(ms, 0, 50))) < 0 && errno != EINTR)
      C10_THROW_ERROR(DistNetworkError, me() + ": poll failed: " + std::strerror(errno));
    const auto now = Clock::now();
    for (auto it = conns_.begin(); it != conns_.end();) {
      bool ready = it->slot >= 0 && pfds[it->slot].revents != 0;
      bool keep = true;
      if (!it->dialer && now >= it->expires && it->step != Conn::Admitting)
        keep = false;  // silent, slow or malformed: a real peer proves itself in microseconds
      else if (ready)
        keep = advance(*it);
      if (!keep) {
        close(it->fd);
        int peer = it->dialer ? it->peer : -1, ch = it->channel;
        it = conns_.erase(it);
        if (peer >= 0) redial(peer, ch);  // the listener dropped us (overloaded?): try again
      } else {
        it = it->fd < 0 ? conns_.erase(it) : std::next(it);  // fd < 0: handed over to fds_
      }
    }
    if (accepting && (pfds[0].revents & POLLIN)) accept_all();
  }

  void accept_all() {
    int fd;
    while ((fd = net::accept_one(listen_fd_)) >= 0) {
      size_t pending = 0;
      for (auto& c : conns_) pending += !c.dialer;
      for (auto it = conns_.begin(); pending >= kMaxPending && it != conns_.end(); ++it)
        if (!it->dialer && it->step != Conn::Admitting) {
          close(it->fd);
          conns_.erase(it);
          break;
        }
      Conn c;
      c.fd = fd;
      c.step = Conn::AwaitHello;
      c.expires = Clock::now() + kPendingLimit;
      c.expect(sizeof(Hello));
      conns_.push_back(std::move(c));
    }
  }

  // Moves one connection along; false when it broke (closed, reset, not our protocol).
  bool advance(Conn& c) {
    if (c.step == Conn::Connecting) {
      int err = net::connect_result(c.fd);
      if (err == ECONNREFUSED) unreachable(c.peer, std::strerror(err));
      if (err != 0) return false;
      net::tune_for_bulk(c.fd);
      c.hello = Hello{kHelloMagic, kHandshakeVersion, static_cast<uint8_t>(c.channel), 0, spec_.rank, spec_.world,
                      spec_.generation, {}};
      random_bytes(c.hello.nonce, sizeof(c.hello.nonce));
      c.queue(c.hello);
      c.step = Conn::AwaitChallenge;
      c.expect(sizeof(Challenge));
    }
    if (!flush(c)) return false;
    if (c.fd < 0 || c.sent < c.out.size() || c.want == 0) return true;
    while (c.have < c.want) {
      ssize_t n = net::read_some(c.fd, c.in + c.have, c.want - c.have);
      if (n < 0) return false;
      if (n == 0) return true;
      c.have += n;
    }
    return on_message(c);
  }

  bool flush(Conn& c) {
    while (c.sent < c.out.size()) {
      ssize_t n = net::write_some(c.fd, c.out.data() + c.sent, c.out.size() - c.sent);
      if (n < 0) return false;
      if (n == 0) return true;
      c.sent += n;
    }
    if (c.step == Conn::Rejecting) return false;
    if (c.step == Conn::Admitting) {
      net::tune_for_bulk(c.fd);
      int& slot = fds_[c.peer][c.channel];
      if (slot >= 0) close(slot);  // the peer dialled again: it gave up on the older one
      slot = std::exchange(c.fd, -1);
    }
    return true;
  }

  bool on_message(Conn& c) {
    c.want = 0;
    switch (c.step) {
      case Conn::AwaitHello: {
        std::memcpy(&c.hello, c.in, sizeof(Hello));
        const Hello& h = c.hello;
        if (h.magic != kHelloMagic) return false;  // not our protocol: drop without a word
        uint32_t status = h.version != kHandshakeVersion     ? kBadVersion
                          : h.world != spec_.world           ? kBadWorld
                          : h.generation != spec_.generation ? kBadGeneration
                          : h.rank <= spec_.rank || h.rank >= spec_.world || h.channel >= channels_of(h.rank)
                              ? kUnexpected
                              : kOk;
        c.challenge = Challenge{kHelloMagic, status, spec_.rank, 0, {}, {}};
        if (status == kOk) {
          random_bytes(c.challenge.nonce, sizeof(c.challenge.nonce));
          Digest mac = server_mac(spec_.secret, h, c.challenge);
          std::memcpy(c.challenge.mac, mac.data(), mac.size());
        }
        c.queue(c.challenge);
        c.step = status == kOk ? Conn::AwaitProof : Conn::Rejecting;
        c.expect(sizeof(Proof));
        return flush(c);
      }
      case Conn::AwaitProof: {
        Proof p;
        std::memcpy(&p, c.in, sizeof(p));
        Digest expected = client_mac(spec_.secret, c.hello, c.challenge);
        if (p.magic != kHelloMagic || !digest_equal(p.mac, expected.data(), expected.size()))
          return false;  // does not know the group secret
        c.peer = c.hello.rank;
        c.channel = c.hello.channel;
        c.queue(Ack{kHelloMagic, kOk});
        c.step = Conn::Admitting;
        return flush(c);
      }
      case Conn::AwaitChallenge: {
        Challenge ch;
        std::memcpy(&ch, c.in, sizeof(ch));
        std::string who = "the listener at " + where(c.peer) + " (advertised by rank " + std::to_string(c.peer) + ")";
        if (ch.magic != kHelloMagic)
          C10_THROW_ERROR(DistNetworkError, me() + ": " + who + " does not speak the npusim handshake");
        if (ch.status != kOk)
          C10_THROW_ERROR(DistNetworkError, me() + ": " + who + " refused the connection: " + status_text(ch.status));
        Digest mac = server_mac(spec_.secret, c.hello, ch);
        if (ch.rank != c.peer || !digest_equal(ch.mac, mac.data(), mac.size()))
          C10_THROW_ERROR(DistNetworkError, me() + ": " + who +
                                                " failed to prove it knows the group secret; not connecting to it");
        c.challenge = ch;
        Proof p{kHelloMagic, 0, {}};
        Digest proof = client_mac(spec_.secret, c.hello, ch);
        std::memcpy(p.mac, proof.data(), proof.size());
        c.queue(p);
        c.step = Conn::AwaitAck;
        c.expect(sizeof(Ack));
        return flush(c);
      }
      case Conn::AwaitAck: {
        Ack a;
        std::memcpy(&a, c.in, sizeof(a));
        if (a.magic != kHelloMagic || a.status != kOk) return false;
        int& slot = fds_[c.peer][c.channel];
        if (slot >= 0) close(slot);
        slot = std::exchange(c.fd, -1);
        return true;
      }
      default:
        return false;
    }
  }

  const int listen_fd_;
  const std::vector<PeerAddress>& lower_;
  const HandshakeSpec& spec_;
  std::vector<std::vector<int>> fds_;
  std::vector<int> redials_;
  std::list<Conn> conns_;
};

}  // namespace

void random_bytes(void* out, size_t n) {
  auto* p = static_cast<uint8_t*>(out);
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(p + got, n - got, 0);
    TORCH_CHECK(r > 0 || errno == EINTR, "npusim: getrandom failed: ", std::strerror(errno));
    if (r > 0) got += r;
  }
}

std::vector<std::vector<int>> connect_group(int listen_fd, const std::vector<PeerAddress>& lower,
                                            const HandshakeSpec& spec, const std::function<void()>& watch) {
  try {
    return Connector(listen_fd, lower, spec).run(watch);
  } catch (const c10::DistNetworkError&) {
    watch();  // a peer's own report (or its exit) explains a refused connection better
    throw;
  }
}

bool send_setup(int fd, SetupType type, const std::string& payload, Clock::time_point deadline) {
  std::string frame(12, '\0');
  uint32_t head[3] = {kSetupMagic, static_cast<uint32_t>(type),
                      static_cast<uint32_t>(std::min<size_t>(payload.size(), kMaxSetupPayload))};
  std::memcpy(frame.data(), head, sizeof(head));
  frame.append(payload, 0, head[2]);
  return net::send_all(fd, frame.data(), frame.size(), deadline);
}

bool SetupReader::next(int fd, SetupType* type, std::string* payload, bool* broken) {
  while (buffer_.size() < want_) {
    char chunk[512];
    ssize_t n = net::read_some(fd, chunk, std::min(sizeof(chunk), want_ - buffer_.size()));
    if (n < 0) {
      *broken = true;
      return false;
    }
    if (n == 0) return false;
    buffer_.append(chunk, n);
    if (buffer_.size() == 12 && want_ == 12) {
      uint32_t head[3];
      std::memcpy(head, buffer_.data(), sizeof(head));
      if (head[0] != kSetupMagic || head[2] > kMaxSetupPayload || head[1] < 1 || head[1] > 3) {
        *broken = true;
        return false;
      }
      want_ = 12 + head[2];
    }
  }
  uint32_t head[3];
  std::memcpy(head, buffer_.data(), sizeof(head));
  *type = static_cast<SetupType>(head[1]);
  *payload = buffer_.substr(12);
  buffer_.clear();
  want_ = 12;
  return true;
}

}  // namespace torch_npu_sim::dist
