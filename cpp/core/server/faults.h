// Faults a test can inject into a running server, acting through the paths real failures
// take. Armed per server (they survive restarts of its model instance); each fires a set
// number of times. Nothing here runs unless a test arms it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace llamaproc {

enum class FaultKind {
    // model faults: act on the model instance
    loop_dies,          // the inference loop returns as if terminated (arm: the loop is told at once)
    assert_in_request,  // a GGML_ASSERT fires on the loop thread while it serves the next request
    load_fails,         // the next model load fails
    slow_load,          // each load-progress step of the next load sleeps `param` milliseconds
    over_memory,        // the next load finds the model over memory_limit (ResourceError)
    // request faults: act on requests (HTTP and direct)
    error,        // the `nth` request matching `match` is answered `status` (`body`), `times` times
    slow_tokens,  // every stream chunk waits `param` ms (0: off)
    cut_stream,   // the next `times` streams end after `param` chunks
    slots_busy,   // requests that need a slot wait as if every slot were busy, until cleared
};

// One fault as a test arms it (llamaproc.faults.Fault on the Python side).
struct FaultSpec {
    FaultKind kind = FaultKind::loop_dies;
    int times = 1;
    int param = 0;
    int status = 0;
    std::string body;
    int nth = 1;
    std::string match;
};

inline bool acts_on_requests(FaultKind kind) { return kind >= FaultKind::error; }

class FaultPlan {
public:
    // Arms any fault: request faults here, model faults as arm(kind, times, param).
    void arm(const FaultSpec & spec);
    void arm(FaultKind kind, int times, int param = 0);
    void clear();
    // True (and one use consumed) if `kind` is armed.
    bool take(FaultKind kind);
    int param(FaultKind kind) const;
    int remaining(FaultKind kind) const { return acts_on_requests(kind) ? 0 : remaining_[static_cast<int>(kind)].load(); }

    // Request faults (HTTP and direct calls alike).
    // The `nth` request from now (1-based; 0: every request) whose "path body" contains `match`
    // is answered with `status` and `body` instead of its handler, `times` times.
    void arm_error(int status, std::string body, int nth, std::string match, int times);
    std::optional<std::pair<int, std::string>> take_error(const std::string & path, const std::string & body);
    // Every stream chunk waits `ms` first (0: off).
    void arm_slow_tokens(int ms) { slow_token_ms_.store(ms); }
    int slow_token_ms() const { return slow_token_ms_.load(); }
    // The next `times` streams end after `after_chunks` chunks, without their final events.
    void arm_cut_stream(int after_chunks, int times);
    // The chunk count after which a new stream is cut, or -1.
    int take_cut_stream();

    // While set, requests that need a slot wait as if every slot were busy (health: DEGRADED).
    void set_slots_busy(bool busy);
    bool slots_busy() const { return slots_busy_.load(); }
    int parked() const { return parked_.load(); }
    // Waits while slots_busy is set (or until `should_stop`); returns at once otherwise.
    void park_while_busy(const std::function<bool()> & should_stop);

private:
    static constexpr int n_kinds = 5;  // the model faults, counted in remaining_
    std::atomic<bool> slots_busy_{false};
    std::atomic<int> parked_{0};
    std::condition_variable busy_cv_;
    std::mutex request_mutex_;
    int error_status_ = 0;
    std::string error_body_;
    int error_nth_ = 0;
    std::string error_match_;
    int error_times_ = 0;
    int error_seen_ = 0;
    std::atomic<int> slow_token_ms_{0};
    int cut_after_ = -1;
    int cut_times_ = 0;
    std::atomic<int> remaining_[n_kinds] = {};
    std::atomic<int> param_[n_kinds] = {};
};

const char * fault_name(FaultKind kind);
// The kind of a fault's name ("loop_dies", "error", ...); throws Error(config) for another name.
FaultKind fault_kind(const std::string & name);

}  // namespace llamaproc
