#include "server/instance_params.h"

#include "server/cpu_governor.h"
#include "server/draft_policy.h"

#include "errors.h"
#include "native_log.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cstdlib>

namespace llamaproc {

namespace {

bool has_gpu_device() {
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        const auto type = ggml_backend_dev_type(ggml_backend_dev_get(i));
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) {
            return true;
        }
    }
    return false;
}

constexpr int DEFAULT_CLIENT_TIMEOUT_S = 10;

// The GPU backends this build has (CUDA, Vulkan, ...), comma-separated; "" for a CPU-only build.
std::string gpu_backends() {
    std::string out;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        const std::string name = ggml_backend_reg_name(ggml_backend_reg_get(i));
        if (name != "CPU" && name != "BLAS" && name != "RPC") {
            out += (out.empty() ? "" : ", ") + name;
        }
    }
    return out;
}

}  // namespace

bool flag_given(const std::vector<std::string> & args, std::initializer_list<const char *> names) {
    for (const auto & arg : args) {
        const std::string flag = arg.substr(0, arg.find('='));
        for (const char * name : names) {
            if (flag == name) {
                return true;
            }
        }
    }
    return false;
}

bool threads_governed(const std::vector<std::string> & args, bool use_env) {
    return !flag_given(args, {"-t", "--threads", "-tb", "--threads-batch"}) &&
           !(use_env && (std::getenv("LLAMA_ARG_THREADS") || std::getenv("LLAMA_ARG_THREADS_BATCH")));
}

int default_threads() {
    // One core is left to the host: the Python program around the server has at most one
    // thread running Python at a time (the GIL), and with every core in ggml's thread pool a
    // busy host thread deschedules a pool thread that the others then wait for at each
    // barrier (docs/benchmarks.md, bench_host.py).
    return std::max(1, common_cpu_get_num_math() - 1);
}

bool is_loopback(const std::string & host) {
    if (host.empty()) {
        return false;  // "" binds every interface
    }
    if (host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0) {
        return true;
    }
    return host.size() > 5 && host.compare(host.size() - 5, 5, ".sock") == 0;  // a unix socket
}

void check_front_params(const common_params & params, bool allow_unauthenticated_remote) {
    for (const auto & host : params.hostnames) {
        if (!is_loopback(host) && params.api_keys.empty() && !allow_unauthenticated_remote) {
            throw Error(ErrorKind::config,
                        "refusing to listen on " + host + " without an API key: anyone who can reach this machine "
                        "could use the server. Set an API key (api_key=, --api-key), listen on 127.0.0.1, or opt in "
                        "with allow_unauthenticated_remote=True (CLI: --allow-unauthenticated-remote)");
        }
    }
}

void prepare_instance_params(common_params & params, const std::vector<std::string> & args, bool use_env) {
    if (params.embedding && params.n_batch > params.n_ubatch) {
        params.n_batch = params.n_ubatch;  // embeddings need the whole input in one ubatch
    }
    if (params.n_parallel < 0) {
        params.n_parallel = 4;
        params.kv_unified = true;
    }
    const bool pool_auto_sized = params.kv_unified_per_slot > 0 && params.n_ctx == 0 &&
                                 (uint32_t) params.fit_params_min_ctx != UINT32_MAX;
    if (pool_auto_sized) {
        params.n_ctx = params.n_parallel * params.kv_unified_per_slot;
    }
    // llama-server waits up to an hour for a client to send its request or read its answer, and
    // stop() waits for those threads: an embedded server gives a silent client 10 s
    if (!flag_given(args, {"-to", "--timeout"}) && !(use_env && std::getenv("LLAMA_ARG_TIMEOUT"))) {
        params.timeout_read = params.timeout_write = DEFAULT_CLIENT_TIMEOUT_S;
    }
    if (threads_governed(args, use_env)) {
        // the most the governor may give; each decode step runs with a pool of what it gives
        // then (ThreadPools), polling between steps as llama-server's does
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = CpuGovernor::process().max_threads();
    } else if (!flag_given(args, {"-tb", "--threads-batch"}) && !(use_env && std::getenv("LLAMA_ARG_THREADS_BATCH"))) {
        params.cpuparams_batch.n_threads = params.cpuparams.n_threads;
    }
    default_speculation(params, args, use_env);
    const std::string name = params.model.get_name();
    if (params.model_alias.empty() && !name.empty()) {
        params.model_alias.insert(name);
    }
    // fit_params adapts *unset* values (auto context size, GPU layers) to device memory. With an
    // explicit context and no GPU there is nothing it can change, and its dry-run load of the
    // model costs about a third of the start time: skip it then.
    if (params.fit_params && params.n_ctx > 0 && !has_gpu_device()) {
        params.fit_params = false;
    }
    if (params.n_gpu_layers != 0 && !has_gpu_device()) {
        if (const std::string gpu = gpu_backends(); !gpu.empty()) {
            log_line(LogLevel::warning, "this build has the " + gpu + " backend but no GPU device is usable here "
                                        "(no driver, or none visible): the model runs on the CPU");
        }
    }
}

}  // namespace llamaproc
