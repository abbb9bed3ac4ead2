#include "model_file/gguf_file.h"

#include "errors.h"
#include "native_log.h"

#include "ggml.h"
#include "gguf.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <optional>
#include <unordered_map>
#include <cstring>
#include <fstream>
#include <memory>
#include <sys/stat.h>

namespace llamaproc {

namespace {

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), fed in pieces.
class Utf8Check {
public:
    void feed(const unsigned char * p, size_t n) {
        for (size_t i = 0; i < n && ok_; ++i) {
            const unsigned char c = p[i];
            if (need_ == 0) {
                if (c < 0x80) {
                    continue;
                }
                if ((c & 0xE0) == 0xC0) {
                    need_ = 1, cp_ = c & 0x1F, min_ = 0x80;
                } else if ((c & 0xF0) == 0xE0) {
                    need_ = 2, cp_ = c & 0x0F, min_ = 0x800;
                } else if ((c & 0xF8) == 0xF0) {
                    need_ = 3, cp_ = c & 0x07, min_ = 0x10000;
                } else {
                    ok_ = false;
                }
                continue;
            }
            if ((c & 0xC0) != 0x80) {
                ok_ = false;
                continue;
            }
            cp_ = (cp_ << 6) | (c & 0x3F);
            if (--need_ == 0 && (cp_ < min_ || cp_ > 0x10FFFF || (cp_ >= 0xD800 && cp_ <= 0xDFFF))) {
                ok_ = false;
            }
        }
    }
    bool valid() const { return ok_ && need_ == 0; }

private:
    bool ok_ = true;
    int need_ = 0;
    uint32_t cp_ = 0, min_ = 0;
};

// `s` for an error message: printable ASCII kept, other bytes as \xNN, at most ~80 characters.
std::string printable(const std::string & s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char c : s) {
        if (out.size() >= 80) {
            return out + "...";
        }
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out.push_back(static_cast<char>(c));
        } else {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

std::vector<std::string> safe_lines(std::vector<std::string> lines);

// Logs the reason (so it is in the log tail too, like llama.cpp's own load errors) and throws.
[[noreturn]] void reject(const std::string & path, const std::string & why, const LogTail & tail) {
    const std::string message = "model file '" + path + "' is corrupt: " + why;
    log_line(LogLevel::error, message);
    throw Error(ErrorKind::model_load, message, safe_lines(tail.lines()));
}

// A walk over the header that reads only what it needs to check that every string in it
// (keys, string values, elements of string arrays, tensor names) is UTF-8, as GGUF requires.
// It runs before gguf's own parser because that parser logs keys and names in its errors, and
// llama.cpp's loader logs values: undecodable bytes must not reach the log (nor Python's str).
// A structural problem ends the walk quietly; gguf's parser then reports it. The one exception
// to UTF-8 is RWKV's vocabulary, which stores raw byte sequences as tokens.
class StringWalk {
public:
    StringWalk(const std::string & path, uint64_t size, const LogTail & tail)
        : path_(path), tail_(tail), in_(path, std::ios::binary), left_(size) {}

    void run() {
        char magic[4];
        uint32_t version = 0;
        uint64_t n_tensors = 0, n_kv = 0;
        if (!read(magic, 4) || !read(&version, 4) || version < 2 || version > 3 || !read(&n_tensors, 8) ||
            !read(&n_kv, 8)) {
            return;
        }
        std::string tokenizer_model;
        uint64_t bad_token = UINT64_MAX;
        for (uint64_t i = 0; i < n_kv; ++i) {
            std::string key;
            bool valid = false;
            if (!string(valid, &key)) {
                return;
            }
            if (!valid) {
                reject(path_, "metadata key " + std::to_string(i) + " ('" + printable(key) + "') is not valid UTF-8", tail_);
            }
            uint32_t type = 0;
            if (!read(&type, 4)) {
                return;
            }
            if (type == GGUF_TYPE_STRING) {
                std::string value;
                if (!string(valid, key == "tokenizer.ggml.model" ? &value : nullptr)) {
                    return;
                }
                if (!valid) {
                    reject(path_, "the value of '" + printable(key) + "' is not valid UTF-8", tail_);
                }
                if (key == "tokenizer.ggml.model") {
                    tokenizer_model = value;
                }
            } else if (type == GGUF_TYPE_ARRAY) {
                uint32_t etype = 0;
                uint64_t n = 0;
                if (!read(&etype, 4) || !read(&n, 8)) {
                    return;
                }
                if (etype == GGUF_TYPE_STRING) {
                    for (uint64_t j = 0; j < n; ++j) {
                        if (!string(valid, nullptr)) {
                            return;
                        }
                        if (!valid && key == "tokenizer.ggml.tokens") {
                            bad_token = std::min(bad_token, j);  // allowed for RWKV: decided at the end
                        } else if (!valid) {
                            reject(path_, "element " + std::to_string(j) + " of '" + printable(key) + "' is not valid UTF-8", tail_);
                        }
                    }
                } else if (scalar_size(etype) == 0 || n > left_ / scalar_size(etype) || !skip(n * scalar_size(etype))) {
                    return;
                }
            } else if (scalar_size(type) == 0 || !skip(scalar_size(type))) {
                return;
            }
        }
        if (bad_token != UINT64_MAX && tokenizer_model != "rwkv") {
            reject(path_, "token " + std::to_string(bad_token) + " of 'tokenizer.ggml.tokens' is not valid UTF-8", tail_);
        }
        for (uint64_t i = 0; i < n_tensors; ++i) {
            std::string name;
            bool valid = false;
            uint32_t n_dims = 0;
            if (!string(valid, &name)) {
                return;
            }
            if (!valid) {
                reject(path_, "the name of tensor " + std::to_string(i) + " ('" + printable(name) + "') is not valid UTF-8", tail_);
            }
            if (!read(&n_dims, 4) || n_dims > GGML_MAX_DIMS || !skip(8ull * n_dims + 4 + 8)) {
                return;
            }
        }
    }

private:
    // bytes of a fixed-size GGUF value type; 0 for strings, arrays and unknown types
    static uint64_t scalar_size(uint32_t type) {
        switch (type) {
            case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
            case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
            case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
            case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
            default: return 0;
        }
    }

    bool read(void * dst, size_t n) {
        if (n > left_ || !in_.read(static_cast<char *>(dst), static_cast<std::streamsize>(n))) {
            return false;
        }
        left_ -= n;
        return true;
    }
    bool skip(uint64_t n) {
        if (n > left_ || !in_.seekg(static_cast<std::streamoff>(n), std::ios::cur)) {
            return false;
        }
        left_ -= n;
        return true;
    }
    // a length-prefixed string, checked in pieces; its first 256 bytes kept in `keep`
    bool string(bool & valid, std::string * keep) {
        uint64_t n = 0;
        if (!read(&n, 8) || n > left_) {
            return false;
        }
        Utf8Check check;
        unsigned char buf[4096];
        while (n > 0) {
            const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof buf));
            if (!read(buf, k)) {
                return false;
            }
            check.feed(buf, k);
            if (keep && keep->size() < 256) {
                keep->append(reinterpret_cast<const char *>(buf), std::min<size_t>(k, 256 - keep->size()));
            }
            n -= k;
        }
        valid = check.valid();
        return true;
    }

