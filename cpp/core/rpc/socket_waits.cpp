#include "rpc/socket_waits.h"

#include <cerrno>
#include <algorithm>
#include <chrono>

#if defined(__linux__) && defined(LLAMAPROC_WRAPS_SOCKETS)
#include <poll.h>
#include <sys/socket.h>
#endif

namespace llamaproc {

namespace {

thread_local SocketWaits t_waits;

constexpr int POLL_SLICE_MS = 50;

}  // namespace

SocketWaitScope::SocketWaitScope(SocketWaits waits) : previous_(t_waits) { t_waits = waits; }

SocketWaitScope::~SocketWaitScope() { t_waits = previous_; }

#if defined(__linux__) && defined(LLAMAPROC_WRAPS_SOCKETS)
bool socket_waits_available() { return true; }

namespace {

// Waits until `fd` is readable; false when the scope's stop flag or timeout ends the wait
// first (errno says which).
bool wait_readable(int fd, int timeout_ms) {
    const auto start = std::chrono::steady_clock::now();
    while (true) {
        if (t_waits.worker != nullptr && t_waits.worker->stop.load()) {
            errno = ECANCELED;
            return false;
        }
        int slice = POLL_SLICE_MS;
        if (timeout_ms >= 0) {
            const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start).count();
            if (waited >= timeout_ms) {
                errno = ETIMEDOUT;
                return false;
            }
            slice = static_cast<int>(std::min<long long>(slice, timeout_ms - waited));
        }
        pollfd p{fd, POLLIN, 0};
        const int rc = poll(&p, 1, slice);
        if (rc > 0 || (rc < 0 && errno != EINTR)) {
            return true;  // readable, or an error the real call reports
        }
    }
}

}  // namespace
#else
bool socket_waits_available() { return false; }
#endif

}  // namespace llamaproc

#if defined(__linux__) && defined(LLAMAPROC_WRAPS_SOCKETS)
// -Wl,--wrap=accept / recv send every call in this module here; __real_* are libc's.
extern "C" int __real_accept(int fd, sockaddr * addr, socklen_t * len);
extern "C" ssize_t __real_recv(int fd, void * buf, size_t n, int flags);

extern "C" int __wrap_accept(int fd, sockaddr * addr, socklen_t * len) {
    llamaproc::RpcWorkerSignals * w = llamaproc::t_waits.worker;
    if (w == nullptr) {
        return __real_accept(fd, addr, len);
    }
    w->listening = true;
    if (!llamaproc::wait_readable(fd, -1)) {
        return -1;
    }
    const int client = __real_accept(fd, addr, len);
    if (client >= 0) {
        w->connections.fetch_add(1);
    }
    return client;
}

extern "C" ssize_t __wrap_recv(int fd, void * buf, size_t n, int flags) {
    const llamaproc::SocketWaits & waits = llamaproc::t_waits;
    if (waits.worker == nullptr && waits.recv_timeout_ms < 0) {
        return __real_recv(fd, buf, n, flags);
    }
    if (!llamaproc::wait_readable(fd, waits.recv_timeout_ms)) {
        return -1;
    }
    return __real_recv(fd, buf, n, flags);
}
#endif
