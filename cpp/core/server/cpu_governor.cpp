#include "server/cpu_governor.h"

#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
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
constexpr double SMOOTHING_S = 0.08;
// A host thread counts as a busy core from this share of a core (a spinning thread that shares
// its core with the decode's workers gets about cores/(cores+1) of it).
constexpr double BUSY_FROM = 0.6;
// ...and its core comes back once the host uses this much less than what is reserved for it.
constexpr double RELEASE_BELOW = 0.6;

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

#if defined(__linux__)
// One thread's name and CPU ticks (user + system) from /proc/self/task/<tid>/stat.
bool read_thread_stat(const char * tid, std::string & name, uint64_t & ticks) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/task/%s/stat", tid);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;  // the thread ended meanwhile
    }
    char buf[1024];
    const ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    const char * open_paren = std::strchr(buf, '(');
    const char * close_paren = std::strrchr(buf, ')');
    if (open_paren == nullptr || close_paren == nullptr || close_paren < open_paren) {
        return false;
    }
    name.assign(open_paren + 1, close_paren);
    // after ") ": field 3 (state) ... field 14 (utime), field 15 (stime)
    unsigned long long utime = 0, stime = 0;
    const char * p = close_paren + 2;
    for (int field = 3; field < 14 && p; ++field) {
        p = std::strchr(p, ' ');
        if (p) {
            ++p;
        }
    }
    if (p == nullptr || std::sscanf(p, "%llu %llu", &utime, &stime) != 2) {
        return false;
    }
    ticks = utime + stime;
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
    static const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
    const bool first = samples_ == 0;
    std::unordered_map<int, uint64_t> ticks_now;
    uint64_t host_ticks = 0;
    std::string name;
    while (dirent * entry = readdir(dir)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        uint64_t ticks = 0;
        if (!read_thread_stat(entry->d_name, name, ticks) || name.rfind(OWN_THREAD_PREFIX, 0) == 0) {
            continue;  // gone, or llamaproc's own
        }
        const int tid = std::atoi(entry->d_name);
        ticks_now[tid] = ticks;
        auto it = thread_ticks_.find(tid);
        // a thread first seen now started after the last sample: all its time is in this window
        host_ticks += it == thread_ticks_.end() ? ticks : ticks - std::min(ticks, it->second);
    }
    closedir(dir);
    const double dt = std::chrono::duration<double>(now - last_sample_).count();
    thread_ticks_.swap(ticks_now);
    last_sample_ = now;
    ++samples_;
    if (!first && dt > 0) {
        const double busy = static_cast<double>(host_ticks) / ticks_per_second / dt;
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

}  // namespace llamaproc
