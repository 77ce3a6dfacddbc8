// The bytes that travel between ranks: every message is a fixed header and a payload.
// Headers are validated field by field before any payload is read, so malformed or
// mismatched input becomes an error naming both sides, never an over-read.
#pragma once

#include <cstdint>
#include <string>

namespace torch_npu_sim::dist {

constexpr uint32_t kWireMagic = 0x4d53504eu;  // "NPSM"
constexpr uint16_t kWireVersion = 1;

enum class OpKind : uint8_t {
  Broadcast = 1,
  AllReduce,
  Reduce,
  AllGather,
  Gather,
  Scatter,
  ReduceScatter,
  AllToAll,
  Barrier,
  Send,
  kEnd,
};
const char* op_name(OpKind kind);

// Two independent byte streams per ordered pair of ranks: collectives stay in lock step
// across the group, point-to-point traffic flows beside them.
enum class Lane : uint8_t { Collective = 0, P2P = 1 };
constexpr int kLanes = 2;

// What every participant of one message must agree on.
struct OpDesc {
  OpKind kind = OpKind::Barrier;
  uint8_t step = 0;       // phase within the operation (reduce-scatter, then all-gather, ...)
  uint8_t dtype = 0;      // c10::ScalarType
  uint8_t reduce_op = 0;  // c10d::ReduceOp::RedOpType, 0 where not reducing
  int32_t root = -1;
  uint32_t tag = 0;
  uint64_t seq = 0;    // per-group collective number, or per-pair message number for p2p
  uint64_t numel = 0;  // elements of the operation as the caller sees them
};

struct MessageHeader {
  uint32_t magic;
  uint16_t version;
  uint8_t kind;
  uint8_t step;
  uint8_t dtype;
  uint8_t reduce_op;
  uint16_t flags;  // kHeaderHasChecksum (FaultInjection.h)
  int32_t root;
  int32_t src_rank;
  uint32_t tag;
  uint32_t checksum;  // CRC32C of the payload, when flagged
  uint64_t seq;
  uint64_t numel;
  uint64_t payload_bytes;
  // Bytes the sender expects back from the receiver in this step, where sizes may differ
  // per pair (all_to_all): both sides of a pair check both directions.
  uint64_t reply_bytes;
};
static_assert(sizeof(MessageHeader) == 64, "wire header layout");

MessageHeader make_header(const OpDesc& op, int src_rank, uint64_t payload_bytes);

// "all_reduce #12 (Float, 1031 elements, SUM)"
std::string describe(const MessageHeader& h);
std::string describe(const OpDesc& op);

// Empty if `got` (read from `peer`) is the message this rank expects; else why not.
// Structural problems (magic, version, bounds) and disagreements (kind, size, dtype,
// reduce op, root) are both reported.
std::string check_header(const MessageHeader& got, const MessageHeader& expected, int peer,
                         int my_rank);

const char* reduce_op_name(uint8_t op);

}  // namespace torch_npu_sim::dist
