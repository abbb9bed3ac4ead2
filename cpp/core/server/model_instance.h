// ModelInstance: one loaded model and its inference loop (llama.cpp's server_context and
// server_routes) on a native thread. An HTTP front (http_front.h) sends requests to it; the
// single-model server is a front with one instance, replaced in place on restart.
//
//   start()      load on the instance thread (returns at once), then run the loop
//   lease()      keep the instance alive and unfreed while a handler or response uses it
//   shutdown()   stop the loop, let waiting handlers go, wait for leases, free the model
//
// A failure (the load fails, the loop dies, a native assert) makes the instance FAILED: its
// handlers let go at once and new requests are refused by the front. It never recovers by
// itself; the owner replaces it.
#pragma once

#include "errors.h"
#include "server/decode_gate.h"
#include "faults.h"
#include "memory_estimate.h"
#include "native_log.h"
#include "process_state.h"

#include "common.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

struct server_context;

namespace llamaproc {
class ThreadPools;
}
struct server_routes;

namespace llamaproc {

enum class InstanceState { loading, ready, failed, stopped };

struct Failure {
    ErrorKind kind = ErrorKind::internal;
    std::string message;
};

// The inference loop's view of its slots, answered by the loop itself.
struct SlotLoad {
    int n_slots = 0;
    int n_processing = 0;  // slots busy with a request
    int n_deferred = 0;    // requests waiting for a free slot
};

// Cumulative counters since the instance started (llama-server's /metrics, as numbers).
struct LoopMetrics {
    SlotLoad load;
    uint64_t prompt_tokens = 0;       // prompt tokens evaluated (cache hits excluded)
    double prompt_seconds = 0;        // time spent evaluating them
    uint64_t prompt_tokens_cached = 0;
    uint64_t generated_tokens = 0;
    double generation_seconds = 0;
    uint64_t decode_calls = 0;
    uint64_t draft_tokens = 0;        // tokens drafted by speculative decoding and verified
    uint64_t draft_accepted = 0;      // of those, the ones verification kept
    std::string prometheus;           // the same in Prometheus text format
    int decode_threads = 0;           // threads of the last decode step
    DecodeReason decode_reason = DecodeReason::none;  // and why
};

// What the instance holds on one accelerator (GPU, integrated GPU, other accelerator).
struct DeviceMemory {
    std::string name;         // ggml's device name, e.g. "CUDA0"
    std::string description;  // e.g. the GPU's model
    std::string pci_bus_id;   // "domain:bus:device.function", "" if unknown
    uint64_t bytes = 0;       // weights + KV cache + compute buffers of this instance on it
};

// What the loaded instance holds, measured by llama.cpp after the load.
struct InstanceMemory {
    uint64_t model_bytes = 0;    // weights (every device, host copies included)
    uint64_t context_bytes = 0;  // KV cache and other per-context state
    uint64_t compute_bytes = 0;  // compute buffers
    uint64_t prompt_cache_limit_bytes = 0;  // upper bound of the RAM prompt cache (--cache-ram)
    std::vector<DeviceMemory> devices;      // accelerators only; empty on a CPU-only build or load
    // what the load was judged by beforehand (weights + context + compute), when it was judged
    // (a memory limit): an earlier load's measurement, or else llama.cpp's dry-run estimate
    std::optional<uint64_t> expected_bytes;
    bool expected_measured = false;
    uint64_t held() const { return model_bytes + context_bytes + compute_bytes; }
};

// An accelerator's memory now, as its backend reports it.
struct DeviceStatus {
    uint64_t free_bytes = 0;
    uint64_t total_bytes = 0;
};
std::optional<DeviceStatus> device_status(const std::string & name);

// How much memory an instance may take.
struct MemoryPolicy {
    uint64_t limit = 0;               // bytes for weights + KV + compute + prompt cache; 0 = none
    bool cache_ram_explicit = false;  // --cache-ram was given: use it as is (checked against limit)
};

class ModelInstance {
public:
    using ChangeCallback = std::function<void()>;

    // `params` are final (parsed and prepared); `on_change` is called (without locks held)
    // after every state change.
    ModelInstance(common_params params, MemoryPolicy memory, std::shared_ptr<LogTail> tail,
                  std::shared_ptr<FaultPlan> faults, ChangeCallback on_change);
    ~ModelInstance();
    ModelInstance(const ModelInstance &) = delete;
    ModelInstance & operator=(const ModelInstance &) = delete;

