// llama-server's --rpc for servers that share one process.
//
// ggml keeps RPC devices in its process-wide backend registry, and llama.cpp spreads a model
// over every registered GPU-type device unless told otherwise: a worker attached for one server
// would silently take layers of every later server in the process. So each server's device
// list is made explicit: the RPC workers it named (first, as llama.cpp orders them) and the
// local GPUs; a server that named none gets the local GPUs only.
#pragma once

#include "ggml-backend.h"
#include "llama.h"

#include <string>
#include <vector>

namespace llamaproc {

// True if this build has ggml's RPC backend (GGML_RPC=ON, the default).
bool rpc_supported();

// Connects to the workers in `servers` ("host:port,host:port"), registers their devices once
// per process, and returns them in the order given. Throws Error(config) naming the worker
// that is unreachable, is not an RPC worker, or speaks another protocol version, and for a
// build without RPC. Never aborts the process.
std::vector<ggml_backend_dev_t> attach_rpc_servers(const std::string & servers);

// The explicit device list (nullptr-terminated, as common_params.devices wants it) for a
// server that attached `rpc_devices` (possibly none); `explicit_devices` (from --device) win.
// Leaves `devices` empty (llama.cpp's default: every device) when no RPC device is registered.
void choose_instance_devices(std::vector<ggml_backend_dev_t> & devices,
                             const std::vector<ggml_backend_dev_t> & rpc_devices);

// This machine's GPUs (GPU and integrated-GPU devices that are not RPC workers), in registry order.
std::vector<ggml_backend_dev_t> local_gpu_devices();

// ggml_backend_dev_memory() that a dead RPC worker cannot turn into an abort of the calling
// thread (ggml's client aborts when a query gets no reply): false, and zeros, if it failed.
bool query_device_memory(ggml_backend_dev_t dev, size_t & free_bytes, size_t & total_bytes);

// True (once) if a connection to an RPC worker broke while this thread waited on it
// (patches/0005: the replies it got read as zeros).
bool take_rpc_failure();

// True if `devices` (a server's list, from choose_instance_devices()) holds an RPC worker's.
bool uses_rpc_devices(const std::vector<ggml_backend_dev_t> & devices);

// While alive, decodes on this thread (a server's loop thread) are checked by
// check_rpc_connection(), when `enabled` (the server uses RPC workers).
class RpcDecodeCheckScope {
public:
    explicit RpcDecodeCheckScope(bool enabled);
    ~RpcDecodeCheckScope();
    RpcDecodeCheckScope(const RpcDecodeCheckScope &) = delete;
    RpcDecodeCheckScope & operator=(const RpcDecodeCheckScope &) = delete;

private:
    bool previous_;
};

// After a decode on this thread, inside an enabled RpcDecodeCheckScope: synchronises `ctx` and
// throws NativeAbort if a connection to an RPC worker broke under it, so that the server fails
// before it uses results that never arrived.
void check_rpc_connection(llama_context * ctx);

}  // namespace llamaproc
