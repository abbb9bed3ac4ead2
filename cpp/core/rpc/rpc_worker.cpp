#include "rpc/rpc_worker.h"

#include "server/cpu_governor.h"

#include "errors.h"
#include "rpc/rpc_devices.h"
#include "rpc/socket_waits.h"
#include "server/instance_params.h"

#include "ggml-backend.h"
#ifdef GGML_USE_RPC
#include "ggml-rpc.h"
#endif

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#if defined(__linux__)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace llamaproc {

namespace {

#if defined(__linux__)
// Binds host:port the way ggml's server will (IPv4, SO_REUSEADDR) and lets go, so that a port
// in use is reported as an error instead of a thread that ends at once.
std::string bind_problem(const std::string & host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return std::strerror(errno);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    std::string problem;
    if (bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
        problem = std::strerror(errno);
    }
    close(fd);
    return problem;
}
#else
std::string bind_problem(const std::string &, int) { return ""; }
#endif

bool is_ipv4_literal(const std::string & host) {
#if defined(__linux__)
    in_addr out{};
    return inet_pton(AF_INET, host.c_str(), &out) == 1;
#else
    return !host.empty();
#endif
}

}  // namespace

RpcWorker::RpcWorker(RpcWorkerOptions options)
    : options_(std::move(options)), signals_(std::make_shared<RpcWorkerSignals>()), tail_(std::make_shared<LogTail>()) {
    if (options_.host == "localhost") {
        options_.host = "127.0.0.1";  // ggml's transport takes IPv4 literals only
    }
}

RpcWorker::~RpcWorker() { stop(); }

void RpcWorker::start() {
#ifndef GGML_USE_RPC
    throw Error(ErrorKind::config, "this build has no RPC backend (rebuild with -Ccmake.define.GGML_RPC=ON)");
#else
    if (!socket_waits_available()) {
        throw Error(ErrorKind::config, "an in-process RPC worker needs Linux (its stop wraps the socket calls at "
                                       "link time); run llama.cpp's rpc-server binary instead");
    }
    if (running()) {
        throw Error(ErrorKind::config, "the RPC worker at " + endpoint() + " is already running");
    }
    if (!is_ipv4_literal(options_.host)) {
        throw Error(ErrorKind::config, "RPC worker host '" + options_.host +
                                           "' is not an IPv4 address (ggml's RPC transport listens on IPv4 only)");
    }
    if (options_.port <= 0 || options_.port > 65535) {
        throw Error(ErrorKind::config, "RPC worker port " + std::to_string(options_.port) + " is not in 1..65535");
    }
    if (!is_loopback(options_.host) && !options_.allow_remote) {
        throw Error(ErrorKind::config,
                    "refusing to listen on " + options_.host + ": ggml's RPC protocol has no authentication, so anyone "
                    "who reaches the port could run computations on this machine and read or write its buffers. "
                    "Listen on 127.0.0.1, or opt in with allow_remote=True (CLI: --allow-remote) on a trusted network");
    }
    if (const std::string problem = bind_problem(options_.host, options_.port); !problem.empty()) {
        throw Error(ErrorKind::startup, "the RPC worker cannot listen on " + endpoint() + ": " + problem);
    }
    if (!options_.cache_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(options_.cache_dir, ec);
        if (ec) {
            throw Error(ErrorKind::config, "RPC worker cache directory '" + options_.cache_dir + "': " + ec.message());
        }
    }
    if (thread_.joinable()) {
        thread_.join();  // a previous run that ended on its own
    }
    signals_ = std::make_shared<RpcWorkerSignals>();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        failure_.clear();
    }
    thread_done_ = false;
    thread_ = std::thread([this] { run(); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!signals_->listening.load() && !thread_done_.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!signals_->listening.load()) {
        stop();
        std::string why = failure();
        throw Error(ErrorKind::startup, "the RPC worker at " + endpoint() + " did not start" +
                                            (why.empty() ? std::string() : ": " + why),
                    tail_->lines());
    }
#endif
}

void RpcWorker::run() {
#ifdef GGML_USE_RPC
    name_this_thread("llp-rpc");
    ThreadLogScope scope(tail_);
    SocketWaitScope waits(SocketWaits{signals_.get(), -1});
    std::string why;
    try {
        // the devices rpc-server serves by default: the local GPUs, else the CPU
        std::vector<ggml_backend_dev_t> devices = local_gpu_devices();
        if (devices.empty()) {
            devices.push_back(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU));
        }
        std::string described;
        for (auto * dev : devices) {
            described += (described.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(dev)) + " (" +
                         ggml_backend_dev_description(dev) + ")";
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            devices_ = described;
        }
        const std::string ep = endpoint();
        const size_t threads = options_.threads > 0 ? options_.threads : default_threads();
        ggml_backend_rpc_start_server(ep.c_str(), options_.cache_dir.empty() ? nullptr : options_.cache_dir.c_str(),
                                      threads, devices.size(), devices.data());
        if (!signals_->stop.load()) {
            why = "ggml's RPC server returned (it could not listen, or accept failed)";
        }
    } catch (const NativeAbort & e) {
        why = std::string("llama.cpp hit a failed assertion in the RPC worker: ") + e.what();
    } catch (const std::exception & e) {
        why = e.what();
    }
    if (!why.empty()) {
        log_line(LogLevel::error, "RPC worker " + endpoint() + ": " + why);
        std::lock_guard<std::mutex> lock(mutex_);
        failure_ = why;
    }
#endif
    thread_done_ = true;
}

void RpcWorker::stop() {
    signals_->stop = true;
    if (thread_.joinable()) {
        thread_.join();
    }
}

bool RpcWorker::running() const { return !thread_done_.load() && !signals_->stop.load(); }

std::string RpcWorker::endpoint() const { return options_.host + ":" + std::to_string(options_.port); }

uint64_t RpcWorker::connections() const { return signals_->connections.load(); }

std::string RpcWorker::failure() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
}

std::string RpcWorker::device_description() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return devices_;
}

}  // namespace llamaproc

