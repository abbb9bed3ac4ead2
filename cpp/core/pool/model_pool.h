// ModelPool: several models served in-process behind one HTTP front, as llama-server's router
// mode serves them with one child process per model. Here each loaded model is a
// ModelInstance (model_instance.h) in this process, and the front (http_front.h) picks one
// per request by the body's "model" (or ?model= on GET routes).
//
//   start()    bind the port, then load the models marked load_on_startup (without waiting)
//   load()     load a model, unloading idle ones (least recently used first) to make room
//   unload()   drain: requests in flight finish, new ones wait for the next load
//   swap()     new weights under the same name with no failed request: hot (load beside,
//              flip, drain the old) when both fit, cold (park, drain, free, load) when not,
//              rolling back to the old model if the new one fails to load
//   stop()     end every request (streams end cleanly), free every model, join every thread
//
// Room is counted twice: at most `max_loaded` instances, and at most `memory_budget` bytes
// reserved (each model's weights, KV cache, compute buffers and prompt cache, estimated before
// its load and corrected by what its last load measured). A model being drained or freed keeps
// its reservation until its memory is gone.
//
// Locking: one registry mutex (`mutex_`), never held while a model loads, decodes, drains or
// is freed, nor while a handler runs; instances are started and shut down outside it.
#pragma once

#include "direct/direct_call.h"
#include "errors.h"
#include "native_log.h"
#include "pool/pool_events.h"
#include "pool/pool_models.h"
#include "server/faults.h"
#include "server/http_front.h"
#include "server/model_instance.h"

#include "common.h"
#include "json.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace llamaproc {

struct PoolOptions {
    std::vector<std::string> router_args;  // llama-server flags without -m: host, port, api key, models-*, defaults
    bool use_env = false;                  // LLAMA_ARG_* environment variables supply defaults
    std::vector<PoolModelConfig> models;   // models given through the API (beside --models-dir/--models-preset)
    uint64_t memory_budget = 0;            // bytes; 0 = no byte budget
    double idle_unload_s = 0;              // unload a model idle this long; 0 = never
    std::string default_model;             // requests naming no model go here ("" = 400, as llama-server)
    bool decode_gate = true;               // models share the CPUs' threads when they decode at once
    bool read_cache = false;               // also serve llama.cpp's local model cache (llama-server does)
    bool allow_unauthenticated_remote = false;
    uint64_t max_request_bytes = 32ull << 20;
    int verbosity = -1;  // llama.cpp's -v / -lv number for every model (> 9: responses carry __verbose)
};

struct PoolModelInfo {
    std::string name;
    std::vector<std::string> aliases, tags;
    std::string source;
    std::string status;  // "unloaded", "loading", "loaded"
    bool failed = false;
    ErrorKind failure_kind = ErrorKind::internal;
    std::string failure;
    std::vector<std::string> args;
    std::string model_path;
    uint64_t memory_estimate = 0;  // bytes reserved when it loads (prompt cache included)
    bool memory_measured = false;  // memory_estimate comes from an earlier load's measurement
    std::optional<InstanceMemory> memory;  // measured, while loaded
    double last_used = 0;  // Unix time of the last request, 0 = never
    int active_requests = 0;
    bool pinned = false;
    float load_progress = 0;
    uint64_t loads = 0;
};

// The "model" string of a JSON request body: "" when it names none (or is not an object),
// nothing when the body is not JSON.
std::optional<std::string> model_in_body(const std::string & body);

struct ReloadReport {
    std::vector<std::string> added, removed, changed;
};

struct SwapReport {
    std::string mode;       // "hot" or "cold"
    double load_s = 0;      // loading the new model
    double drain_s = 0;     // requests on the old model finishing (and its memory freed)
    int finished_on_old = 0;  // requests in flight on the old model when the swap flipped
};

class ModelPool {
public:
    explicit ModelPool(PoolOptions options);
    ~ModelPool();
    ModelPool(const ModelPool &) = delete;
    ModelPool & operator=(const ModelPool &) = delete;

    // Throws Error: config (flags, sources, names), startup (bind).
    void start();
    void stop();
    bool running() const;

    int port() const;
    std::string host() const;
    int max_loaded() const;
    uint64_t memory_budget() const { return options_.memory_budget; }
    bool autoload() const;

