#include "quantize.h"

#include "errors.h"
#include "gguf_file.h"
#include "native_log.h"
#include "process_state.h"

#include "imatrix-loader.h"
#include "llama.h"

#include <cstdio>
#include <exception>
#include <vector>

namespace llamaproc {

namespace {

// Importance-matrix data in the form llama_model_quantize() takes, kept alive with it.
struct ImatrixData {
    std::vector<std::pair<std::string, std::vector<float>>> values;
    std::vector<llama_model_imatrix_data> view;  // ends with a null name
};

// Mean squared activations per column, as llama.cpp's quantize tool derives them.
void load_imatrix(const std::string & path, ImatrixData & out) {
    common_imatrix loaded;
    if (!common_imatrix_load(path, loaded)) {
        throw Error(ErrorKind::config, "cannot load the importance matrix '" + path + "'");
    }
    if (!loaded.is_legacy && !loaded.has_metadata) {
        throw Error(ErrorKind::config, "importance matrix '" + path + "' has no imatrix metadata");
    }
    for (const auto & [name, entry] : loaded.entries) {
        std::vector<float> values(entry.sums.size(), 1.0f);
        if (!loaded.is_legacy) {
            const size_t n_counts = entry.counts.size();
            const size_t width = n_counts ? entry.sums.size() / n_counts : 0;
            for (size_t j = 0; j < n_counts; ++j) {
                const float count = static_cast<float>(entry.counts[j]);
                for (size_t i = 0; i < width; ++i) {
                    values[j * width + i] = count > 0.0f ? entry.sums[j * width + i] / count : 1.0f;
                }
            }
        } else {
            const int64_t n_calls = entry.counts.empty() ? 0 : entry.counts[0];
            for (size_t i = 0; i < entry.sums.size(); ++i) {
                values[i] = n_calls > 0 ? entry.sums[i] / static_cast<float>(n_calls) : entry.sums[i];
            }
        }
        out.values.emplace_back(name, std::move(values));
    }
    for (const auto & [name, values] : out.values) {
        out.view.push_back({name.c_str(), values.data(), values.size()});
    }
    out.view.push_back({nullptr, nullptr, 0});
}

// The quantizer logs "[  12/ 272] blk.0.attn_q.weight - [...]" per tensor.
bool parse_tensor_line(const std::string & line, int & done, int & total, std::string & name) {
    char buf[256] = {};
    if (std::sscanf(line.c_str(), "[%d/%d] %255s", &done, &total, buf) != 3) {
        return false;
    }
    name = buf;
    return true;
}

}  // namespace

void quantize_model(const QuantizeOptions & options, const QuantizeProgress & progress) {
    check_gguf_file(options.source);
    ProcessRuntime runtime;
    ImatrixData imatrix;
    if (!options.imatrix_path.empty()) {
        load_imatrix(options.imatrix_path, imatrix);
    }
    llama_model_quantize_params params = llama_model_quantize_default_params();
    params.nthread = options.threads;
    params.ftype = static_cast<llama_ftype>(options.ftype);
    params.allow_requantize = options.allow_requantize;
    params.imatrix = imatrix.view.empty() ? nullptr : imatrix.view.data();

    std::exception_ptr cancelled;
    auto observer = [&](const std::string & line) {
        int done = 0, total = 0;
        std::string name;
        if (progress && parse_tensor_line(line, done, total, name)) {
            try {
                progress(done, total, name);
            } catch (...) {
                cancelled = std::current_exception();
                throw;  // unwinds out of the quantizer, which then returns an error
            }
        }
    };
    auto tail = std::make_shared<LogTail>(60);
    uint32_t rc = 0;
    {
        ThreadLogScope scope(tail, observer);
        rc = llama_model_quantize(options.source.c_str(), options.destination.c_str(), &params);
    }
    if (cancelled) {
        std::rethrow_exception(cancelled);
    }
    if (rc != 0) {
        std::string reason;
        for (const auto & line : tail->lines(60)) {
            if (line.find("failed to quantize") != std::string::npos) {
                reason = line;
            }
        }
        throw Error(ErrorKind::model_load,
                    "quantizing '" + options.source + "' failed" + (reason.empty() ? "" : ": " + reason),
                    tail->lines(20));
    }
}

}  // namespace llamaproc
