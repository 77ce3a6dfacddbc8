// Connecting the ranks of a group: every rank dials every lower rank and accepts every
// higher one, all at once on one poll loop, so a silent or malformed connection costs
// the group nothing (it is dropped after a short deadline while real peers get in).
//
// Both sides prove knowledge of the group secret without sending it: HMAC-SHA256 over
// both sides' fresh nonces, with a different label per direction so that neither proof
// can be replayed as the other. Wire format (little-endian, fixed sizes):
//   dialer -> listener  Hello     {u32 magic "NPH2", u16 version, u8 channel, u8 0,
//                                  i32 rank, i32 world, u64 generation, u8 nonce[32]}  56 B
//   listener -> dialer  Challenge {u32 magic, u32 status, i32 rank, u32 0, u8 nonce[32],
//                                  u8 mac[32]}                                         80 B
//        mac = HMAC(secret, "npusim-server" | Hello | Challenge[0:48])
//   dialer -> listener  Proof     {u32 magic, u32 0, u8 mac[32]}                       40 B
//        mac = HMAC(secret, "npusim-client" | Hello | Challenge)
//   listener -> dialer  Ack       {u32 magic, u32 status}                               8 B
// A dialer sends its proof only after checking the listener's.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace torch_npu_sim::dist {

using Secret = std::array<uint8_t, 32>;
void random_bytes(void* out, size_t n);

struct HandshakeSpec {
  int rank = 0;
  int world = 1;
  int channels = 1;  // connections per pair of ranks
  // When set (one entry per rank): connections to each peer, overriding `channels`
  // (a group mixing transports needs data sockets only towards its TCP peers).
  std::vector<int> peer_channels;
  uint64_t generation = 0;
  Secret secret{};
  std::chrono::steady_clock::time_point deadline;
  std::chrono::milliseconds timeout{0};  // for messages only
};

struct PeerAddress {
  std::string host;
  int port = 0;
};

// Returns fds[peer][channel] (-1 for this rank and unused channels), non-blocking.
// `lower[p]` is where rank p < rank listens. `watch` runs every ~50 ms while waiting
// and throws to abandon (e.g. a peer is known to have failed); sockets are then closed.
std::vector<std::vector<int>> connect_group(int listen_fd, const std::vector<PeerAddress>& lower,
                                            const HandshakeSpec& spec, const std::function<void()>& watch);

// Set-up messages exchanged on control connections after the handshake (before the
// peer monitor owns them): {u32 magic "NPST", u32 type, u32 length} + payload.
enum class SetupType : uint32_t { Offer = 1, Ready = 2, Commit = 3 };
bool send_setup(int fd, SetupType type, const std::string& payload, std::chrono::steady_clock::time_point deadline);
// Reads one message without blocking and never past its end (what follows belongs to
// the peer monitor): true once complete; `broken` on EOF or a malformed header.
struct SetupReader {
  bool next(int fd, SetupType* type, std::string* payload, bool* broken);

 private:
  std::string buffer_;
  size_t want_ = 12;
};

}  // namespace torch_npu_sim::dist
