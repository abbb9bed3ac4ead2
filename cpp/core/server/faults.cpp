#include "faults.h"

namespace llamaproc {

void FaultPlan::arm(FaultKind kind, int times, int param) {
    param_[static_cast<int>(kind)].store(param);
    remaining_[static_cast<int>(kind)].store(times);
}

void FaultPlan::clear() {
    for (auto & r : remaining_) {
        r.store(0);
    }
}

bool FaultPlan::take(FaultKind kind) {
    auto & r = remaining_[static_cast<int>(kind)];
    int n = r.load();
    while (n > 0) {
        if (r.compare_exchange_weak(n, n - 1)) {
            return true;
        }
    }
    return false;
}

bool FaultPlan::armed(FaultKind kind) const {
    return remaining_[static_cast<int>(kind)].load() > 0;
}

int FaultPlan::param(FaultKind kind) const {
    return param_[static_cast<int>(kind)].load();
}

const char * fault_name(FaultKind kind) {
    switch (kind) {
        case FaultKind::loop_dies: return "loop_dies";
        case FaultKind::assert_in_request: return "assert_in_request";
        case FaultKind::load_fails: return "load_fails";
        case FaultKind::slow_load: return "slow_load";
    }
    return "?";
}

}  // namespace llamaproc
