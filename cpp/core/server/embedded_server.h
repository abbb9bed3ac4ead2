// EmbeddedServer: llama.cpp's HTTP server run on native threads inside the host process, with
// a lifecycle the host controls. It is an HTTP front (http_front.h) with one model instance
// (model_instance.h); a failed instance is replaced in place, on the same bound port.
//
//   start()             parse flags, check the model file, bind, then load the model on the
//                       instance thread (returns without waiting)
//   wait_ready()        block until the model serves requests, or it failed
//   restart_instance()  replace the model instance (after a failure), keeping the port
//   stop()              end in-flight requests, join every thread, free the model (idempotent)
//
// Nothing here installs signal handlers, calls exit(), or touches Python.
#pragma once

#include "direct/direct_call.h"
#include "errors.h"
#include "native_log.h"
#include "server/faults.h"
#include "server/http_front.h"
#include "server/instance_params.h"
#include "server/model_instance.h"

#include "common.h"
#include "json.h"

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace llamaproc {

enum class ServerState { created, starting, ready, stopping, stopped, failed };

struct ServerOptions {
    std::vector<std::string> args;   // llama-server flags, without a program name
    bool use_env = false;            // let LLAMA_ARG_* environment variables supply defaults
    uint64_t memory_limit = 0;       // bytes (weights + KV + compute + prompt cache); 0 = none
    bool allow_unauthenticated_remote = false;  // listen beyond loopback without an API key
    uint64_t max_request_bytes = 32ull << 20;   // larger request bodies get HTTP 413
    int verbosity = -1;  // llama.cpp's -v / -lv number for this server (> 9: responses carry __verbose); -1: none
};

class EmbeddedServer {
public:
    explicit EmbeddedServer(ServerOptions options);
    ~EmbeddedServer();
    EmbeddedServer(const EmbeddedServer &) = delete;
    EmbeddedServer & operator=(const EmbeddedServer &) = delete;

    // Throws Error: config (flags), model_load (file checks), startup (bind).
    void start();
    // True once ready; false if `timeout_s` passed first. Throws Error if the instance failed
    // or the server was stopped.
    bool wait_ready(double timeout_s);
    // Replaces the model instance with a fresh one loading the same model; returns at once.
    // No-op unless the server is running.
    void restart_instance();
    // Ends in-flight requests (streams end cleanly), joins all threads, frees the model.
    void stop();

    ServerState state() const;
    // Blocks until the state changed since `seen` (a counter this returns) or the timeout.
    uint64_t wait_change(uint64_t seen, double timeout_s);
    std::optional<Failure> failure() const;
    int port() const;
    std::string host() const;
    float load_progress() const;
    std::optional<InstanceMemory> memory() const;
    RequestCounts request_counts() const;
    std::vector<std::string> log_tail(std::size_t max_lines = 40) const;
    // Model instances that had to be abandoned unfreed (see ModelInstance::shutdown()).
    int abandoned_instances() const;

    // GET /llamaproc/status's document (server/web_ui.h); asks the loop for its slots.
    common_json status();

    // Asks the inference loop; empty if it does not answer within `timeout_s` (it answers
    // between decode steps) or the server is not ready.
    std::optional<SlotLoad> query_load(double timeout_s);
    std::optional<LoopMetrics> query_metrics(double timeout_s);

    // POST (or GET) `path` (any route llama-server serves) with a JSON `body`, in-process, on a
    // worker thread; never throws. A server that is not ready answers 503, an unknown route 404.
    std::shared_ptr<DirectCall> call(const std::string & path, std::string body, bool post = true);

    // Tests only: make the server misbehave through the paths real failures take.
    void inject_fault(const FaultSpec & spec);
    // Tests only: the request faults (injected errors, slow chunks, cut streams).
    FaultPlan & faults() { return *faults_; }

private:
    enum class Phase { created, running, stopping, stopped, start_failed };

    void prepare_params();
    std::shared_ptr<ModelInstance> make_instance();
    std::shared_ptr<ModelInstance> current() const;
    void changed();

    ServerOptions options_;
    common_params params_;  // final after start(); read-only afterwards
    std::shared_ptr<LogTail> tail_ = std::make_shared<LogTail>();
    std::shared_ptr<FaultPlan> faults_ = std::make_shared<FaultPlan>();
    std::unique_ptr<ProcessRuntime> runtime_;
    std::unique_ptr<HttpFront> front_;

    mutable std::mutex mutex_;  // guards phase_, instance_, change_seq_, abandoned_; with cv_
    std::condition_variable cv_;
    Phase phase_ = Phase::created;
    std::shared_ptr<ModelInstance> instance_;
    uint64_t change_seq_ = 0;
    int abandoned_ = 0;
    uint64_t loads_ = 0;  // instances started (a restart starts one more)

    std::mutex lifecycle_mutex_;  // serializes start / restart_instance / stop
};

}  // namespace llamaproc
