#include "distributed/Rendezvous.h"

#include <c10/util/Exception.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "distributed/Socket.h"

namespace torch_npu_sim::dist {
namespace {

constexpr uint32_t kHelloMagic = 0x4c48504eu;  // "NPHL"
constexpr size_t kSecretBytes = 32;

// Connections per pair of ranks: control always; data lanes only over TCP.
enum Channel : uint8_t { kControl = 0, kDataCollective = 1, kDataP2P = 2 };

struct Hello {
  uint32_t magic;
  uint16_t version;
  uint8_t channel;
  uint8_t reserved;
  int32_t rank;
  int32_t world;
  uint64_t generation;
  uint8_t secret[kSecretBytes];
};

struct HelloAck {
  uint32_t magic;
  uint32_t status;
};

std::string env(const char* name, const char* fallback = "") {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string host_identity() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  return std::string(host) + "|" + boot;
}

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  size_t got = 0;
  while (got < bytes) {
    ssize_t r = getrandom(buf.data() + got, bytes - got, 0);
    TORCH_CHECK(r > 0 || errno == EINTR, "npusim: getrandom failed");
    if (r > 0) got += r;
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char b : buf) {
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

bool equal_constant_time(const uint8_t* a, const uint8_t* b, size_t n) {
  uint8_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff |= a[i] ^ b[i];
  return diff == 0;
}

class Joiner {
 public:
  Joiner(const KeyValueStore& store, const GroupConfig& config)
      : store_(store), config_(config), deadline_(net::Clock::now() + config.timeout) {}

  std::unique_ptr<Communicator> join() {
    const int world = config_.world, me = config_.rank;
    generation_ = static_cast<uint64_t>((store_.add("npusim/join", 1) - 1) / world);
    prefix_ = "npusim/" + std::to_string(generation_) + "/";

    // Who is where, and which transport the group uses (rank 0 decides).
    publish("host/" + std::to_string(me), host_identity());
    bool same_host = true;
    for (int r = 0; r < world; ++r) same_host &= fetch("host/" + std::to_string(r)) == host_identity();
    if (me == 0) {
      std::string wanted = env("NPUSIM_TRANSPORT", "auto");
      TORCH_CHECK(wanted == "auto" || wanted == "shm" || wanted == "tcp",
                  "npusim: NPUSIM_TRANSPORT must be auto, shm or tcp, got '", wanted, "'");
      TORCH_CHECK(wanted != "shm" || same_host,
                  "npusim: NPUSIM_TRANSPORT=shm needs all ranks on one host, but they are not");
      publish("transport", wanted == "tcp" || !same_host ? "tcp" : "shm");
      publish("secret", random_hex(kSecretBytes));
    }
    const bool tcp = fetch("transport") == "tcp";
    std::string secret_hex = fetch("secret");
    TORCH_CHECK(secret_hex.size() == 2 * kSecretBytes, "npusim: malformed group secret in the store");
    for (size_t i = 0; i < kSecretBytes; ++i) secret_[i] = static_cast<uint8_t>(std::stoi(secret_hex.substr(2 * i, 2), nullptr, 16));

    // Listen, advertise, connect: rank r dials every lower rank and accepts every higher.
    std::string advertised = env("NPUSIM_SOCKET_ADDR");
    std::string bind_addr = advertised.empty() ? (same_host ? "127.0.0.1" : "0.0.0.0") : advertised;
    if (advertised.empty()) {
      char host[256] = {0};
      gethostname(host, sizeof(host) - 1);
      advertised = same_host ? "127.0.0.1" : host;
    }
    int port = 0;
    int listen_fd = net::listen_on(bind_addr, &port);
    std::vector<std::vector<int>> fds(world, std::vector<int>(3, -1));
    try {
      publish("addr/" + std::to_string(me), advertised + " " + std::to_string(port));
      const int channels = tcp ? 3 : 1;
      for (int peer = 0; peer < me; ++peer) {
        std::string addr = fetch("addr/" + std::to_string(peer));
        auto space = addr.rfind(' ');
        TORCH_CHECK(space != std::string::npos, "npusim: malformed address of rank ", peer);
        for (int ch = 0; ch < channels; ++ch)
          fds[peer][ch] = dial(addr.substr(0, space), std::stoi(addr.substr(space + 1)), static_cast<Channel>(ch), peer);
      }
      int expected = (world - 1 - me) * channels;
      while (expected > 0) {
        int fd = net::accept_until(listen_fd, deadline_);
        TORCH_CHECK_WITH(DistNetworkError, fd >= 0, "npusim: rank ", me, " timed out after ",
                         config_.timeout.count(), " ms waiting for higher ranks to connect");
        if (admit(fd, channels, fds)) --expected;
      }
    } catch (...) {
      close(listen_fd);
      for (auto& row : fds)
        for (int fd : row)
          if (fd >= 0) close(fd);
      throw;
    }
    close(listen_fd);

    std::vector<int> control(world, -1);
    std::vector<std::vector<int>> data(world, std::vector<int>(kLanes, -1));
    for (int p = 0; p < world; ++p) {
      control[p] = fds[p][kControl];
      data[p][0] = fds[p][kDataCollective];
      data[p][1] = fds[p][kDataP2P];
      for (int fd : data[p])
        if (fd >= 0) net::set_nonblocking(fd);
    }

    auto health = std::make_shared<GroupHealth>(config_.name);
    double peer_timeout_s = std::atof(env("NPUSIM_PEER_TIMEOUT", "0").c_str());
    auto monitor = std::make_unique<PeerMonitor>(
        me, std::move(control), *health, std::chrono::milliseconds(static_cast<int64_t>(peer_timeout_s * 1000)));
    std::unique_ptr<Transport> transport =
        tcp ? make_tcp_transport(std::move(data), me) : shared_memory_transport();
    return std::make_unique<Communicator>(config_, std::move(transport), std::move(monitor), health);
  }

 private:
  std::unique_ptr<Transport> shared_memory_transport() {
    const int world = config_.world, me = config_.rank;
    size_t ring_bytes = static_cast<size_t>(std::atoll(env("NPUSIM_SHM_RING_BYTES", "1048576").c_str()));
    TORCH_CHECK(ring_bytes >= 4096 && ring_bytes <= (size_t(1) << 30),
                "npusim: NPUSIM_SHM_RING_BYTES must be between 4096 and 1 GiB");
    std::unique_ptr<ShmSegment> seg;
    std::string name;
    try {
      if (me == 0) {
        seg = shm_create(world, ring_bytes);
        name = seg->name;
        publish("shm", name);
      } else {
        name = fetch("shm");
        seg = shm_open_existing(name, world, ring_bytes);
      }
      // Unlink once every rank has it mapped: the memory then lives exactly as long as
      // the mappings, and no name is left behind even if a rank dies later.
      store_.add(prefix_ + "shm_mapped", 1);
      while (store_.add(prefix_ + "shm_mapped", 0) < world) {
        TORCH_CHECK_WITH(DistBackendError, net::Clock::now() < deadline_, "npusim: rank ", me,
                         " timed out waiting for all ranks to map the shared memory");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } catch (...) {
      shm_unlink_quietly(name);
      throw;
    }
    shm_unlink_quietly(name);
    return make_shm_transport(std::move(seg), me, world, ring_bytes);
  }

  void publish(const std::string& key, const std::string& value) { store_.set(prefix_ + key, value); }

  std::string fetch(const std::string& key) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - net::Clock::now());
    TORCH_CHECK_WITH(DistBackendError, left.count() > 0 && store_.wait(prefix_ + key, left),
                     "npusim: rank ", config_.rank, " timed out after ", config_.timeout.count(),
                     " ms waiting for '", key, "' from the other ranks (did every rank join the group?)");
    return store_.get(prefix_ + key);
  }

  Hello hello(Channel ch) const {
    Hello h{};
    h.magic = kHelloMagic;
    h.version = kWireVersion;
    h.channel = ch;
    h.rank = config_.rank;
    h.world = config_.world;
    h.generation = generation_;
    std::memcpy(h.secret, secret_, kSecretBytes);
    return h;
  }

  int dial(const std::string& host, int port, Channel ch, int peer) {
    int fd = net::connect_to(host, port, deadline_);
    net::tune_for_bulk(fd);
    Hello h = hello(ch);
    HelloAck ack{};
    if (!net::send_all(fd, &h, sizeof(h), deadline_) || !net::recv_all(fd, &ack, sizeof(ack), deadline_) ||
        ack.magic != kHelloMagic || ack.status != 0) {
      close(fd);
      C10_THROW_ERROR(DistNetworkError, "npusim: rank " + std::to_string(config_.rank) +
                                            " could not complete the handshake with rank " + std::to_string(peer));
    }
    return fd;
  }

  // Validates a connecting peer: it must know the group secret and be an expected rank.
  bool admit(int fd, int channels, std::vector<std::vector<int>>& fds) {
    Hello h{};
    auto quick = std::min(deadline_, net::Clock::now() + std::chrono::seconds(10));
    bool ok = net::recv_all(fd, &h, sizeof(h), quick) && h.magic == kHelloMagic &&
              h.version == kWireVersion && h.world == config_.world && h.generation == generation_ &&
              h.rank > config_.rank && h.rank < config_.world && h.channel < channels &&
              equal_constant_time(h.secret, secret_, kSecretBytes) && fds[h.rank][h.channel] < 0;
    if (!ok) {
      close(fd);  // not a member of this group: ignore it and keep waiting for real peers
      return false;
    }
    HelloAck ack{kHelloMagic, 0};
    if (!net::send_all(fd, &ack, sizeof(ack), quick)) {
      close(fd);
      return false;
    }
    net::tune_for_bulk(fd);
    fds[h.rank][h.channel] = fd;
    return true;
  }

  const KeyValueStore& store_;
  const GroupConfig& config_;
  const net::Clock::time_point deadline_;
  uint64_t generation_ = 0;
  std::string prefix_;
  uint8_t secret_[kSecretBytes] = {0};
};

}  // namespace

std::unique_ptr<Communicator> rendezvous(const KeyValueStore& store, const GroupConfig& config) {
  TORCH_CHECK(config.world >= 1 && config.rank >= 0 && config.rank < config.world,
              "npusim: invalid rank ", config.rank, " for world size ", config.world);
  return Joiner(store, config).join();
}

}  // namespace torch_npu_sim::dist
