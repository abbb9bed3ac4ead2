// EmbeddedServer: llama.cpp's HTTP server (server_context + server_http_context + server_routes)
// run on native threads inside the host process, with a lifecycle the host controls.
//
//   start()       parse flags, check the model file, bind the socket, start the HTTP threads,
//                 then load the model on the server thread (returns without waiting)
//   wait_ready()  block until the model is loaded and requests are served, or it failed
//   stop()        end in-flight requests, join every thread, free the model (idempotent)
//
// Nothing here installs signal handlers, calls exit(), or touches Python.
#pragma once

#include "errors.h"
#include "memory_estimate.h"
#include "native_log.h"
#include "process_state.h"

#include "common.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

struct server_context;
struct server_http_context;
struct server_routes;
class server_mcp;
struct server_tools;

namespace llamaproc {

enum class ServerState { created, starting, ready, stopping, stopped, failed };

// The inference loop's view of its slots, answered by the loop itself.
struct SlotLoad {
    int n_slots = 0;
    int n_processing = 0;  // slots busy with a request
    int n_deferred = 0;    // requests waiting for a free slot
};

// Cumulative counters since the server started (llama-server's /metrics, as numbers).
struct ServerMetrics {
    SlotLoad load;
    uint64_t prompt_tokens = 0;       // prompt tokens evaluated (cache hits excluded)
    double prompt_seconds = 0;        // time spent evaluating them
    uint64_t prompt_tokens_cached = 0;
    uint64_t generated_tokens = 0;
    double generation_seconds = 0;
    uint64_t decode_calls = 0;
    std::string prometheus;           // the same in Prometheus text format
};

struct ServerOptions {
    std::vector<std::string> args;   // llama-server flags, without a program name
    bool use_env = false;            // let LLAMA_ARG_* environment variables supply defaults
    uint64_t memory_limit = 0;       // bytes; 0 = no limit
};

class EmbeddedServer {
public:
    explicit EmbeddedServer(ServerOptions options);
    ~EmbeddedServer();
    EmbeddedServer(const EmbeddedServer &) = delete;
    EmbeddedServer & operator=(const EmbeddedServer &) = delete;

    // Throws Error: config (flags), model_load (file checks), startup (bind).
    void start();
    // True once ready; false if `timeout_s` passed first. Throws Error if startup failed.
    bool wait_ready(double timeout_s);
    // Ends in-flight requests (streams end cleanly), joins all threads, frees the model.
    void stop();

    ServerState state() const { return state_.load(); }
    int port() const { return port_.load(); }
    std::string host() const;
    float load_progress() const { return load_progress_.load(); }
    bool loop_running() const { return loop_running_.load(); }
    std::optional<MemoryEstimate> memory_estimate() const;
    std::vector<std::string> log_tail(std::size_t max_lines = 40) const;

    // Asks the inference loop; empty if it does not answer within `timeout_s` (it answers
    // between decode steps) or the server is not ready.
    std::optional<SlotLoad> query_load(double timeout_s);
    std::optional<ServerMetrics> query_metrics(double timeout_s);

private:
    void prepare_params();
    void register_routes();
    void run_server_thread();
    void fail(ErrorKind kind, const std::string & message);
    [[noreturn]] void throw_failure() const;
    static bool on_load_progress(float progress, void * self);

    ServerOptions options_;
    common_params params_;
    std::unique_ptr<ProcessRuntime> runtime_;
    std::shared_ptr<LogTail> tail_ = std::make_shared<LogTail>();

    // declaration order = reverse destruction order: HTTP first, then routes, then the model
    std::unique_ptr<server_context> ctx_server_;
    std::unique_ptr<server_mcp> mcp_;
    std::unique_ptr<server_routes> routes_;
    std::unique_ptr<server_tools> tools_;
    std::unique_ptr<server_http_context> ctx_http_;

    std::thread server_thread_;
    std::atomic<ServerState> state_{ServerState::created};
    std::atomic<int> port_{0};
    std::atomic<float> load_progress_{0.0f};
    std::atomic<bool> loop_running_{false};
    std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);
    std::atomic<bool> server_thread_done_{false};

    mutable std::mutex mutex_;  // guards failure_*, memory_estimate_; with cv_ for readiness
    std::condition_variable cv_;
    std::optional<MemoryEstimate> memory_estimate_;
    ErrorKind failure_kind_ = ErrorKind::internal;
    std::string failure_message_;

    std::shared_mutex lifecycle_mutex_;  // unique: start/stop; shared: queries of the running loop
};

}  // namespace llamaproc
