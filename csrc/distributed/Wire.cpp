#include "distributed/Wire.h"

#include <c10/core/ScalarType.h>

#include <sstream>

namespace torch_npu_sim::dist {

const char* op_name(OpKind kind) {
  switch (kind) {
    case OpKind::Broadcast: return "broadcast";
    case OpKind::AllReduce: return "all_reduce";
    case OpKind::Reduce: return "reduce";
    case OpKind::AllGather: return "all_gather";
    case OpKind::Gather: return "gather";
    case OpKind::Scatter: return "scatter";
    case OpKind::ReduceScatter: return "reduce_scatter";
    case OpKind::AllToAll: return "all_to_all";
    case OpKind::Barrier: return "barrier";
    case OpKind::Send: return "send/recv";
    default: return "unknown operation";
  }
}

const char* reduce_op_name(uint8_t op) {
  static const char* names[] = {"SUM", "AVG", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR", "PREMUL_SUM"};
  return op < 9 ? names[op] : "UNKNOWN";
}

MessageHeader make_header(const OpDesc& op, int src_rank, uint64_t payload_bytes) {
  MessageHeader h{};
  h.magic = kWireMagic;
  h.version = kWireVersion;
  h.kind = static_cast<uint8_t>(op.kind);
  h.step = op.step;
  h.dtype = op.dtype;
  h.reduce_op = op.reduce_op;
  h.root = op.root;
  h.src_rank = src_rank;
  h.tag = op.tag;
  h.seq = op.seq;
  h.numel = op.numel;
  h.payload_bytes = payload_bytes;
  return h;
}

static const char* dtype_name(uint8_t dtype) {
  if (dtype >= static_cast<uint8_t>(c10::ScalarType::NumOptions)) return "invalid dtype";
  return c10::toString(static_cast<c10::ScalarType>(dtype));
}

static std::string describe_fields(uint8_t kind, uint64_t seq, uint8_t dtype, uint64_t numel,
                                   uint8_t reduce_op, int32_t root, uint32_t tag) {
  std::ostringstream s;
  auto k = static_cast<OpKind>(kind);
  s << op_name(k);
  if (k == OpKind::Send) {
    s << " (tag " << tag;
  } else {
    s << " #" << seq << " (";
  }
  if (k != OpKind::Barrier) {
    if (k == OpKind::Send) s << ", ";
    s << dtype_name(dtype) << ", " << numel << " elements";
  }
  if (k == OpKind::AllReduce || k == OpKind::Reduce || k == OpKind::ReduceScatter)
    s << ", " << reduce_op_name(reduce_op);
  if (k == OpKind::Broadcast || k == OpKind::Reduce || k == OpKind::Gather || k == OpKind::Scatter)
    s << ", root " << root;
  s << ")";
  return s.str();
}

std::string describe(const MessageHeader& h) {
  return describe_fields(h.kind, h.seq, h.dtype, h.numel, h.reduce_op, h.root, h.tag);
}

std::string describe(const OpDesc& op) {
  return describe_fields(static_cast<uint8_t>(op.kind), op.seq, op.dtype, op.numel, op.reduce_op,
                         op.root, op.tag);
}

std::string check_header(const MessageHeader& got, const MessageHeader& expected, int peer,
                         int my_rank) {
  std::ostringstream s;
  if (got.magic != kWireMagic || got.version != kWireVersion) {
    s << "malformed message from rank " << peer << " (bad magic or version " << got.version
      << "); the byte stream is corrupt";
    return s.str();
  }
  if (got.kind == 0 || got.kind >= static_cast<uint8_t>(OpKind::kEnd) ||
      got.dtype >= static_cast<uint8_t>(c10::ScalarType::NumOptions) || got.reduce_op > 8 ||
      got.src_rank != peer) {
    s << "malformed message header from rank " << peer;
    return s.str();
  }
  bool same_op = got.kind == expected.kind && got.seq == expected.seq &&
                 got.dtype == expected.dtype && got.numel == expected.numel &&
                 got.reduce_op == expected.reduce_op && got.root == expected.root &&
                 got.tag == expected.tag;
  if (!same_op && got.kind != static_cast<uint8_t>(OpKind::Send) && got.seq > expected.seq) {
    // Ranks number their collectives alike, so a later number means a message went missing.
    s << "a message from rank " << peer << " was lost: rank " << my_rank << " still waits for its part of "
      << describe(expected) << " but its next message belongs to " << describe(got);
    return s.str();
  }
  if (!same_op) {
    s << "mismatched collectives: rank " << peer << " called " << describe(got) << " but rank "
      << my_rank << " called " << describe(expected);
    return s.str();
  }
  if (got.reply_bytes != expected.reply_bytes) {
    s << "mismatched " << describe(expected) << ": rank " << peer << " expects " << got.reply_bytes
      << " bytes from rank " << my_rank << ", which sends " << expected.reply_bytes
      << " bytes; sizes differ across ranks";
    return s.str();
  }
  if (got.step != expected.step || got.payload_bytes != expected.payload_bytes) {
    s << "mismatched " << describe(expected) << ": rank " << peer << " sends "
      << got.payload_bytes << " bytes to rank " << my_rank << ", which expects "
      << expected.payload_bytes << " bytes (step " << int(got.step) << " vs "
      << int(expected.step) << "); sizes differ across ranks";
    return s.str();
  }
  return {};
}

}  // namespace torch_npu_sim::dist
