// Model quantization: llama.cpp's quantizer with per-tensor progress and cancellation.
#pragma once

#include <functional>
#include <string>

namespace llamaproc {

struct QuantizeOptions {
    std::string source;
    std::string destination;
    int ftype = 0;                 // a llama_ftype value
    int threads = 0;               // 0 = one per hardware thread
    bool allow_requantize = false; // allow quantizing tensors that are already quantized
    std::string imatrix_path;      // importance matrix (GGUF or legacy .dat); empty = none
};

// Called after each tensor with (tensors done, tensors in all, tensor name). It may throw to
// cancel; the exception then comes out of quantize_model().
using QuantizeProgress = std::function<void(int done, int total, const std::string & tensor)>;

// Writes `destination` (whatever is there is overwritten). Throws Error(model_load) for a bad
// source, Error(config) for a bad importance matrix, Error(internal) if the quantizer fails.
void quantize_model(const QuantizeOptions & options, const QuantizeProgress & progress);

}  // namespace llamaproc