    const std::string & path_;
    const LogTail & tail_;
    std::ifstream in_;
    uint64_t left_;
};

// a log line as it may travel in an error message (to Python): escaped unless it is UTF-8
std::string safe_line(const std::string & line) {
    Utf8Check check;
    check.feed(reinterpret_cast<const unsigned char *>(line.data()), line.size());
    return check.valid() ? line : printable(line);
}

std::vector<std::string> safe_lines(std::vector<std::string> lines) {
    for (auto & line : lines) {
        line = safe_line(line);
    }
    return lines;
}

std::string reason_from(const LogTail & tail) {
    std::string reason;
    for (const auto & line : tail.lines(3)) {
        reason += (reason.empty() ? "" : "; ") + safe_line(line);
    }
    return reason;
}

using GgufPtr = std::unique_ptr<gguf_context, decltype(&gguf_free)>;

// gguf's own parser (no tensor data read): it checks the structure, counts, lengths, types,
// shapes and offsets of the header. Throws Error(model_load) with its reason.
GgufPtr open_gguf(const std::string & path, const std::shared_ptr<LogTail> & tail) {
    gguf_init_params params{/*no_alloc =*/true, /*ctx =*/nullptr};
    GgufPtr ctx(gguf_init_from_file(path.c_str(), params), &gguf_free);
    if (!ctx) {
        const std::string reason = reason_from(*tail);
        throw Error(ErrorKind::model_load, "cannot read the GGUF header of '" + path + "'" +
                                               (reason.empty() ? "" : ": " + reason), safe_lines(tail->lines()));
    }
    return ctx;
}

