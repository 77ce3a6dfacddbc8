// Deterministic fault injection on the wire, and the payload checksum.
//
// Rules (from NPUSIM_FAULTS or torch_npu_sim.distributed.faults) name a rank, an
// operation kind and which of its operations to hit; the communicator asks `plan_fault`
// once per operation and applies the answer to the bytes it sends to its peers:
//
//   spec   := rule (';' rule)*
//   rule   := field (',' field)*            (`action` is required; fields in any order)
//   field  := rank=N|any  op=KIND|any  call=N  step=N  at=message|read  action=ACTION
//   KIND   := broadcast all_reduce reduce all_gather gather scatter reduce_scatter
//             all_to_all barrier send
//   ACTION := kill | stop | delay:MS | drop | corrupt
//
// call=N: the Nth operation (1-based, default 1) on that rank matching `op` (and `step`)
// since the rule was added. step=S: only operations issued while the step set with
// `set_fault_step` is S. at=read (kill, stop, delay only): the fault strikes while the rank
// reads its peers' memory in place, between mapping and reading it, instead of on its
// first message; an operation that streams never gets there. Each rule fires once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "distributed/Wire.h"

namespace torch_npu_sim::dist {

enum class FaultAction : uint8_t { None, Kill, Stop, Delay, Drop, Corrupt };

// What to do to one operation's outgoing messages.
struct PlannedFault {
  FaultAction action = FaultAction::None;
  uint32_t delay_ms = 0;
  std::string rule;  // the rule, as text, for the log line and errors
  bool at_read = false;
};

// Adds the rules of `spec`; returns their ids. Throws std::invalid_argument naming the bad
// part, prefixed with `source` (e.g. "NPUSIM_FAULTS"); nothing is added then.
std::vector<int> add_faults(const std::string& spec, const std::string& source);
bool remove_fault(int id);
void clear_faults();
// Validates without adding (same errors as add_faults).
void check_fault_spec(const std::string& spec, const std::string& source);

struct FaultRuleState {
  int id;
  std::string spec;
  uint64_t matched;  // operations counted so far
  bool fired;
};
std::vector<FaultRuleState> list_faults();

void set_fault_step(int64_t step);  // -1: no step
int64_t fault_step();

// Loads NPUSIM_FAULTS once per process (at the first group, or the first API call), only
// when NPUSIM_ALLOW_FAULTS=1 too; otherwise it warns that the rules are ignored.
void load_fault_env_once();

// Cheap test before planning: are there rules that have not fired?
bool faults_armed();
// Counts one operation of `kind` on `rank` against every rule; the fault it triggers.
PlannedFault plan_fault(int rank, OpKind kind);
// Carries the fault out where it does not depend on the message (kill, stop, delay),
// logging it to stderr; `what` describes the message.
void perform_fault(const PlannedFault& fault, int rank, const std::string& what);

// CRC32C (Castagnoli), hardware-accelerated where available. Incremental: pass the
// previous result to continue; start from 0.
uint32_t crc32c(uint32_t crc, const void* data, size_t n);

// MessageHeader::flags bit: `checksum` holds the CRC32C of the payload.
constexpr uint16_t kHeaderHasChecksum = 1;

// NPUSIM_CHECKSUM: 0 (default) or 1. Throws std::invalid_argument on anything else.
bool checksum_from_env();

}  // namespace torch_npu_sim::dist