    std::vector<PoolModelInfo> models() const;
    // Loads `name` (or an alias) and waits until it serves, up to `timeout_s`. Throws Error:
    // not_found, resource (can never fit), model_load / internal (the load failed), timeout.
    void load(const std::string & name, double timeout_s);
    // Drains and frees `name`. Requests in flight get up to `drain_timeout_s` (< 0: the model's
    // stop-timeout) to finish, then are ended. With `wait`, returns once the memory is freed.
    // False if it was not loaded.
    bool unload(const std::string & name, double drain_timeout_s, bool wait);
    void add(PoolModelConfig model);
    void remove(const std::string & name, double drain_timeout_s);
    // Serves `name` from a model loaded with `args` from now on. mode "auto", "hot" or "cold".
    // Throws Error(config, resource, model_load, timeout); the old model serves on after a
    // failure (a cold swap reloads it).
    SwapReport swap(const std::string & name, std::vector<std::string> args, const std::string & mode, double timeout_s);

    // Reads --models-dir and --models-preset again, as GET /models?reload=1 does: new models are
    // added, vanished ones removed (drained), changed ones swapped (loaded) or updated.
    ReloadReport reload_sources();

    std::shared_ptr<EventQueue> subscribe() { return events_.subscribe(); }
    // GET /llamaproc/status's document (server/web_ui.h); asks each loaded model's loop.
    common_json status();
    std::optional<LoopMetrics> query_metrics(const std::string & name, double timeout_s);
    RequestCounts request_counts() const;
    std::vector<std::string> log_tail(std::size_t max_lines = 40) const { return tail_->lines(max_lines); }
    uint64_t reserved_bytes() const;
    int instances_alive() const;  // loading, serving or being drained/freed

    // POST (or GET) `path` in-process, routed like an HTTP request (by the body's "model").
    std::shared_ptr<DirectCall> call(const std::string & path, std::string body, bool post = true);

    // Tests only: the faults of the HTTP front (slow stream chunks, cut streams) for every model.
    FaultPlan & front_faults() { return *front_faults_; }
    // Tests only: arm a fault for model `name` (faults.h): model faults on its instance
    // (loop_dies acts at once), request faults at the HTTP front and on its direct calls.
    void inject_fault(const std::string & name, const FaultSpec & spec);
    // Tests only: disarm every fault of the front and of every model.
    void clear_faults();

private:
    using clock = std::chrono::steady_clock;
    // One model of the pool: its configuration and the instance serving it (if any).
    struct Entry {
        PoolModelConfig config;
        common_params params;
        std::optional<Failure> config_error;  // the flags are invalid or the file cannot be read
        uint64_t need = 0;                    // bytes reserved for one load (prompt cache included)
        std::shared_ptr<ModelInstance> current;  // loading, serving, or failed (until retired)
        uint64_t current_bytes = 0;
        bool parked = false;                  // a cold swap: requests wait for the new model
        std::optional<Failure> failure;       // why the last load or instance failed
        uint64_t failures = 0;                // counts failures, so waiters see a new one
        clock::time_point last_used = clock::now();
        double last_used_unix = 0;
        uint64_t loads = 0;
        double idle_unload_s = 0;             // unload after this long unused (0: never)
        bool removed = false;
        ExpectedMemory expected;              // what `need` was judged by (without the prompt cache)
        uint64_t cache_bytes = 0;             // its prompt cache's cap, part of `need`
        std::shared_ptr<FaultPlan> faults = std::make_shared<FaultPlan>();

        bool ready() const { return current && current->state() == InstanceState::ready; }
        const char * status() const {
            if (!current) {
                return "unloaded";
            }
            return current->state() == InstanceState::ready ? "loaded" : current->state() == InstanceState::loading ? "loading" : "unloaded";
        }
    };
    struct Retiring {
        std::shared_ptr<ModelInstance> inst;
        std::string name;
        uint64_t bytes = 0;
        clock::time_point drain_deadline;
        std::shared_ptr<bool> freed;  // set (under mutex_) once its memory is gone
        bool taken = false;           // being shut down by the maintenance thread
    };

    struct Waited {
        enum Outcome { serving, stopping, removed, not_loaded, failed, gave_up, timed_out } outcome;
        std::shared_ptr<ModelInstance> inst;
        std::optional<Failure> failure;
    };
    Waited wait_serving_locked(std::unique_lock<std::mutex> & lock, const std::shared_ptr<Entry> & e, bool autoload,
                               bool lease, clock::time_point deadline, const std::function<bool()> & should_stop);
    Routed route(const server_http_req & req, const std::function<bool()> & should_stop);
    Routed route_to(const std::string & requested, bool autoload, bool touch, const std::function<bool()> & should_stop);
    void register_routes();
    void insert(PoolModelConfig config, bool strict);