// What llama.cpp and ggml take for granted about tensors and do not check themselves.
void check_tensors(const std::string & path, const gguf_context * ctx, uint64_t file_size, const LogTail & tail) {
    const uint64_t data_offset = gguf_get_data_offset(ctx);
    for (int64_t i = 0; i < gguf_get_n_tensors(ctx); ++i) {
        const std::string name = safe_line(gguf_get_tensor_name(ctx, i));
        const ggml_type type = gguf_get_tensor_type(ctx, i);
        // a weight of a type ggml cannot convert to float (i8..i64, f64, and the intermediate
        // q8_1/q8_K) has no dot product either: a matrix multiplication with it jumps to a
        // null function pointer, and the quantizer cannot read it
        if (type != GGML_TYPE_F32 && ggml_get_type_traits(type)->to_float == nullptr) {
            reject(path, "tensor '" + name + "' has type " + ggml_type_name(type) +
                             ", which is not a weight type ggml can compute with", tail);
        }
        const size_t n_bytes = gguf_get_tensor_size(ctx, i);
        if (n_bytes == 0) {
            // the quantizer divides by the row length, and no model has empty weights
            reject(path, "tensor '" + name + "' has no elements", tail);
        }
        const int64_t * ne = gguf_get_tensor_ne(ctx, i);
        if (ne[1] == 1 && ne[2] == 1 && ne[3] == 1 && type != GGML_TYPE_F32) {
            // vectors (norms, biases, scales) meet f32 activations in element-wise kernels,
            // which abort on any other type; every converter writes them as f32
            reject(path, "tensor '" + name + "' is a vector of type " + ggml_type_name(type) + "; vectors must be f32", tail);
        }
        const uint64_t begin = data_offset + gguf_get_tensor_offset(ctx, i);
        if (begin < data_offset || begin > file_size || n_bytes > file_size - begin) {
            reject(path, "the data of tensor '" + name + "' runs past the end of the file (" +
                             std::to_string(file_size) + " bytes): truncated?", tail);
        }
        if (begin % 32 != 0) {
            // llama.cpp maps the file and uses tensors in place; ggml asserts 32-byte alignment
            reject(path, "the data of tensor '" + name + "' is at file offset " + std::to_string(begin) +
                             ", not a multiple of 32 (general.alignment too small)", tail);
        }
    }
}

