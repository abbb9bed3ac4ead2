#include "rpc/rpc_devices.h"

#include "errors.h"
#include "native_log.h"
#include "rpc/socket_waits.h"

#include "llama.h"
#ifdef GGML_USE_RPC
#include "ggml-rpc.h"
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>

#if defined(_WIN32)
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>
#endif

namespace llamaproc {

namespace {

std::atomic<bool> g_rpc_attached{false};

constexpr int HANDSHAKE_TIMEOUT_MS = 10000;

thread_local bool t_check_decodes = false;

bool is_rpc_device(ggml_backend_dev_t dev) {
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    return reg != nullptr && std::strcmp(ggml_backend_reg_name(reg), "RPC") == 0;
}

#if !defined(_WIN32)
// A TCP connect with a deadline: ggml's RPC client aborts on a refused connection, so an
// unreachable worker must be found before ggml tries.
std::string unreachable_reason(const std::string & host, const std::string & port) {
    addrinfo hints{};
    hints.ai_family = AF_INET;  // ggml's RPC transport speaks IPv4
    hints.ai_socktype = SOCK_STREAM;
    addrinfo * found = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
        return std::string("cannot resolve the host: ") + gai_strerror(rc);
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
    int fd = socket(found->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        return std::strerror(errno);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    std::string reason;
    if (connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            reason = std::strerror(errno);
        } else {
            pollfd p{fd, POLLOUT, 0};
            if (poll(&p, 1, 3000) != 1) {
                reason = "no answer within 3 s";
            } else {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                    reason = std::strerror(err);
                }
            }
        }
    }
    close(fd);
    return reason;
}
#endif

#ifdef GGML_USE_RPC
ggml_backend_reg_t attach_one(const std::string & endpoint) {
    const auto colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
        throw Error(ErrorKind::config, "--rpc: '" + endpoint + "' is not host:port");
    }
    const std::string host = endpoint.substr(0, colon);
    const std::string port = endpoint.substr(colon + 1);
    if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535) {
        throw Error(ErrorKind::config, "--rpc: '" + endpoint + "' has no valid port");
    }
#if !defined(_WIN32)
    if (const std::string reason = unreachable_reason(host, port); !reason.empty()) {
        throw Error(ErrorKind::config, "--rpc: the RPC worker at " + endpoint + " is unreachable (" + reason +
                                           "); start one with `python -m llamaproc rpc-worker --port " + port + "`");
    }
#endif
    // a peer that is not a worker of this protocol version fails the handshake (patches/0005:
    // marked failed, not aborted); one that never answers times out
    auto tail = std::make_shared<LogTail>();
    ggml_backend_reg_t reg = nullptr;
    {
        ThreadLogScope scope(tail);
        SocketWaitScope waits(SocketWaits{nullptr, HANDSHAKE_TIMEOUT_MS});
        reg = ggml_backend_rpc_add_server(endpoint.c_str());
    }
    if (take_rpc_failure()) {
        std::string detail = "no answer to the handshake";
        for (const auto & line : tail->lines(5)) {
            if (line.find("version mismatch") != std::string::npos) {
                detail = line;
            }
        }
        throw Error(ErrorKind::config, "--rpc: " + endpoint + " did not answer as a ggml RPC worker of protocol " +
                                           std::to_string(RPC_PROTO_MAJOR_VERSION) + "." +
                                           std::to_string(RPC_PROTO_MINOR_VERSION) + " (" + detail + ")");
    }
    if (reg == nullptr) {
        throw Error(ErrorKind::config, "--rpc: the RPC worker at " + endpoint + " offers no device");
    }
    static std::mutex registry_mutex;  // two servers attaching the same worker at once
    std::lock_guard<std::mutex> lock(registry_mutex);
    bool registered = false;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        registered = registered || ggml_backend_reg_get(i) == reg;
    }
    if (!registered) {
        ggml_backend_register(reg);  // once per process: ggml_backend_rpc_add_server() reuses its reg
    }
    return reg;
}
#endif

}  // namespace

bool rpc_supported() {
#ifdef GGML_USE_RPC
    return true;
#else
    return false;
#endif
}

std::vector<ggml_backend_dev_t> attach_rpc_servers(const std::string & servers) {
#ifdef GGML_USE_RPC
    std::vector<ggml_backend_dev_t> devices;
    size_t start = 0;
    while (start <= servers.size()) {
        const size_t comma = servers.find(',', start);
        const std::string endpoint = servers.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!endpoint.empty()) {
            ggml_backend_reg_t reg = attach_one(endpoint);
            for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); ++i) {
                devices.push_back(ggml_backend_reg_dev_get(reg, i));
            }
        }
        if (comma == std::string::npos) {
            break;
        }
        start = comma + 1;
    }
    if (devices.empty()) {
        throw Error(ErrorKind::config, "--rpc: no RPC worker given (expected host:port[,host:port...])");
    }
    g_rpc_attached = true;
    return devices;
#else
    (void) servers;
    throw Error(ErrorKind::config, "--rpc: this build has no RPC backend (rebuild with -Ccmake.define.GGML_RPC=ON)");
#endif
}

void choose_instance_devices(std::vector<ggml_backend_dev_t> & devices,
                             const std::vector<ggml_backend_dev_t> & rpc_devices) {
    if (!devices.empty() || !g_rpc_attached.load()) {
        return;  // --device named them, or no RPC device exists to keep out
    }
    devices = rpc_devices;
    for (ggml_backend_dev_t dev : local_gpu_devices()) {
        devices.push_back(dev);
    }
    devices.push_back(nullptr);  // an empty list ({nullptr}) means the CPU only
}

std::vector<ggml_backend_dev_t> local_gpu_devices() {
    std::vector<ggml_backend_dev_t> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        const auto type = ggml_backend_dev_type(dev);
        if ((type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) && !is_rpc_device(dev)) {
            out.push_back(dev);
        }
    }
    return out;
}

bool query_device_memory(ggml_backend_dev_t dev, size_t & free_bytes, size_t & total_bytes) {
    free_bytes = total_bytes = 0;
    try {
        ThreadLogScope scope(std::make_shared<LogTail>(8));
        ggml_backend_dev_memory(dev, &free_bytes, &total_bytes);
        return true;
    } catch (const NativeAbort &) {
        free_bytes = total_bytes = 0;
        return false;
    }
}

bool take_rpc_failure() {
#if defined(GGML_USE_RPC) && defined(LLAMAPROC_RPC_FAILURE_PATCH)
    return ggml_backend_rpc_thread_saw_failure();
#else
    return false;
#endif
}

bool uses_rpc_devices(const std::vector<ggml_backend_dev_t> & devices) {
    return std::any_of(devices.begin(), devices.end(), [](ggml_backend_dev_t d) { return d && is_rpc_device(d); });
}

RpcDecodeCheckScope::RpcDecodeCheckScope(bool enabled) : previous_(t_check_decodes) { t_check_decodes = enabled; }

RpcDecodeCheckScope::~RpcDecodeCheckScope() { t_check_decodes = previous_; }

void check_rpc_connection(llama_context * ctx) {
    if (!t_check_decodes) {
        return;
    }
    llama_synchronize(ctx);  // the decode's results arrive (or their connection breaks) here
    if (take_rpc_failure()) {
        throw NativeAbort("the connection to an RPC worker broke (the worker stopped, crashed or became unreachable)");
    }
}

}  // namespace llamaproc
