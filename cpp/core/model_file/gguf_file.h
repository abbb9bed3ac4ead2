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
uint64_t check_gguf_file_basics(const std::string & path);

// check_gguf_file_basics(), then what llama.cpp's loader and quantizer take for granted: the
// header parses (gguf's own checks of counts, lengths, types, shapes and offsets), every
// string is UTF-8, every tensor has elements, a type ggml can compute with, and its data
// inside the file. Run before llama.cpp sees a file (start, quantize, evaluate): a file that
// passes loads or fails with llama.cpp's own error, instead of crashing the process.
// Throws Error(model_load) naming the file and the reason. Returns the file's size.
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