// A numeric metadata value (any integer or float type; for an array, its largest element).
std::optional<double> number(const gguf_context * ctx, const std::string & key) {
    const int64_t id = gguf_find_key(ctx, key.c_str());
    if (id < 0) {
        return std::nullopt;
    }
    auto element = [](gguf_type type, const void * data, size_t i) -> std::optional<double> {
        switch (type) {
            case GGUF_TYPE_UINT8: return static_cast<const uint8_t *>(data)[i];
            case GGUF_TYPE_INT8: return static_cast<const int8_t *>(data)[i];
            case GGUF_TYPE_UINT16: return static_cast<const uint16_t *>(data)[i];
            case GGUF_TYPE_INT16: return static_cast<const int16_t *>(data)[i];
            case GGUF_TYPE_UINT32: return static_cast<const uint32_t *>(data)[i];
            case GGUF_TYPE_INT32: return static_cast<const int32_t *>(data)[i];
            case GGUF_TYPE_UINT64: return static_cast<double>(static_cast<const uint64_t *>(data)[i]);
            case GGUF_TYPE_INT64: return static_cast<double>(static_cast<const int64_t *>(data)[i]);
            case GGUF_TYPE_FLOAT32: return static_cast<const float *>(data)[i];
            case GGUF_TYPE_FLOAT64: return static_cast<const double *>(data)[i];
            default: return std::nullopt;
        }
    };
    const gguf_type type = gguf_get_kv_type(ctx, id);
    if (type != GGUF_TYPE_ARRAY) {
        return type == GGUF_TYPE_STRING || type == GGUF_TYPE_BOOL ? std::nullopt : element(type, gguf_get_val_data(ctx, id), 0);
    }
    const gguf_type etype = gguf_get_arr_type(ctx, id);
    if (etype == GGUF_TYPE_STRING || etype == GGUF_TYPE_BOOL || etype == GGUF_TYPE_ARRAY) {
        return std::nullopt;
    }
    std::optional<double> max;
    const size_t n = gguf_get_arr_n(ctx, id);
    const void * data = gguf_get_arr_data(ctx, id);
    for (size_t i = 0; i < n; ++i) {
        const auto v = element(etype, data, i);
        if (v && (!max || *v > *max || std::isnan(*v))) {
            max = v;
        }
    }
    return max;
}

// Hyper-parameters that llama.cpp checks with GGML_ASSERT (an abort, or a NativeError where
// llamaproc guards the thread) or not at all, where a bad value crashes a compute kernel
// (possibly on one of ggml's worker threads, which cannot be guarded) or the serving loop.
void check_hparams(const std::string & path, const gguf_context * ctx, const LogTail & tail) {
    const int64_t arch_id = gguf_find_key(ctx, "general.architecture");
    if (arch_id < 0 || gguf_get_kv_type(ctx, arch_id) != GGUF_TYPE_STRING) {
        return;  // llama.cpp reports a missing architecture itself
    }
    const std::string arch = gguf_get_val_str(ctx, arch_id);
    auto bad = [&](const std::string & key, const std::string & why) {
        reject(path, "'" + key + "' " + why, tail);
    };
    const std::string k_layers = arch + ".block_count";
    const auto n_layer = number(ctx, k_layers);
    if (n_layer && !(*n_layer >= 1 && *n_layer <= 512)) {  // LLAMA_MAX_LAYERS
        bad(k_layers, "must be between 1 and 512");
    }
    const std::string k_nextn = arch + ".nextn_predict_layers";
    if (const auto v = number(ctx, k_nextn); v && n_layer && !(*v >= 0 && *v <= *n_layer)) {
        bad(k_nextn, "must be between 0 and the block count");
    }
    const std::string k_expert = arch + ".expert_count", k_used = arch + ".expert_used_count";
    const std::string k_groups = arch + ".expert_group_count", k_groups_used = arch + ".expert_group_used_count";
    const double n_expert = number(ctx, k_expert).value_or(0);
    const double n_used = number(ctx, k_used).value_or(0);
    const double n_groups = number(ctx, k_groups).value_or(0);
    const double n_groups_used = number(ctx, k_groups_used).value_or(0);
    if (!(n_expert >= 0 && n_expert <= 1024)) {  // LLAMA_MAX_EXPERTS
        bad(k_expert, "must be between 0 and 1024");
    }
    if (n_expert > 0 && !(n_used >= 1 && n_used <= n_expert)) {
        bad(k_used, "must be between 1 and '" + k_expert + "'");
    }
    if (n_expert == 0 && (n_used != 0 || n_groups != 0)) {
        bad(n_used != 0 ? k_used : k_groups, "is set but the model has no experts ('" + k_expert + "')");
    }
    if (n_expert > 0 && !(n_groups >= 0 && n_groups < n_expert)) {
        bad(k_groups, "must be smaller than '" + k_expert + "'");
    }
    if (n_groups > 1 && !(std::fmod(n_expert, n_groups) == 0 && n_groups_used > 0 && n_groups_used < n_groups)) {
        bad(k_groups, "must divide '" + k_expert + "', with '" + k_groups_used + "' between 1 and it");
    }
    const std::string k_ctx = arch + ".context_length";
    if (const auto v = number(ctx, k_ctx); v && !(*v >= 1 && *v <= 2147483647.0)) {
        // the server caps each slot's context to it (kept in an int): 0 or a negative value
        // leaves slots with no context, and the first request asserts in the serving loop
        bad(k_ctx, "must be between 1 and 2^31 - 1");
    }
    for (const char * name : {".attention.layer_norm_rms_epsilon", ".attention.layer_norm_epsilon",
                              ".attention.group_norm_epsilon"}) {
        const std::string key = arch + name;
        if (const auto v = number(ctx, key); v && !(std::isfinite(*v) && *v >= 0)) {
            bad(key, "must be a finite number >= 0");  // asserted inside the norm kernels
        }
    }
    const std::string k_rope = arch + ".rope.scaling.type";
    const int64_t rope_id = gguf_find_key(ctx, k_rope.c_str());
    if (rope_id >= 0 && gguf_get_kv_type(ctx, rope_id) == GGUF_TYPE_STRING) {
        const std::string v = gguf_get_val_str(ctx, rope_id);
        if (v != "none" && v != "linear" && v != "yarn" && v != "longrope") {
            bad(k_rope, "must be one of none, linear, yarn, longrope (got '" + safe_line(v) + "')");
        }
    }
}

