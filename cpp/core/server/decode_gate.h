// A process-wide budget of CPU threads for decoding, shared by every model instance in the
// process. Each of llama.cpp's decode calls on an instance's loop thread first takes as many
// threads as its ggml thread pool will use, first come first served, and gives them back when
// the call returns. So two models decoding at once run side by side while their threads fit the
// CPUs, and take turns (each at full width) when they do not: never two spinning thread pools
// on the same cores. A lone model is never slowed.
//
// The budget's capacity is what the CPU governor (cpu_governor.h) leaves after the host's busy
// threads; an instance whose thread count was not given explicitly is *governed*: before each
// decode step its thread count is set to that capacity (between steps, never mid-step).
//
// It works by wrapping llama_process() and llama_decode() at link time (-Wl,--wrap, Linux);
// elsewhere it is inert.
#pragma once

#include <atomic>
#include <cstdint>

namespace llamaproc {

class ThreadPools;

// Why a decode step ran with the threads it had.
enum class DecodeReason : int {
    none = 0,   // no decode yet
    fixed,      // the thread count was given explicitly
    idle_host,  // governed: every core (the host's threads are idle)
    host_busy,  // governed: cores left to busy host threads
    shared,     // governed: waited for another model's decode (turns at full width)
};

const char * decode_reason_name(DecodeReason reason);

// What an instance's last decode step used (written by its loop thread, read by metrics).
struct DecodeReport {
    std::atomic<int> threads{0};
    std::atomic<int> reason{static_cast<int>(DecodeReason::none)};
};

// While alive, llama_decode() calls on this thread pass through the gate (when `gated`), with
// their thread count set by the governor (when `governed`; with `pools`, a thread pool of that
// size attached to the context), and report to `report` (if any).
class DecodeGateScope {
public:
    DecodeGateScope(bool gated, bool governed = false, DecodeReport * report = nullptr, ThreadPools * pools = nullptr);
    ~DecodeGateScope();
    DecodeGateScope(const DecodeGateScope &) = delete;
    DecodeGateScope & operator=(const DecodeGateScope &) = delete;

private:
    bool previous_gated_;
    bool previous_governed_;
    DecodeReport * previous_report_;
    ThreadPools * previous_pools_;
};

struct DecodeGateStats {
    int cpus = 0;            // the thread budget's capacity now (the governor's allowance)
    bool active = false;     // false where llama_decode() cannot be wrapped
    uint64_t decodes = 0;    // gated decode calls so far
    uint64_t waited = 0;     // of which had to wait for threads
    double wait_seconds = 0; // total time spent waiting
};

DecodeGateStats decode_gate_stats();

}  // namespace llamaproc
