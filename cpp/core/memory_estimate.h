// What a configuration will allocate, measured by llama.cpp itself with a no-alloc dry run
// of the model and context (only the GGUF header and metadata are read).
#pragma once

#include "common.h"

#include <cstdint>

namespace llamaproc {

struct MemoryEstimate {
    uint64_t model_bytes = 0;    // weights
    uint64_t context_bytes = 0;  // KV cache and other per-context state
    uint64_t compute_bytes = 0;  // compute buffers
    uint64_t total() const { return model_bytes + context_bytes + compute_bytes; }
};

// Throws Error(model_load) when the model cannot be read.
MemoryEstimate estimate_memory(const common_params & params);

// What loading `params` will hold: estimate_memory() with the weights at least the file's size
// (their pages are read into memory). Throws like estimate_memory().
MemoryEstimate estimate_load_memory(const common_params & params);

}  // namespace llamaproc