// Two tokens with the same text make llama.cpp's vocabulary assert while loading; so does a
// byte token (type 6) in a vocabulary whose tokenizer has no byte tokens.
void check_vocab(const std::string & path, const gguf_context * ctx, const LogTail & tail) {
    const int64_t model_id = gguf_find_key(ctx, "tokenizer.ggml.model");
    const int64_t types_id = gguf_find_key(ctx, "tokenizer.ggml.token_type");
    if (model_id >= 0 && gguf_get_kv_type(ctx, model_id) == GGUF_TYPE_STRING && types_id >= 0 &&
        gguf_get_kv_type(ctx, types_id) == GGUF_TYPE_ARRAY && gguf_get_arr_type(ctx, types_id) == GGUF_TYPE_INT32) {
        const std::string model = gguf_get_val_str(ctx, model_id);
        if (model == "bert" || model == "rwkv" || model == "plamo2" || model == "none" || model == "no_vocab") {
            const auto * types = static_cast<const int32_t *>(gguf_get_arr_data(ctx, types_id));
            for (size_t i = 0; i < gguf_get_arr_n(ctx, types_id); ++i) {
                if (types[i] == 6) {  // LLAMA_TOKEN_TYPE_BYTE
                    reject(path, "token " + std::to_string(i) + " is a byte token, which the '" + model +
                                     "' tokenizer does not have", tail);
                }
            }
        }
    }
    const int64_t id = gguf_find_key(ctx, "tokenizer.ggml.tokens");
    if (id < 0 || gguf_get_kv_type(ctx, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(ctx, id) != GGUF_TYPE_STRING) {
        return;
    }
    const size_t n = gguf_get_arr_n(ctx, id);
    std::unordered_map<std::string, size_t> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        std::string text = gguf_get_arr_str(ctx, id, i);
        if (text.empty()) {
            text = "[EMPTY_" + std::to_string(i) + "]";  // what llama.cpp makes of an empty token
        }
        const auto [it, fresh] = seen.emplace(std::move(text), i);
        if (!fresh) {
            reject(path, "tokens " + std::to_string(it->second) + " and " + std::to_string(i) + " of 'tokenizer.ggml.tokens' are the same ('" +
                             safe_line(it->first) + "')", tail);
        }
    }
}

}  // namespace

uint64_t check_gguf_file(const std::string & path) {
    const uint64_t size = check_gguf_file_basics(path);
    auto tail = std::make_shared<LogTail>(20);
    ThreadLogScope scope(tail);  // gguf's parse errors are log lines: keep them for the message
    StringWalk(path, size, *tail).run();
    GgufPtr ctx = open_gguf(path, tail);
    check_tensors(path, ctx.get(), size, *tail);
    check_hparams(path, ctx.get(), *tail);
    check_vocab(path, ctx.get(), *tail);
    return size;
}

