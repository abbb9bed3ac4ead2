#include "server/cpu_governor.h"

#include "runtime_backends.h"

#include "common.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unordered_set>
#include <vector>

#if defined(__linux__)
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#endif

namespace llamaproc {

namespace {

using clock = std::chrono::steady_clock;

// Smoothing of the host's CPU use: the time constant of the moving average.
constexpr double SMOOTHING_S = 0.05;
// A host thread counts as a busy core from this share of a core: a spinning Python thread that
// shares its core with the decode's workers (and the GIL with other Python threads) gets well
// under a core until one is left to it, and even a third of a core busy stalls the decode's
// barriers each time it takes a worker's core.
constexpr double BUSY_FROM = 0.35;
// ...and its core comes back once the host uses this much less than what is reserved for it.
constexpr double RELEASE_BELOW = 0.7;

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

#if defined(__linux__)
// The first line of /proc/self/task/<tid>/<file> into buf; false if the thread is gone.
bool read_task_file(const char * tid, const char * file, char * buf, size_t size) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/task/%s/%s", tid, file);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    const ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    return true;
}

// A thread's CPU time in ns: schedstat's run time (exact), else stat's ticks (user + system).
bool read_thread_cpu_ns(const char * tid, uint64_t & ns) {
    char buf[1024];
    unsigned long long value = 0;
    if (read_task_file(tid, "schedstat", buf, sizeof(buf)) && std::sscanf(buf, "%llu", &value) == 1) {
        ns = value;
        return true;
    }
    if (!read_task_file(tid, "stat", buf, sizeof(buf))) {
        return false;
    }
    const char * p = std::strrchr(buf, ')');  // after "pid (name) ": field 3 (state) ... 14 utime, 15 stime
    for (int field = 2; field < 14 && p; ++field) {
        p = std::strchr(p + 1, ' ');
    }
    unsigned long long utime = 0, stime = 0;
    if (p == nullptr || std::sscanf(p + 1, "%llu %llu", &utime, &stime) != 2) {
        return false;
    }
    static const double ns_per_tick = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
    ns = static_cast<uint64_t>(static_cast<double>(utime + stime) * ns_per_tick);
    return true;
}
#endif

}  // namespace

void name_this_thread(const std::string & name) {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
#else
    (void) name;
#endif
}

ThreadNameScope::ThreadNameScope(const std::string & name) {
#if defined(__linux__)
    char old[32] = {0};
    if (pthread_getname_np(pthread_self(), old, sizeof(old)) == 0) {
        previous_ = old;
    }
#endif
    name_this_thread(name);
}

ThreadNameScope::~ThreadNameScope() {
    if (!previous_.empty()) {
        name_this_thread(previous_);
    }
}

CpuGovernor & CpuGovernor::process() {
    static CpuGovernor governor;
    return governor;
}

CpuGovernor::CpuGovernor() : max_threads_(std::max(1, common_cpu_get_num_math())) {
#if defined(__linux__)
    if (DIR * d = opendir("/proc/self/task")) {
        closedir(d);
        active_ = true;
    }
#endif
}

int CpuGovernor::allowance() {
    if (!active_ || max_threads_ == 1) {
        return max_threads_;
    }
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (lock.owns_lock()) {  // another decoder samples now: its result is as good
        const auto now = clock::now();
        if (now - last_sample_ >= SAMPLE_PERIOD) {
            sample_locked(now);
            decide_locked(now);
        }
    }
    return std::max(1, max_threads_ - reserved_.load());
}

GovernorStatus CpuGovernor::status() {
    std::lock_guard<std::mutex> lock(mutex_);
    GovernorStatus s;
    s.active = active_;
    s.max_threads = max_threads_;
    s.allowance = std::max(1, max_threads_ - reserved_.load());
    s.reserved_for_host = reserved_.load();
    s.host_cpus = host_cpus_;
    s.samples = samples_;
    s.sample_seconds = sample_seconds_;
    return s;
}

