#include "server/decode_gate.h"

#include "rpc/rpc_devices.h"
#include "server/cpu_governor.h"

#include "llama.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <tuple>

namespace llamaproc {

namespace {

thread_local bool t_gated = false;
thread_local bool t_governed = false;
thread_local DecodeReport * t_report = nullptr;
thread_local ThreadPools * t_pools = nullptr;

// A counting semaphore of CPU threads with strict FIFO order: a call waits until it is first
// in line and its threads fit the capacity, so a wide decode is never starved by narrow ones.
// The capacity is given per call (the governor's allowance then).
class ThreadBudget {
public:
    // Returns the threads taken (`wanted`, at most `capacity`) and whether the call waited.
    std::pair<int, bool> acquire(int wanted, int capacity) {
        capacity = std::max(1, capacity);
        const int n = std::clamp(wanted, 1, capacity);
        std::unique_lock<std::mutex> lock(mutex_);
        const uint64_t ticket = next_++;
        line_.push_back(ticket);
        ++decodes_;
        capacity_ = capacity;
        bool waited = false;
        if (line_.front() != ticket || in_use_ + n > capacity) {
            waited = true;
            ++waited_;
            const auto t0 = std::chrono::steady_clock::now();
            cv_.wait(lock, [&] { return line_.front() == ticket && in_use_ + n <= capacity; });
            wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        line_.pop_front();
        in_use_ += n;
        cv_.notify_all();  // the next in line may fit too
        return {n, waited};
    }

    // Someone waits for threads: a decode that ends now should let its workers sleep.
    bool contended() {
        std::lock_guard<std::mutex> lock(mutex_);
        return !line_.empty();
    }

    void release(int n) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            in_use_ -= n;
        }
        cv_.notify_all();
    }

    DecodeGateStats stats() {
        std::lock_guard<std::mutex> lock(mutex_);
        DecodeGateStats s;
        s.cpus = capacity_;
        s.decodes = decodes_;
        s.waited = waited_;
        s.wait_seconds = wait_seconds_;
        return s;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int in_use_ = 0;
    int capacity_ = CpuGovernor::process().max_threads();
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

const char * decode_reason_name(DecodeReason reason) {
    switch (reason) {
        case DecodeReason::fixed: return "fixed";
        case DecodeReason::idle_host: return "idle host";
        case DecodeReason::host_busy: return "host busy";
        case DecodeReason::shared: return "shared";
        default: return "";
    }
}

DecodeGateScope::DecodeGateScope(bool gated, bool governed, DecodeReport * report, ThreadPools * pools)
    : previous_gated_(t_gated), previous_governed_(t_governed), previous_report_(t_report), previous_pools_(t_pools) {
    t_gated = gated;
    t_governed = governed;
    t_report = report;
    t_pools = pools != nullptr && pools->usable() ? pools : nullptr;
}

DecodeGateScope::~DecodeGateScope() {
    t_gated = previous_gated_;
    t_governed = previous_governed_;
    t_report = previous_report_;
    t_pools = previous_pools_;
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

using llamaproc::DecodeReason;

// Holds the threads of one gated call; gives them back also when a native assert unwinds.
struct HeldThreads {
    int n = 0;
    bool waited = false;
    HeldThreads(int wanted, int capacity) { std::tie(n, waited) = llamaproc::budget().acquire(wanted, capacity); }
    ~HeldThreads() { llamaproc::budget().release(n); }
};

// One decode call: sized by the governor and through the gate on an instance's thread, then
// checked for a broken RPC worker connection (rpc/rpc_devices.h).
template <typename Call> int32_t decode_call(llama_context * ctx, Call && call) {
    int32_t rc;
    if (!llamaproc::t_gated && !llamaproc::t_governed) {
        rc = call();
    } else {
        auto & governor = llamaproc::CpuGovernor::process();
        const int capacity = governor.allowance();
        DecodeReason reason = DecodeReason::fixed;
        if (llamaproc::t_governed) {
            if (llamaproc::t_pools != nullptr) {
                llamaproc::t_pools->use(ctx, capacity);  // a pool of exactly that many threads
            }
            if (llama_n_threads(ctx) != capacity || llama_n_threads_batch(ctx) != capacity) {
                llama_set_n_threads(ctx, capacity, capacity);  // between steps, never mid-step
            }
            reason = capacity < governor.max_threads() ? DecodeReason::host_busy : DecodeReason::idle_host;
        }
        const int wanted = std::max(llama_n_threads(ctx), llama_n_threads_batch(ctx));
        auto report = [&](DecodeReason why) {
            if (llamaproc::t_report != nullptr) {
                llamaproc::t_report->threads.store(wanted, std::memory_order_relaxed);
                llamaproc::t_report->reason.store(static_cast<int>(why), std::memory_order_relaxed);
            }
        };
        if (llamaproc::t_gated) {
            HeldThreads held(wanted, capacity);
            report(held.waited && llamaproc::t_governed ? DecodeReason::shared : reason);
            rc = call();
            if (llamaproc::t_pools != nullptr && llamaproc::budget().contended()) {
                llamaproc::t_pools->rest(ctx);  // another model decodes next: no polling beside it
            }
        } else {
            report(reason);
            rc = call();
        }
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
