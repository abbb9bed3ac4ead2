#include "faults.h"

#include "errors.h"

#include <chrono>

namespace llamaproc {

void FaultPlan::arm(const FaultSpec & spec) {
    switch (spec.kind) {
        case FaultKind::error: arm_error(spec.status, spec.body, spec.nth, spec.match, spec.times); return;
        case FaultKind::slow_tokens: arm_slow_tokens(spec.param); return;
        case FaultKind::cut_stream: arm_cut_stream(spec.param, spec.times); return;
        case FaultKind::slots_busy: set_slots_busy(true); return;
        default: arm(spec.kind, spec.times, spec.param); return;
    }
}

void FaultPlan::arm(FaultKind kind, int times, int param) {
    if (acts_on_requests(kind)) {
        arm(FaultSpec{kind, times, param});
        return;
    }
    param_[static_cast<int>(kind)].store(param);
    remaining_[static_cast<int>(kind)].store(times);
}

void FaultPlan::clear() {
    for (auto & r : remaining_) {
        r.store(0);
    }
    slow_token_ms_.store(0);
    set_slots_busy(false);
    std::lock_guard<std::mutex> lock(request_mutex_);
    error_times_ = 0;
    cut_times_ = 0;
}

void FaultPlan::set_slots_busy(bool busy) {
    {
        std::lock_guard<std::mutex> lock(request_mutex_);
        slots_busy_.store(busy);
    }
    busy_cv_.notify_all();
}

void FaultPlan::park_while_busy(const std::function<bool()> & should_stop) {
    if (!slots_busy_.load()) {
        return;
    }
    ++parked_;
    std::unique_lock<std::mutex> lock(request_mutex_);
    while (slots_busy_.load() && !should_stop()) {
        busy_cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    --parked_;
}

void FaultPlan::arm_error(int status, std::string body, int nth, std::string match, int times) {
    std::lock_guard<std::mutex> lock(request_mutex_);
    error_status_ = status;
    error_body_ = std::move(body);
    error_nth_ = nth;
    error_match_ = std::move(match);
    error_times_ = times;
    error_seen_ = 0;
}

std::optional<std::pair<int, std::string>> FaultPlan::take_error(const std::string & path, const std::string & body) {
    std::lock_guard<std::mutex> lock(request_mutex_);
    if (error_times_ <= 0) {
        return std::nullopt;
    }
    if (!error_match_.empty() && (path + " " + body).find(error_match_) == std::string::npos) {
        return std::nullopt;
    }
    ++error_seen_;
    if (error_nth_ > 0 && error_seen_ < error_nth_) {
        return std::nullopt;
    }
    --error_times_;
    error_seen_ = 0;
    return std::make_pair(error_status_, error_body_);
}

void FaultPlan::arm_cut_stream(int after_chunks, int times) {
    std::lock_guard<std::mutex> lock(request_mutex_);
    cut_after_ = after_chunks;
    cut_times_ = times;
}

int FaultPlan::take_cut_stream() {
    std::lock_guard<std::mutex> lock(request_mutex_);
    if (cut_times_ <= 0) {
        return -1;
    }
    --cut_times_;
    return cut_after_;
}

bool FaultPlan::take(FaultKind kind) {
    if (acts_on_requests(kind)) {
        return false;
    }
    auto & r = remaining_[static_cast<int>(kind)];
    int n = r.load();
    while (n > 0) {
        if (r.compare_exchange_weak(n, n - 1)) {
            return true;
        }
    }
    return false;
}

int FaultPlan::param(FaultKind kind) const {
    return acts_on_requests(kind) ? 0 : param_[static_cast<int>(kind)].load();
}

const char * fault_name(FaultKind kind) {
    switch (kind) {
        case FaultKind::loop_dies: return "loop_dies";
        case FaultKind::assert_in_request: return "assert_in_request";
        case FaultKind::load_fails: return "load_fails";
        case FaultKind::slow_load: return "slow_load";
        case FaultKind::over_memory: return "over_memory";
        case FaultKind::error: return "error";
        case FaultKind::slow_tokens: return "slow_tokens";
        case FaultKind::cut_stream: return "cut_stream";
        case FaultKind::slots_busy: return "slots_busy";
    }
    return "?";
}

FaultKind fault_kind(const std::string & name) {
    for (FaultKind k : {FaultKind::loop_dies, FaultKind::assert_in_request, FaultKind::load_fails, FaultKind::slow_load,
                        FaultKind::over_memory, FaultKind::error, FaultKind::slow_tokens, FaultKind::cut_stream,
                        FaultKind::slots_busy}) {
        if (name == fault_name(k)) {
            return k;
        }
    }
    throw Error(ErrorKind::config, "unknown fault '" + name + "'");
}

}  // namespace llamaproc
