#include "server/decode_gate.h"

#include "rpc/rpc_devices.h"

#include "llama.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace llamaproc {

namespace {

thread_local bool t_gated = false;

int usable_cpus() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        return std::max(1, CPU_COUNT(&set));
    }
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

// A counting semaphore of CPU threads with strict FIFO order: a call waits until it is first
// in line and enough threads are free, so a wide decode is never starved by narrow ones.
class ThreadBudget {
public:
    ThreadBudget() : cpus_(usable_cpus()), free_(cpus_) {}

    int acquire(int wanted) {
        const int n = std::clamp(wanted, 1, cpus_);
        std::unique_lock<std::mutex> lock(mutex_);
        const uint64_t ticket = next_++;
        line_.push_back(ticket);
        ++decodes_;
        if (line_.front() != ticket || free_ < n) {
            ++waited_;
            const auto t0 = std::chrono::steady_clock::now();
            cv_.wait(lock, [&] { return line_.front() == ticket && free_ >= n; });
            wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        line_.pop_front();
        free_ -= n;
        cv_.notify_all();  // the next in line may fit too
        return n;
    }

    void release(int n) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            free_ += n;
        }
        cv_.notify_all();
    }

    DecodeGateStats stats() {
        std::lock_guard<std::mutex> lock(mutex_);
        DecodeGateStats s;
        s.cpus = cpus_;
        s.decodes = decodes_;
        s.waited = waited_;
        s.wait_seconds = wait_seconds_;
        return s;
    }

private:
    const int cpus_;
    std::mutex mutex_;
    std::condition_variable cv_;
    int free_;
    uint64_t next_ = 0;
    std::deque<uint64_t> line_;
    uint64_t decodes_ = 0, waited_ = 0;
    double wait_seconds_ = 0;
};

ThreadBudget & budget() {
    static ThreadBudget b;
    return b;
}

}  // namespace

DecodeGateScope::DecodeGateScope(bool enabled) : previous_(t_gated) {
    t_gated = enabled;
}

DecodeGateScope::~DecodeGateScope() {
    t_gated = previous_;
}

DecodeGateStats decode_gate_stats() {
    DecodeGateStats s = budget().stats();
#if defined(LLAMAPROC_WRAPS_DECODE)
    s.active = true;
#endif
    return s;
}

}  // namespace llamaproc

#if defined(LLAMAPROC_WRAPS_DECODE)
namespace {

// Holds the threads of one gated call; gives them back also when a native assert unwinds.
struct HeldThreads {
    int n;
    explicit HeldThreads(llama_context * ctx)
        : n(llamaproc::budget().acquire(std::max(llama_n_threads(ctx), llama_n_threads_batch(ctx)))) {}
    ~HeldThreads() { llamaproc::budget().release(n); }
};

// One decode call: through the gate on a gated thread, then checked for a broken RPC worker
// connection (rpc/rpc_devices.h).
template <typename Call> int32_t decode_call(llama_context * ctx, Call && call) {
    int32_t rc;
    if (!llamaproc::t_gated) {
        rc = call();
    } else {
        HeldThreads held(ctx);
        rc = call();
    }
    llamaproc::check_rpc_connection(ctx);
    return rc;
}

}  // namespace

// -Wl,--wrap=llama_process / llama_decode send llama.cpp's calls here; __real_* are the
// originals. The server decodes through llama_process(), common code through llama_decode().
extern "C" int32_t __real_llama_process(llama_context * ctx, llama_process_type type, llama_batch_ext * batch);
extern "C" int32_t __real_llama_decode(llama_context * ctx, llama_batch batch);

extern "C" int32_t __wrap_llama_process(llama_context * ctx, llama_process_type type, llama_batch_ext * batch) {
    return decode_call(ctx, [&] { return __real_llama_process(ctx, type, batch); });
}

extern "C" int32_t __wrap_llama_decode(llama_context * ctx, llama_batch batch) {
    return decode_call(ctx, [&] { return __real_llama_decode(ctx, batch); });
}
#endif
