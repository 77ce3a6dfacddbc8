// SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), self-contained so that the handshake
// needs no crypto library (and no torch: tests compile it alone against known vectors).
// Used only to prove knowledge of the group secret over fresh nonces.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace torch_npu_sim::dist {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  Digest finish();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

// HMAC-SHA256 over the concatenation of up to three byte ranges (null ones skipped).
Digest hmac_sha256(const void* key, size_t key_len, const void* a, size_t a_len,
                   const void* b = nullptr, size_t b_len = 0, const void* c = nullptr, size_t c_len = 0);

// Constant-time comparison, so a forged MAC learns nothing from how fast it is refused.
bool digest_equal(const uint8_t* a, const uint8_t* b, size_t n);

}  // namespace torch_npu_sim::dist
