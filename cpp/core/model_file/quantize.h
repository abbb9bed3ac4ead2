// Model quantization: llama.cpp's quantizer with per-tensor progress and cancellation.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace llamaproc {

// One of llama.cpp's model file types (llama_ftype). The list is generated at configure time
// from the llama.h being built against, so it always matches the quantizer compiled in.
struct QuantType {
    int value;                // the llama_ftype value
    const char * name;        // the enumerator without LLAMA_FTYPE_MOSTLY_ / LLAMA_FTYPE_ALL_: "Q4_K_M"
    const char * description; // llama_ftype_name(): "Q4_K - Medium"
};

// Every file type of this llama.cpp, in the order of llama.h.
const std::vector<QuantType> & quant_types();
// The type called `name` in any case, with '-' or '_', with or without the MOSTLY_ / ALL_
// prefix; nullptr when there is none.
const QuantType * find_quant_type(std::string_view name);
const QuantType * find_quant_type(long long value);
// "F32, F16, Q4_0, ...": the valid names, for error messages.
std::string quant_type_names();
// The very low-bit types that llama.cpp refuses to make without an importance matrix.
bool needs_imatrix(int ftype);

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
