#include "system_info.h"

#include "process_state.h"
#include "rpc/rpc_devices.h"

#include "ggml-backend.h"
#include "llama.h"

#ifndef LLAMAPROC_LLAMA_CPP_COMMIT
#define LLAMAPROC_LLAMA_CPP_COMMIT "unknown"
#endif

namespace llamaproc {

namespace {
std::string device_type_name(enum ggml_backend_dev_type type) {
    switch (type) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
        default: return "other";
    }
}
}  // namespace

SystemInfo system_info() {
    ProcessRuntime runtime;  // backends are registered once the backend is initialised
    SystemInfo info;
    info.llama_cpp_commit = LLAMAPROC_LLAMA_CPP_COMMIT;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        ggml_backend_reg_t reg = ggml_backend_reg_get(i);
        BackendInfo backend;
        backend.name = ggml_backend_reg_name(reg);
        auto get_features = reinterpret_cast<ggml_backend_get_features_t>(
            ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
        if (get_features) {
            for (ggml_backend_feature * f = get_features(reg); f && f->name; ++f) {
                backend.features.emplace_back(f->name, f->value);
            }
        }
        info.backends.push_back(std::move(backend));
    }
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        DeviceInfo d;
        d.name = ggml_backend_dev_name(dev);
        d.description = ggml_backend_dev_description(dev);
        d.type = device_type_name(ggml_backend_dev_type(dev));
        size_t free_bytes = 0, total_bytes = 0;
        query_device_memory(dev, free_bytes, total_bytes);
        d.memory_free = free_bytes;
        d.memory_total = total_bytes;
        info.devices.push_back(std::move(d));
    }
    info.summary = llama_print_system_info();
    return info;
}

}  // namespace llamaproc
