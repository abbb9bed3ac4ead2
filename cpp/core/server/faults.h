// Faults a test can inject into a running server, acting through the paths real failures
// take. Armed per server (they survive restarts of its model instance); each fires a set
// number of times. Nothing here runs unless a test arms it.
#pragma once

#include <atomic>
#include <string>

namespace llamaproc {

enum class FaultKind {
    loop_dies,          // the inference loop returns as if terminated (arm: the loop is told at once)
    assert_in_request,  // a GGML_ASSERT fires on the loop thread while it serves the next request
    load_fails,         // the next model load fails
    slow_load,          // each load-progress step of the next load sleeps `param` milliseconds
};

class FaultPlan {
public:
    void arm(FaultKind kind, int times, int param = 0);
    void clear();
    // True (and one use consumed) if `kind` is armed.
    bool take(FaultKind kind);
    bool armed(FaultKind kind) const;
    int param(FaultKind kind) const;

private:
    static constexpr int n_kinds = 4;
    std::atomic<int> remaining_[n_kinds] = {};
    std::atomic<int> param_[n_kinds] = {};
};

const char * fault_name(FaultKind kind);

}  // namespace llamaproc
