#include "memory_estimate.h"

#include "errors.h"
#include "native_log.h"

#include "llama-ext.h"  // llama_get_memory_breakdown (llama.cpp's staging API, also used by fit.cpp)
#include "llama.h"
#include "speculative.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace llamaproc {

namespace {

constexpr uint64_t MiB = 1024 * 1024;
// The on-disk store keeps the newest entries up to this count.
constexpr size_t MAX_STORED_MEASUREMENTS = 512;

// The output rows llama-server's context reserves (server-context.cpp, server_output_limits):
// a whole batch for embeddings and pooled outputs; else one per slot, plus the draft tokens
// each slot verifies when speculation is on. llama.cpp's default (and fit.cpp's dry run) is a
// whole batch, which for a 49k-token vocabulary is ~96 MiB of logits the server never holds.
// The context parameters the server creates its context with.
llama_context_params server_context_params(const common_params & params) {
    llama_context_params cparams = common_context_params_to_llama(params);
    if (params.embedding ||
        (params.pooling_type != LLAMA_POOLING_TYPE_UNSPECIFIED && params.pooling_type != LLAMA_POOLING_TYPE_NONE)) {
        cparams.n_outputs_max = static_cast<uint32_t>(std::max(params.n_batch, 1));
        cparams.n_outputs_max_per_seq = 1;
        return cparams;
    }
    const auto limits = common_speculative_get_output_limits(params.n_batch, params.n_parallel,
                                                             common_speculative_n_max(&params.speculative));
    cparams.n_outputs_max = static_cast<uint32_t>(std::max<int32_t>(1, limits.total));
    cparams.n_outputs_max_per_seq = static_cast<uint32_t>(std::max<int32_t>(1, limits.per_seq));
    return cparams;
}

uint64_t digest(const std::string & text) {  // FNV-1a, 64 bits
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
        h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

std::string hex(uint64_t value) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(value));
    return buf;
}

std::string device_names(const std::vector<ggml_backend_dev_t> & devices) {
    std::string out;
    for (ggml_backend_dev_t dev : devices) {
        if (dev != nullptr) {
            out += std::string(ggml_backend_dev_name(dev)) + ",";
        }
    }
    return out;
}

}  // namespace

std::string mib_text(uint64_t bytes) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%llu bytes (%.1f MiB)", static_cast<unsigned long long>(bytes),
                  static_cast<double>(bytes) / MiB);
    return buf;
}

MemoryEstimate estimate_memory(const common_params & params) {
    common_params copy = params;  // common_model_params_to_llama takes a mutable one
    llama_model_params mparams = common_model_params_to_llama(copy);
    mparams.no_alloc = true;
    mparams.load_mode = LLAMA_LOAD_MODE_NONE;
    mparams.progress_callback = nullptr;  // the caller's callback is for the real load
    mparams.progress_callback_user_data = nullptr;
    const llama_context_params cparams = server_context_params(params);

    ThreadLogQuiet quiet;  // the dry run repeats the load's log lines: keep them at DEBUG
    std::unique_ptr<llama_model, decltype(&llama_model_free)> model(
        llama_model_load_from_file(params.model.path.c_str(), mparams), &llama_model_free);
    if (!model) {
        throw Error(ErrorKind::model_load, "cannot size model '" + params.model.path + "': llama.cpp could not read it");
    }
    std::unique_ptr<llama_context, decltype(&llama_free)> ctx(llama_init_from_model(model.get(), cparams), &llama_free);
    if (!ctx) {
        throw Error(ErrorKind::model_load,
                    "cannot size model '" + params.model.path + "': llama.cpp could not create a context for it");
    }
    // Every buffer counts: host, device, and the CPU's repacked ("extra": AMX, AVX2/AVX-512
    // layouts) weight buffers, which fit.cpp's per-device accounting leaves out (they are
    // neither host buffers nor a GPU's).
    MemoryEstimate estimate;
    uint64_t host_weights = 0, repacked_weights = 0, device_weights = 0;
    for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx.get())) {
        estimate.context_bytes += mb.context;
        estimate.compute_bytes += mb.compute;
        ggml_backend_dev_t dev = ggml_backend_buft_is_host(buft) ? nullptr : ggml_backend_buft_get_device(buft);
        if (dev == nullptr) {
            host_weights += mb.model;
        } else if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) {
            repacked_weights += mb.model;
        } else {
            device_weights += mb.model;
        }
    }
    // A mapped file (llama.cpp's default) keeps the span of the CPU's tensors mapped, and its
    // pages are read in at load, the originals of repacked tensors too: on a CPU-only load that
    // is the whole file, beside the repacked copies.
    const bool maps_file = llama_supports_mmap() &&
                           (params.load_mode == LLAMA_LOAD_MODE_AUTO || params.load_mode == LLAMA_LOAD_MODE_MMAP ||
                            params.load_mode == LLAMA_LOAD_MODE_MMAP_MLOCK);
    std::error_code ec;
    const uint64_t file = std::filesystem::file_size(params.model.path, ec);
    if (maps_file && device_weights == 0 && !ec) {
        host_weights = std::max<uint64_t>(host_weights + repacked_weights, file);
    }
    estimate.model_bytes = host_weights + repacked_weights + device_weights;
    return estimate;
}

