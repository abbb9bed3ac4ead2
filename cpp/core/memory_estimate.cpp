#include "memory_estimate.h"

#include "errors.h"

#include "fit.h"

#include <algorithm>
#include <filesystem>
#include <vector>

namespace llamaproc {

MemoryEstimate estimate_memory(const common_params & params) {
    common_params copy = params;
    llama_model_params mparams = common_model_params_to_llama(copy);
    llama_context_params cparams = common_context_params_to_llama(copy);
    std::vector<ggml_backend_dev_t> devices;
    uint32_t n_layers = 0, n_ctx_train = 0, n_experts = 0;
    common_device_memory_data_vec per_device;
    try {
        per_device = common_get_device_memory_data(copy.model.path.c_str(), &mparams, &cparams, devices,
                                                   n_layers, n_ctx_train, n_experts, GGML_LOG_LEVEL_ERROR);
    } catch (const std::exception & e) {
        throw Error(ErrorKind::model_load, "cannot size model '" + params.model.path + "': " + e.what());
    }
    MemoryEstimate estimate;
    for (const auto & d : per_device) {
        estimate.model_bytes += d.model;
        estimate.context_bytes += d.context;
        estimate.compute_bytes += d.compute;
    }
    return estimate;
}

MemoryEstimate estimate_load_memory(const common_params & params) {
    MemoryEstimate est = estimate_memory(params);
    std::error_code ec;
    const uint64_t file = std::filesystem::file_size(params.model.path, ec);
    est.model_bytes = std::max<uint64_t>(est.model_bytes, ec ? 0 : file);
    return est;
}

}  // namespace llamaproc
