// What this build of llama.cpp can do on this machine: backends, CPU features, devices.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llamaproc {

struct DeviceInfo {
    std::string name;
    std::string description;
    std::string type;  // "cpu", "gpu", "igpu", "accel"
    uint64_t memory_free = 0;
    uint64_t memory_total = 0;
};

struct BackendInfo {
    std::string name;
    std::vector<std::pair<std::string, std::string>> features;  // e.g. ("AVX512", "1")
};

struct SystemInfo {
    std::string llama_cpp_commit;
    std::vector<BackendInfo> backends;
    std::vector<DeviceInfo> devices;
    std::string summary;  // llama_print_system_info()
};

SystemInfo system_info();

}  // namespace llamaproc
