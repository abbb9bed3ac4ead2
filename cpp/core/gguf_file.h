// Reading GGUF files without loading weights: checks that catch bad files before llama.cpp
// sees them, and the header (metadata and tensor table) for inspection.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace llamaproc {

// Throws Error(model_load) naming the file when it is missing, not a regular file,
// unreadable, not GGUF, or shorter than a GGUF header. Returns the file's size.
uint64_t check_gguf_file(const std::string & path);

struct GgufTensor {
    std::string name;
    std::string type;       // ggml type name, e.g. "q4_K"
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
};

using GgufScalar = std::variant<int64_t, uint64_t, double, bool, std::string>;

struct GgufHeader {
    uint32_t version = 0;
    uint64_t file_size = 0;
    std::map<std::string, GgufScalar> metadata;        // scalar values
    std::map<std::string, uint64_t> array_lengths;     // arrays: their length only
    std::vector<GgufTensor> tensors;
};

// Throws Error(model_load) when the header cannot be parsed.
GgufHeader read_gguf_header(const std::string & path);

}  // namespace llamaproc
