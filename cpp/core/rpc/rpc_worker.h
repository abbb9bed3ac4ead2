// An RPC worker: ggml's RPC server (what llama.cpp's rpc-server binary runs) on a native thread
// of this process, so that a llama-server elsewhere (`--rpc host:port`) can place layers of its
// model on this machine's devices.
//
// ggml's server loop has no stop: it blocks in accept() and recv() forever. On a worker's
// thread those calls wait in slices and give up once stop() is asked (rpc/socket_waits.h), so
// a worker stops like a server does. Where they cannot be wrapped (not Linux) start() refuses:
// use llama.cpp's rpc-server binary there.
//
// The RPC protocol has no authentication: anyone who reaches the port can run computations
// and read or write the worker's memory buffers. Workers therefore listen on loopback unless
// `allow_remote` says otherwise.
#pragma once

#include "native_log.h"
#include "rpc/socket_waits.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace llamaproc {

struct RpcWorkerOptions {
    std::string host = "127.0.0.1";
    int port = 50052;         // llama.cpp's rpc-server default
    int threads = 0;          // CPU threads for computing; 0: one per physical core but one
    std::string cache_dir;    // a local cache of tensors sent before (rpc-server -c); "" for none
    bool allow_remote = false;
};

class RpcWorker {
public:
    explicit RpcWorker(RpcWorkerOptions options);
    ~RpcWorker();
    RpcWorker(const RpcWorker &) = delete;
    RpcWorker & operator=(const RpcWorker &) = delete;

    // Returns once the worker accepts connections. Throws Error(config) for a non-loopback host
    // without allow_remote, a bad host or port, or a platform without the socket wraps, and
    // Error(startup) when the port cannot be bound.
    void start();
    // Stops accepting, drops the connected client (its server fails, not this process) and
    // joins the thread. Idempotent.
    void stop();

    bool running() const;
    std::string endpoint() const;        // "host:port", as --rpc takes it
    uint64_t connections() const;        // clients accepted so far
    std::string failure() const;         // why the thread ended without stop(); "" if it did not
    std::string device_description() const;  // the devices it serves, as rpc-server lists them

private:
    void run();

    RpcWorkerOptions options_;
    std::shared_ptr<RpcWorkerSignals> signals_;
    std::shared_ptr<LogTail> tail_;
    std::thread thread_;
    std::atomic<bool> thread_done_{true};
    mutable std::mutex mutex_;
    std::string failure_;
    std::string devices_;
};

}  // namespace llamaproc
