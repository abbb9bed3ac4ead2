// The CPU governor: how many threads a decode step may use *now*, for every llamaproc server in
// the process whose thread count was not given explicitly.
//
// An embedded server shares the CPUs with its host. With a thread per core, one busy host
// thread deschedules a ggml worker that the others then wait for at every barrier (decode
// collapses); with a core always left to the host, an idle host wastes that core. The governor
// measures the host instead: before a decode step (at most every SAMPLE_PERIOD) it reads the
// CPU time of each thread of the process (/proc/self/task on Linux; no thread, no GIL), counts
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
#include <mutex>
#include <string>
#include <unordered_map>

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
    static constexpr auto SAMPLE_PERIOD = std::chrono::milliseconds(40);
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
    std::unordered_map<int, uint64_t> thread_ticks_;  // host threads' CPU ticks at the last sample
    double host_cpus_ = 0;
    std::atomic<int> reserved_{0};
    std::chrono::steady_clock::time_point quiet_since_{};  // host below the reservation since then
    bool quiet_ = false;
    uint64_t samples_ = 0;
    double sample_seconds_ = 0;
};

}  // namespace llamaproc
