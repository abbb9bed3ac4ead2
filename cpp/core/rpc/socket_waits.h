// Bounded waits in ggml's RPC socket calls. ggml's RPC server blocks in accept() and recv()
// forever, and its client's handshake waits for an answer forever. On Linux this build wraps
// accept() and recv() at link time (-Wl,--wrap): on a thread inside a SocketWaitScope they wait
// in slices and give up when the scope's stop flag is set or its receive timeout passes. Every
// other thread (and every other platform) calls libc directly.
#pragma once

#include <atomic>
#include <cstdint>

namespace llamaproc {

// Shared between an RPC worker and the wrapped socket calls on its thread.
struct RpcWorkerSignals {
    std::atomic<bool> stop{false};       // set by stop(): accept/recv give up
    std::atomic<bool> listening{false};  // set at the first accept(): the server socket is up
    std::atomic<uint64_t> connections{0};
};

struct SocketWaits {
    RpcWorkerSignals * worker = nullptr;  // accept()/recv() give up once worker->stop is set
    int recv_timeout_ms = -1;             // recv() gives up after this long without data (-1: never)
};

class SocketWaitScope {
public:
    explicit SocketWaitScope(SocketWaits waits);
    ~SocketWaitScope();
    SocketWaitScope(const SocketWaitScope &) = delete;
    SocketWaitScope & operator=(const SocketWaitScope &) = delete;

private:
    SocketWaits previous_;
};

// False where the calls are not wrapped (not Linux): scopes then change nothing.
bool socket_waits_available();

}  // namespace llamaproc
