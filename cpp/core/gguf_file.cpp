#include "gguf_file.h"

#include "errors.h"
#include "native_log.h"

#include "ggml.h"
#include "gguf.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sys/stat.h>

namespace llamaproc {

uint64_t check_gguf_file(const std::string & path) {
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
    const uint64_t file_size = check_gguf_file(path);
    auto tail = std::make_shared<LogTail>(20);
    ThreadLogScope scope(tail);  // gguf's parse errors are log lines: keep them for the message
    gguf_init_params params{/*no_alloc =*/true, /*ctx =*/nullptr};
    std::unique_ptr<gguf_context, decltype(&gguf_free)> ctx(gguf_init_from_file(path.c_str(), params), &gguf_free);
    if (!ctx) {
        std::string reason;
        for (const auto & line : tail->lines(3)) {
            reason += (reason.empty() ? "" : "; ") + line;
        }
        throw Error(ErrorKind::model_load, "cannot read the GGUF header of '" + path + "'" +
                                               (reason.empty() ? "" : ": " + reason), tail->lines());
    }
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