    Entry & find_locked(const std::string & name_or_alias);  // throws Error(not_found)
    Entry * lookup_locked(const std::string & name_or_alias);
    void prepare_entry(Entry & e);
    // room (pool_room.cpp)
    struct Room {
        uint64_t bytes = 0;  // reserved by live instances
        int instances = 0;   // live instances
    };
    bool fits_locked(uint64_t need, int extra_instances) const;
    bool make_room_locked(uint64_t need, const Entry * keep);
    bool wait_for_room_locked(std::unique_lock<std::mutex> & lock, uint64_t need, const Entry * keep,
                              clock::time_point deadline);
    bool could_fit_locked(uint64_t need, const Entry * keep) const;
    bool fits_once_freed_locked(uint64_t need, int extra_instances) const;
    Room room_once_freed_locked() const;
    bool fits_in_locked(const Room & taken, uint64_t need, int extra_instances) const;
    bool evictable_locked(const std::string & name, const Entry & e) const;
    bool evict_one_locked(const Entry * keep);
    // swaps (pool_swap.cpp)
    struct SwapPlan {
        std::shared_ptr<Entry> entry;  // the model swapped
        Entry fresh;                   // its new configuration, prepared
    };
    SwapPlan plan_swap(const std::string & requested, std::vector<std::string> args);
    SwapReport swap_hot_locked(std::unique_lock<std::mutex> & lock, SwapPlan & plan, clock::time_point deadline,
                               double drain_timeout_s);
    SwapReport swap_cold_locked(std::unique_lock<std::mutex> & lock, SwapPlan & plan, clock::time_point deadline,
                                double drain_timeout_s);
    static void adopt_locked(Entry & e, const Entry & fresh);
    std::shared_ptr<ModelInstance> load_now_locked(std::unique_lock<std::mutex> & lock, Entry & e,
                                                   const common_params & params, uint64_t need);
    std::shared_ptr<ModelInstance> start_load_locked(Entry & e, const common_params & params, uint64_t need,
                                                     std::vector<std::shared_ptr<ModelInstance>> & to_start);
    void note_measured_locked(Entry & e);
    void use_measurement_locked(Entry & e, uint64_t held);
    std::shared_ptr<bool> retire_locked(Entry & e, double drain_s);
    std::shared_ptr<bool> retire_instance_locked(std::shared_ptr<ModelInstance> inst, const std::string & name,
                                                 uint64_t bytes, double drain_s);
    void pump_locked(std::vector<std::shared_ptr<ModelInstance>> & to_start);
    void pump();
    void start_all(std::vector<std::shared_ptr<ModelInstance>> & to_start);
    void on_instance_change(const std::string & name, const std::weak_ptr<ModelInstance> & inst);
    void maintain();
    void forget_freed_locked(const std::shared_ptr<ModelInstance> & inst);
    void publish_status_locked(const Entry & e);
    PoolModelInfo info_locked(const Entry & e) const;
    bool wait_ready(std::unique_lock<std::mutex> & lock, const std::shared_ptr<ModelInstance> & inst,
                    clock::time_point deadline);
    bool wait_freed(std::unique_lock<std::mutex> & lock, const std::shared_ptr<bool> & freed,
                    clock::time_point deadline);

    // HTTP answers of the router (pool_routes.cpp)
    server_http_res_ptr models_response(bool reload);
    server_http_res_ptr router_props_response() const;
    server_http_res_ptr handle_load(const server_http_req & req);
    server_http_res_ptr handle_unload(const server_http_req & req);
    server_http_res_ptr handle_events(const server_http_req & req);

    PoolOptions options_;
    common_params router_params_;  // the router's own flags (host, port, api key, CORS, models-*)
    std::shared_ptr<LogTail> tail_ = std::make_shared<LogTail>();
    std::shared_ptr<FaultPlan> front_faults_ = std::make_shared<FaultPlan>();
    std::unique_ptr<ProcessRuntime> runtime_;
    std::unique_ptr<HttpFront> front_;
    EventHub events_;

    mutable std::mutex mutex_;  // the registry: entries_, queue_, waiters_, retiring_, reservations
    std::condition_variable cv_;
    std::map<std::string, std::shared_ptr<Entry>> entries_;
    std::deque<std::string> queue_;            // models waited for, FIFO, one entry per model
    std::map<std::string, int> waiters_;       // requests waiting per queued model
    std::vector<Retiring> retiring_;
    uint64_t reserved_ = 0;                    // bytes of every live instance (loading, serving, retiring)
    int alive_ = 0;                            // live instances
    bool running_ = false;
    bool stopping_ = false;
    bool fake_timing_ = false;  // LLAMA_SERVER_DEBUG_FAKE_TIMING
    std::thread maintenance_;

    std::mutex swap_mutex_;  // one swap at a time
    std::mutex reload_mutex_;  // one reload at a time
    std::mutex lifecycle_mutex_;
};

}  // namespace llamaproc