uint64_t check_gguf_file_basics(const std::string & path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw Error(ErrorKind::model_load, "model file '" + path + "' does not exist");
    }
    if (!S_ISREG(st.st_mode)) {
        throw Error(ErrorKind::model_load, "model path '" + path + "' is not a regular file");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Error(ErrorKind::model_load, "model file '" + path + "' cannot be read: " + std::strerror(errno));
    }
    char magic[4] = {};
    in.read(magic, sizeof magic);
    if (in.gcount() < 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        throw Error(ErrorKind::model_load,
                    "model file '" + path + "' is not a GGUF file (it does not start with the GGUF magic)");
    }
    if (st.st_size < 24) {
        throw Error(ErrorKind::model_load, "model file '" + path + "' is truncated: " +
                                               std::to_string(st.st_size) + " bytes, shorter than a GGUF header");
    }
    return static_cast<uint64_t>(st.st_size);
}

namespace {

GgufScalar scalar_value(const gguf_context * ctx, int64_t id) {
    switch (gguf_get_kv_type(ctx, id)) {
        case GGUF_TYPE_UINT8: return static_cast<uint64_t>(gguf_get_val_u8(ctx, id));
        case GGUF_TYPE_INT8: return static_cast<int64_t>(gguf_get_val_i8(ctx, id));
        case GGUF_TYPE_UINT16: return static_cast<uint64_t>(gguf_get_val_u16(ctx, id));
        case GGUF_TYPE_INT16: return static_cast<int64_t>(gguf_get_val_i16(ctx, id));
        case GGUF_TYPE_UINT32: return static_cast<uint64_t>(gguf_get_val_u32(ctx, id));
        case GGUF_TYPE_INT32: return static_cast<int64_t>(gguf_get_val_i32(ctx, id));
        case GGUF_TYPE_UINT64: return gguf_get_val_u64(ctx, id);
        case GGUF_TYPE_INT64: return gguf_get_val_i64(ctx, id);
        case GGUF_TYPE_FLOAT32: return static_cast<double>(gguf_get_val_f32(ctx, id));
        case GGUF_TYPE_FLOAT64: return gguf_get_val_f64(ctx, id);
        case GGUF_TYPE_BOOL: return gguf_get_val_bool(ctx, id);
        case GGUF_TYPE_STRING: return std::string(gguf_get_val_str(ctx, id));
        default: return std::string();
    }
}

}  // namespace

GgufHeader read_gguf_header(const std::string & path) {
    const uint64_t file_size = check_gguf_file_basics(path);
    auto tail = std::make_shared<LogTail>(20);
    ThreadLogScope scope(tail);  // gguf's parse errors are log lines: keep them for the message
    StringWalk(path, file_size, *tail).run();  // the header's strings become Python str
    GgufPtr ctx = open_gguf(path, tail);
    GgufHeader header;
    header.version = gguf_get_version(ctx.get());
    header.file_size = file_size;
    for (int64_t i = 0; i < gguf_get_n_kv(ctx.get()); ++i) {
        const std::string key = gguf_get_key(ctx.get(), i);
        if (gguf_get_kv_type(ctx.get(), i) == GGUF_TYPE_ARRAY) {
            header.array_lengths[key] = gguf_get_arr_n(ctx.get(), i);
        } else {
            header.metadata[key] = scalar_value(ctx.get(), i);
        }
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(ctx.get()); ++i) {
        const ggml_type type = gguf_get_tensor_type(ctx.get(), i);
        GgufTensor t;
        t.name = gguf_get_tensor_name(ctx.get(), i);
        t.type = ggml_type_name(type);
        t.n_bytes = gguf_get_tensor_size(ctx.get(), i);
        const size_t type_size = ggml_type_size(type);
        t.n_elements = type_size ? t.n_bytes / type_size * static_cast<uint64_t>(ggml_blck_size(type)) : 0;
        header.tensors.push_back(std::move(t));
    }
    return header;
}

}  // namespace llamaproc