    void start();

    InstanceState state() const;
    std::optional<Failure> failure() const;
    float load_progress() const { return load_progress_.load(); }
    std::optional<InstanceMemory> memory() const;
    const common_params & params() const { return params_; }

    // Requests. A lease is refused (false) unless the instance is READY.
    bool acquire();
    void release();
    // Leases held now (requests in flight on this instance).
    int leases() const;
    // Called (without locks held) each time the last lease is released. Set before start().
    void on_idle(std::function<void()> fn) { on_idle_ = std::move(fn); }
    // Wait `ms` before the load begins (stop() cuts it short): LLAMA_SERVER_DEBUG_FAKE_TIMING's
    // delay, which makes a router's queueing observable. Set before start().
    void delay_load(int ms) { load_delay_ms_ = ms; }
    // Decode through the process-wide thread budget (decode_gate.h). Set before start().
    void gate_decodes(bool on) { gate_decodes_ = on; }
    // Decode with the threads the CPU governor gives (cpu_governor.h). Set before start().
    void govern_threads(bool on) { govern_threads_ = on; }
    // True once the instance failed or is shutting down: waiting handlers must let go.
    const std::shared_ptr<std::atomic<bool>> & down_flag() const { return down_; }
    server_routes & routes() { return *routes_; }
    // A failed native assertion hit a request handler: the instance is no longer trusted.
    void fail_from_request(const std::string & what);
    // Kills the inference loop as a real loop failure would (fault injection).
    void kill_loop();

    std::optional<LoopMetrics> query_metrics(double timeout_s);

    // Stops the loop, waits for every lease and frees the model. Idempotent. Returns false if
    // the native teardown did not finish in time and was abandoned (only possible after a
    // native assertion left llama.cpp's worker threads blocked): its memory is then leaked.
    bool shutdown();

private:
    void run();
    // (Re)creates the server context with llamaproc's draft policy, and its routes.
    void make_server();
    void fail(ErrorKind kind, const std::string & message, bool poisoned = false);
    void set_state(InstanceState s);
    void prepare_prompt_cache(uint64_t need);
    ExpectedMemory expected_need();
    InstanceMemory measure() const;
    void on_loop_line(const std::string & line);
    static bool on_load_progress(float progress, void * self);

    common_params params_;
    const uint64_t memory_limit_;
    const bool cache_ram_explicit_;
    std::shared_ptr<LogTail> tail_;
    std::shared_ptr<FaultPlan> faults_;
    ChangeCallback on_change_;
    std::function<void()> on_idle_;
    bool gate_decodes_ = false;
    bool govern_threads_ = false;
    DecodeReport decode_report_;
    std::unique_ptr<ThreadPools> pools_;  // a governed instance's thread pools; freed after ctx_server_
    std::shared_ptr<ProcessRuntime> runtime_;

    std::unique_ptr<server_context> ctx_server_;
    std::unique_ptr<server_routes> routes_;
    std::thread thread_;

    mutable std::mutex mutex_;  // guards state_, failure_, memory_, leases_
    std::condition_variable cv_;
    InstanceState state_ = InstanceState::loading;
    std::optional<Failure> failure_;
    std::optional<InstanceMemory> memory_;
    int leases_ = 0;

    std::atomic<float> load_progress_{0.0f};
    int slow_load_ms_ = 0;  // the slow_load fault, taken for this instance's load
    int load_delay_ms_ = 0;  // delay_load()
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> thread_done_{false};
    std::atomic<bool> poisoned_{false};  // a native assert unwound through llama.cpp
    std::shared_ptr<std::atomic<bool>> down_ = std::make_shared<std::atomic<bool>>(false);

    std::mutex shutdown_mutex_;
    bool shut_down_ = false;
    bool freed_ = true;
};

// Bytes of memory the OS reports as available to new allocations (MemAvailable on Linux).
uint64_t available_memory_bytes();

// The prompt cache an instance gets without --cache-ram and without a memory limit: a share of
// the memory available now, at most llama-server's 8 GiB default.
uint64_t default_prompt_cache_bytes();

}  // namespace llamaproc