std::string memory_key(const common_params & p) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path path = fs::weakly_canonical(p.model.path, ec);
    const uint64_t size = fs::file_size(p.model.path, ec);
    const auto mtime = fs::last_write_time(p.model.path, ec);
    const llama_context_params c = server_context_params(p);
    std::ostringstream key;
    key << "file=" << (path.empty() ? p.model.path : path.string()) << ";size=" << size
        << ";mtime=" << (ec ? 0 : mtime.time_since_epoch().count()) << ";ctx=" << c.n_ctx << ";batch=" << c.n_batch
        << ";ubatch=" << c.n_ubatch << ";seqs=" << c.n_seq_max << ";rs=" << c.n_rs_seq << ";outputs=" << c.n_outputs_max
        << "/" << c.n_outputs_max_per_seq << ";kv=" << c.type_k << "/" << c.type_v << ";fa=" << c.flash_attn_type
        << ";offload_kqv=" << c.offload_kqv << ";swa_full=" << c.swa_full << ";unified=" << c.kv_unified
        << ";embd=" << c.embeddings << ";pool=" << c.pooling_type << ";ngl=" << p.n_gpu_layers
        << ";split=" << p.split_mode << ";main_gpu=" << p.main_gpu << ";load=" << p.load_mode
        << ";repack=" << !p.no_extra_bufts << ";no_host=" << p.no_host << ";devices=" << device_names(p.devices)
        << ";tensor_split=";
    for (float f : p.tensor_split) {
        if (f != 0.0f) {
            key << f << ",";
        }
    }
    key << ";overrides=";
    for (const auto & o : p.tensor_buft_overrides) {
        if (o.pattern != nullptr) {
            key << o.pattern << "=" << (o.buft ? ggml_backend_buft_name(o.buft) : "") << ",";
        }
    }
    key << ";draft=" << p.speculative.draft.mparams.path << ";mmproj=" << p.mmproj.path << ";lora=";
    for (const auto & lora : p.lora_adapters) {
        key << lora.path << ",";
    }
    // llama_print_system_info() fills one static string: read it once (the backends are loaded
    // when the extension is imported, before any key is made)
    static const std::string system = llama_print_system_info();
    key << ";system=" << system;
    return key.str();
}

MeasuredMemory & MeasuredMemory::process() {
    static MeasuredMemory store;
    return store;
}

void MeasuredMemory::set_file(const std::string & path) {
    std::lock_guard<std::mutex> lock(mutex_);
    file_ = path;  // read at the next look-up
    read_stamp_.clear();
}

std::string MeasuredMemory::file() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return file_;
}

std::optional<uint64_t> MeasuredMemory::find(const std::string & key) {
    std::lock_guard<std::mutex> lock(mutex_);
    read_file_locked();  // another process may have measured it meanwhile
    auto it = held_.find(hex(digest(key)));
    if (it == held_.end()) {
        return std::nullopt;
    }
    return it->second.bytes;
}

void MeasuredMemory::record(const std::string & key, uint64_t held_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    read_file_locked();
    const long long now = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
    held_[hex(digest(key))] = Row{held_bytes, now};
    write_file_locked();
}

void MeasuredMemory::clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    held_.clear();
    read_stamp_.clear();  // the file, if any, is read again at the next look-up
}

std::string MeasuredMemory::file_stamp_locked() const {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(file_, ec);
    if (ec) {
        return "";
    }
    const auto mtime = std::filesystem::last_write_time(file_, ec);
    return ec ? "" : std::to_string(size) + "@" + std::to_string(mtime.time_since_epoch().count());
}