void CpuGovernor::sample_locked(clock::time_point now) {
#if defined(__linux__)
    const double cpu0 = thread_cpu_seconds();
    DIR * dir = opendir("/proc/self/task");
    if (dir == nullptr) {
        return;
    }
    const bool first = samples_ == 0;
    std::unordered_map<int, uint64_t> cpu_now;
    std::unordered_set<int> own_now;
    uint64_t host_ns = 0;
    char name[64];
    while (dirent * entry = readdir(dir)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        const int tid = std::atoi(entry->d_name);
        // a thread named llp-* keeps the name: it is not read again
        if (own_threads_.count(tid) != 0) {
            own_now.insert(tid);
            continue;
        }
        if (!read_task_file(entry->d_name, "comm", name, sizeof(name))) {
            continue;  // gone
        }
        if (std::strncmp(name, OWN_THREAD_PREFIX, std::strlen(OWN_THREAD_PREFIX)) == 0) {
            own_now.insert(tid);
            continue;
        }
        uint64_t ns = 0;
        if (!read_thread_cpu_ns(entry->d_name, ns)) {
            continue;
        }
        cpu_now[tid] = ns;
        auto it = thread_cpu_ns_.find(tid);
        // a thread first seen now started after the last sample: all its time is in this window
        host_ns += it == thread_cpu_ns_.end() ? ns : ns - std::min(ns, it->second);
    }
    closedir(dir);
    const double dt = std::chrono::duration<double>(now - last_sample_).count();
    thread_cpu_ns_.swap(cpu_now);
    own_threads_.swap(own_now);  // ended threads leave (their ids may come back as host threads)
    last_sample_ = now;
    ++samples_;
    if (!first && dt > 0) {
        const double busy = static_cast<double>(host_ns) * 1e-9 / dt;
        const double alpha = 1.0 - std::exp(-dt / SMOOTHING_S);
        host_cpus_ += alpha * (busy - host_cpus_);
    }
    sample_seconds_ += thread_cpu_seconds() - cpu0;
#else
    (void) now;
#endif
}

// Reserve a core for each one the host keeps busy, at once; give one back only after the host
// stayed clearly below its reservation for RELEASE_HOLD. At least one thread decodes.
void CpuGovernor::decide_locked(clock::time_point now) {
    const int most = max_threads_ - 1;
    const int wanted = std::clamp(static_cast<int>(std::floor(host_cpus_ + (1.0 - BUSY_FROM))), 0, most);
    const int reserved = reserved_.load();
    if (wanted > reserved) {
        reserved_ = wanted;
        quiet_ = false;
    } else if (wanted < reserved && host_cpus_ < reserved - RELEASE_BELOW) {
        if (!quiet_) {
            quiet_ = true;
            quiet_since_ = now;
        } else if (now - quiet_since_ >= RELEASE_HOLD) {
            reserved_ = wanted;
            quiet_ = false;
        }
    } else {
        quiet_ = false;
    }
}

ThreadPools::ThreadPools(const common_cpu_params & cpu) : base_(ggml_threadpool_params_from_cpu_params(cpu)) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (reg == nullptr) {
        return;
    }
    // new and free through the registry, as llama.cpp's common code does (a portable build
    // loads the CPU backend at run time); pause from the module itself
    make_ = reinterpret_cast<make_fn>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
    free_ = reinterpret_cast<drop_fn>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
#if defined(GGML_BACKEND_DL)
    pause_ = reinterpret_cast<drop_fn>(cpu_module_symbol("ggml_threadpool_pause"));
#else
    pause_ = &ggml_threadpool_pause;
#endif
    if (free_ == nullptr) {
        make_ = nullptr;
    }
}

ThreadPools::~ThreadPools() {
    for (auto & [n, pool] : pools_) {
        free_(pool);
    }
}

void ThreadPools::use(llama_context * ctx, int n) {
    if (make_ == nullptr) {
        return;
    }
    auto it = pools_.find(n);
    if (it == pools_.end()) {
        ggml_threadpool_params p = base_;
        p.n_threads = n;
        p.paused = false;
        ggml_threadpool * pool = make_(&p);
        if (pool == nullptr) {
            return;  // the context keeps the pool it has
        }
        it = pools_.emplace(n, pool).first;
    }
    auto & current = current_[ctx];
    if (current == it->second) {
        return;
    }
    if (current != nullptr && pause_ != nullptr) {
        pause_(current);  // its workers sleep at once instead of polling out their time
    }
    llama_attach_threadpool(ctx, it->second, it->second);
    current = it->second;
}

void ThreadPools::rest(llama_context * ctx) {
    auto it = current_.find(ctx);
    if (it != current_.end() && pause_ != nullptr) {
        pause_(it->second);  // the next step's kickoff resumes it
    }
}

}  // namespace llamaproc
