// Small blocking-with-deadline socket helpers for setting up connections. Steady-state
// traffic uses the non-blocking transports instead.
#pragma once

#include <chrono>
#include <string>

namespace torch_npu_sim::dist::net {

using Clock = std::chrono::steady_clock;

// Listens on bind_addr (e.g. "127.0.0.1" or "0.0.0.0") at an ephemeral port.
int listen_on(const std::string& bind_addr, int* port);
// Connects, retrying refused connections until the deadline; throws on timeout.
int connect_to(const std::string& host, int port, Clock::time_point deadline);
// Accepts one connection, or returns -1 when the deadline passes.
int accept_until(int listen_fd, Clock::time_point deadline);

// Whole-buffer transfers bounded by a deadline; false on timeout, EOF or error.
bool send_all(int fd, const void* data, size_t len, Clock::time_point deadline);
bool recv_all(int fd, void* data, size_t len, Clock::time_point deadline);

void tune_for_bulk(int fd);  // TCP_NODELAY, large buffers
void set_nonblocking(int fd);

}  // namespace torch_npu_sim::dist::net