// The file: one line per measurement, "<key digest> <bytes> <unix time>", newest last.
void MeasuredMemory::read_file_locked() {
    if (file_.empty()) {
        return;
    }
    const std::string stamp = file_stamp_locked();
    if (stamp.empty() || stamp == read_stamp_) {
        return;  // no file, or nothing new in it
    }
    read_stamp_ = stamp;
    std::ifstream in(file_);
    std::string digest_text;
    Row row;
    while (in >> digest_text >> row.bytes >> row.when) {
        auto it = held_.find(digest_text);
        if (it == held_.end() || it->second.when <= row.when) {
            held_[digest_text] = row;
        }
    }
}

void MeasuredMemory::write_file_locked() {
    if (file_.empty()) {
        return;
    }
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path target(file_);
    if (target.has_parent_path()) {
        fs::create_directories(target.parent_path(), ec);
    }
    std::vector<std::pair<std::string, Row>> rows(held_.begin(), held_.end());
    std::sort(rows.begin(), rows.end(), [](const auto & a, const auto & b) { return a.second.when < b.second.when; });
    if (rows.size() > MAX_STORED_MEASUREMENTS) {  // the newest are kept
        rows.erase(rows.begin(), rows.end() - static_cast<long>(MAX_STORED_MEASUREMENTS));
    }
    std::string tmp = file_ + ".tmp";
#if defined(__unix__) || defined(__APPLE__)
    tmp += "." + std::to_string(getpid());
#endif
    {
        std::ofstream out(tmp, std::ios::trunc);
        for (const auto & [k, v] : rows) {
            out << k << " " << v.bytes << " " << v.when << "\n";
        }
        if (!out) {
            log_line(LogLevel::warning, "memory measurements: cannot write '" + tmp + "'; they are kept in this process only");
            fs::remove(tmp, ec);
            return;
        }
    }
    fs::rename(tmp, target, ec);  // atomic: a reader sees the old file or the new one
    if (ec) {
        log_line(LogLevel::warning, "memory measurements: cannot replace '" + file_ + "': " + ec.message());
        fs::remove(tmp, ec);
        return;
    }
    read_stamp_ = file_stamp_locked();  // it holds what this process knows: no need to read it back
}

std::string ExpectedMemory::describe() const {
    if (measured) {
        return mib_text(*measured) + "; measured when this file was last loaded with these flags (llama.cpp's dry run "
                                     "estimated " + mib_text(estimate.total()) + ")";
    }
    return mib_text(estimate.total()) + "; estimated by llama.cpp's dry run: weights " + mib_text(estimate.model_bytes) +
           ", context " + mib_text(estimate.context_bytes) + ", compute " + mib_text(estimate.compute_bytes);
}

ExpectedMemory expected_memory(const common_params & params) {
    ExpectedMemory out;
    out.key = memory_key(params);
    out.estimate = estimate_memory(params);
    out.measured = MeasuredMemory::process().find(out.key);
    return out;
}

ExpectedMemory expected_within_limit(const common_params & params, uint64_t memory_limit) {
    ExpectedMemory expected = expected_memory(params);
    if (memory_limit > 0 && expected.need() > memory_limit) {
        throw Error(ErrorKind::resource,
                    "model '" + params.model.path + "' with this configuration needs about " + expected.describe() +
                        "; more than memory_limit=" + mib_text(memory_limit) +
                        "; nothing was loaded. Hint: lower context_size or parallel, or use a smaller quantization");
    }
    return expected;
}

uint64_t prompt_cache_cap(const common_params & params, bool cache_ram_explicit, uint64_t memory_limit, uint64_t need,
                          uint64_t default_cap) {
    constexpr uint64_t MiB = 1024 * 1024;
    if (!cache_ram_explicit) {
        return memory_limit > 0 ? std::min(default_cap, memory_limit > need ? memory_limit - need : 0) : default_cap;
    }
    if (memory_limit > 0 && params.cache_ram_mib < 0) {
        throw Error(ErrorKind::config, "--cache-ram -1 (no limit) cannot be combined with memory_limit");
    }
    const uint64_t cache = params.cache_ram_mib > 0 ? static_cast<uint64_t>(params.cache_ram_mib) * MiB : 0;
    if (memory_limit > 0 && need + cache > memory_limit) {
        throw Error(ErrorKind::resource,
                    "model '" + params.model.path + "' needs about " + mib_text(need) + " and --cache-ram asks for " +
                        mib_text(cache) + " more, over memory_limit=" + mib_text(memory_limit) +
                        "; nothing was loaded. Hint: lower --cache-ram or leave it unset");
    }
    return cache;
}

}  // namespace llamaproc
