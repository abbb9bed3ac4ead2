// A steady-clock deadline `seconds` from now, for the waits that take a timeout in seconds.
#pragma once

#include <algorithm>
#include <chrono>

namespace llamaproc {

// Never before now; "never" (time_point::max()) for a timeout beyond 1e9 s, which would
// otherwise overflow the clock's representation.
inline std::chrono::steady_clock::time_point deadline_after(double seconds) {
    using clock = std::chrono::steady_clock;
    if (seconds > 1e9) {
        return clock::time_point::max();
    }
    return clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(std::max(0.0, seconds)));
}

}  // namespace llamaproc
