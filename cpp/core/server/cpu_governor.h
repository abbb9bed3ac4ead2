// The CPU governor: how many threads a decode step may use *now*, for every llamaproc server in
// the process whose thread count was not given explicitly.
//
// An embedded server shares the CPUs with its host. With a thread per core, one busy host
// thread deschedules a ggml worker that the others then wait for at every barrier (decode
// collapses); with a core always left to the host, an idle host wastes that core. The governor
// measures the host instead: before a decode step (at most every SAMPLE_PERIOD) it reads the
// CPU time of each thread of the process (/proc/self/task/*/schedstat on Linux, stat's ticks
// where schedstat is missing; no thread of its own, no GIL), counts
// the threads that are not llamaproc's (their names do not start with OWN_THREAD_PREFIX: the
// inference loops, their ggml workers and the HTTP threads are named so) and leaves as many
// cores to them as they keep busy. It reacts at once when the host gets busy and waits
// RELEASE_HOLD of quiet before it takes a core back, so short bursts do not toggle threads.
//
// Several models decoding at once share what is left through the decode gate (decode_gate.h):
// its capacity is the governor's allowance.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "ggml.h"

struct common_cpu_params;
struct llama_context;
struct ggml_threadpool;

namespace llamaproc {

// Threads llamaproc runs (and every thread they create, which inherits the name).
constexpr const char * OWN_THREAD_PREFIX = "llp-";

// Names the calling thread (at most 15 characters on Linux); no-op elsewhere.
void name_this_thread(const std::string & name);

// Names the calling thread while alive, so that threads it creates meanwhile inherit the name;
// the old name comes back at the end.
class ThreadNameScope {
public:
    explicit ThreadNameScope(const std::string & name);
    ~ThreadNameScope();
    ThreadNameScope(const ThreadNameScope &) = delete;
    ThreadNameScope & operator=(const ThreadNameScope &) = delete;

private:
    std::string previous_;
};

struct GovernorStatus {
    bool active = false;        // false where per-thread CPU times cannot be read (allowance = max)
    int max_threads = 1;        // llama.cpp's default: one per physical core
    int allowance = 1;          // threads a governed decode step may use now
    int reserved_for_host = 0;  // cores left to busy host threads
    double host_cpus = 0;       // CPUs the host's threads used lately (smoothed)
    uint64_t samples = 0;
    double sample_seconds = 0;  // CPU time the governor spent sampling
};

class CpuGovernor {
public:
    static constexpr auto SAMPLE_PERIOD = std::chrono::milliseconds(25);
    static constexpr auto RELEASE_HOLD = std::chrono::milliseconds(400);

    static CpuGovernor & process();

    // Threads for the next decode step: samples the host first when the last sample is old.
    int allowance();
    GovernorStatus status();
    int max_threads() const { return max_threads_; }

private:
    CpuGovernor();
    void sample_locked(std::chrono::steady_clock::time_point now);
    void decide_locked(std::chrono::steady_clock::time_point now);

    const int max_threads_;
    std::mutex mutex_;
    bool active_ = false;
    std::chrono::steady_clock::time_point last_sample_{};
    std::unordered_map<int, uint64_t> thread_cpu_ns_;  // host threads' CPU time at the last sample
    std::unordered_set<int> own_threads_;               // llamaproc's (named llp-*)
    double host_cpus_ = 0;
    std::atomic<int> reserved_{0};
    std::chrono::steady_clock::time_point quiet_since_{};  // host below the reservation since then
    bool quiet_ = false;
    uint64_t samples_ = 0;
    double sample_seconds_ = 0;
};

// The ggml thread pools of one governed instance: one per thread count the governor gives,
// made on first use, so that a step with fewer threads has no idle worker of a wider pool
// polling beside it (a worker outside a step's count would spin on the core the host needs).
// Used on the instance's loop thread only. Free it only after the contexts that use it.
class ThreadPools {
public:
    explicit ThreadPools(const common_cpu_params & cpu);  // each pool's settings but its size (poll, priority, mask)
    ~ThreadPools();
    ThreadPools(const ThreadPools &) = delete;
    ThreadPools & operator=(const ThreadPools &) = delete;

    // False where ggml's thread pools cannot be made here: the context keeps its own pool.
    bool usable() const { return make_ != nullptr; }
    // Attaches the pool of `n` threads to `ctx` (decode and batch alike) unless it has it.
    void use(llama_context * ctx, int n);
    // Lets the workers of the pool `ctx` uses sleep now (another model waits for the cores).
    void rest(llama_context * ctx);
    // The contexts were replaced (a reload): attach again on their next step.
    void forget_contexts() { current_.clear(); }

private:
    using make_fn = ggml_threadpool * (*)(ggml_threadpool_params *);
    using drop_fn = void (*)(ggml_threadpool *);
    ggml_threadpool_params base_;
    make_fn make_ = nullptr;
    drop_fn free_ = nullptr;
    drop_fn pause_ = nullptr;
    std::map<int, ggml_threadpool *> pools_;
    std::map<llama_context *, ggml_threadpool *> current_;
};

}  // namespace llamaproc
