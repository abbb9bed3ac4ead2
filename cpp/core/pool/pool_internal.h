// Small helpers the model pool's source files share (model_pool, pool_room, pool_routing,
// pool_swap). Not part of the pool's interface.
#pragma once

#include <chrono>

namespace llamaproc::pool_internal {

inline double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace llamaproc::pool_internal
