// A process-wide budget of CPU threads for decoding, shared by the model instances that opt in
// (a model pool's). Each of llama.cpp's decode calls on an opted-in thread first takes as many
// threads as its ggml thread pool will use, first come first served, and gives them back when
// the call returns. So two models decoding at once run side by side while their threads fit the
// CPUs, and take turns (each at full width) when they do not: never two spinning thread pools
// on the same cores. A lone model is never slowed.
//
// It works by wrapping llama_process() and llama_decode() at link time (-Wl,--wrap, Linux);
// elsewhere it is inert.
#pragma once

#include <cstdint>

namespace llamaproc {

// While alive, llama_decode() calls on this thread pass through the gate (when `enabled`).
class DecodeGateScope {
public:
    explicit DecodeGateScope(bool enabled);
    ~DecodeGateScope();
    DecodeGateScope(const DecodeGateScope &) = delete;
    DecodeGateScope & operator=(const DecodeGateScope &) = delete;

private:
    bool previous_;
};

struct DecodeGateStats {
    int cpus = 0;            // the thread budget: CPUs this process may run on
    bool active = false;     // false where llama_decode() cannot be wrapped
    uint64_t decodes = 0;    // gated decode calls so far
    uint64_t waited = 0;     // of which had to wait for threads
    double wait_seconds = 0; // total time spent waiting
};

DecodeGateStats decode_gate_stats();

}  // namespace llamaproc
