// Small non-blocking socket helpers for setting up connections. Steady-state traffic
// uses the transports instead.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace torch_npu_sim::dist::net {

using Clock = std::chrono::steady_clock;

// Listens on exactly `bind_addr` (numeric or a name resolving to one address) at an
// ephemeral port; never on every interface. `*bound` gets the numeric address bound.
int listen_on(const std::string& bind_addr, int* port, std::string* bound = nullptr);

// Starts a non-blocking connect; returns the socket (connected or in progress), or -1
// with `*error` set. Finish with connect_result once the socket is writable.
int connect_start(const std::string& host, int port, std::string* error);
int connect_result(int fd);  // 0, or the errno of a failed connect

// One pending connection, non-blocking (SOCK_CLOEXEC | SOCK_NONBLOCK); -1 if none.
int accept_one(int listen_fd);

// Non-blocking transfers: bytes moved (0: would block), or -1 on EOF or error.
ssize_t read_some(int fd, void* data, size_t len);
ssize_t write_some(int fd, const void* data, size_t len);

// Whole-buffer transfers bounded by a deadline; false on timeout, EOF or error.
bool send_all(int fd, const void* data, size_t len, Clock::time_point deadline);
bool recv_all(int fd, void* data, size_t len, Clock::time_point deadline);

// The local address the kernel would use to reach `host` (no packet is sent), or "".
std::string address_toward(const std::string& host);
// The first non-loopback address this host's name resolves to, or "".
std::string hostname_address();
bool is_loopback(const std::string& numeric_addr);

void tune_for_bulk(int fd);  // TCP_NODELAY, large buffers
void set_nonblocking(int fd);

}  // namespace torch_npu_sim::dist::net
