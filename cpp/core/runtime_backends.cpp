#include "runtime_backends.h"

#include "native_log.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#if defined(GGML_BACKEND_DL) && !defined(_WIN32)
#include <dlfcn.h>
#endif

namespace llamaproc {

namespace {

#if defined(GGML_BACKEND_DL) && !defined(_WIN32)
namespace fs = std::filesystem;

constexpr const char * PREFIX = "libggml-";
constexpr const char * EXTENSION = ".so";  // ggml's module suffix on Linux and macOS

std::string module_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&load_runtime_backends), &info) == 0 || info.dli_fname == nullptr) {
        return ".";
    }
    return fs::path(info.dli_fname).parent_path().string();
}

// ggml_backend_score() of a module: 0 if this machine cannot run it, -1 if it is no backend
int score_of(const fs::path & path) {
    void * handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        return -1;
    }
    using score_fn = int (*)();
    auto score = reinterpret_cast<score_fn>(dlsym(handle, "ggml_backend_score"));
    const int s = score != nullptr ? score() : -1;
    dlclose(handle);
    return s;
}

RuntimeBackends load() {
    install_native_log_hooks();  // ggml's loading lines go to the Python logger, not stderr
    RuntimeBackends out;
    out.dynamic = true;
    out.directory = module_directory();
    // backend name ("cpu", "cuda", ...) -> (variant, path, score) of each of its modules
    struct Module {
        std::string variant;
        fs::path path;
        int score;
    };
    std::map<std::string, std::vector<Module>> modules;
    std::error_code ec;
    for (const auto & entry : fs::directory_iterator(out.directory, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(PREFIX, 0) != 0 || entry.path().extension() != EXTENSION || name.rfind("libggml-base", 0) == 0) {
            continue;
        }
        const std::string stem = name.substr(std::string(PREFIX).size(), name.size() - std::string(PREFIX).size() -
                                                                            std::string(EXTENSION).size());
        const auto dash = stem.find('-');
        const std::string backend = stem.substr(0, dash);
        const std::string variant = dash == std::string::npos ? "" : stem.substr(dash + 1);
        modules[backend].push_back({variant, entry.path(), score_of(entry.path())});
    }
    const char * wanted = std::getenv("LLAMAPROC_CPU_VARIANT");
    for (auto & [backend, found] : modules) {
        std::sort(found.begin(), found.end(), [](const Module & a, const Module & b) { return a.variant < b.variant; });
        const Module * pick = nullptr;
        for (const auto & m : found) {
            if (m.score > 0 && (pick == nullptr || m.score > pick->score)) {
                pick = &m;
            }
        }
        if (backend == "cpu") {
            for (const auto & m : found) {
                out.cpu_variants.emplace_back(m.variant, std::max(m.score, 0));
            }
            if (wanted != nullptr && *wanted != '\0') {
                auto it = std::find_if(found.begin(), found.end(), [&](const Module & m) { return m.variant == wanted; });
                std::string names;
                for (const auto & m : found) {
                    names += (names.empty() ? "" : ", ") + m.variant;
                }
                if (it == found.end()) {
                    out.problem = std::string("LLAMAPROC_CPU_VARIANT=") + wanted + " is not a CPU variant of this build (" +
                                  names + ")";
                } else if (it->score <= 0) {
                    out.problem = std::string("LLAMAPROC_CPU_VARIANT=") + wanted +
                                  ": this CPU lacks instructions that variant needs";
                } else {
                    pick = &*it;
                    out.forced = true;
                }
            }
        }
        if (pick == nullptr) {
            continue;  // a GPU backend whose driver is missing scores 0
        }
        if (ggml_backend_load(pick->path.c_str()) == nullptr) {
            continue;
        }
        out.loaded.push_back(pick->path.filename().string());
        if (backend == "cpu") {
            out.cpu_variant = pick->variant;
            out.cpu_variant_path = pick->path.string();
        }
    }
    if (!out.problem.empty()) {
        log_line(LogLevel::warning, out.problem + "; using " + (out.cpu_variant.empty() ? "none" : out.cpu_variant));
    }
    if (out.cpu_variant.empty()) {
        log_line(LogLevel::error, "no CPU backend module in " + out.directory + " runs on this machine");
    }
    return out;
}
#elif defined(GGML_BACKEND_DL)
RuntimeBackends load() {
    RuntimeBackends out;
    out.dynamic = true;
    ggml_backend_load_all();  // Windows: ggml's own search (next to the executable)
    return out;
}
#else
RuntimeBackends load() { return {}; }
#endif

}  // namespace

const RuntimeBackends & load_runtime_backends() {
    static std::once_flag once;
    static RuntimeBackends result;
    std::call_once(once, [] { result = load(); });
    return result;
}

void * cpu_module_symbol(const char * name) {
#if defined(GGML_BACKEND_DL) && !defined(_WIN32)
    const RuntimeBackends & rt = load_runtime_backends();
    if (!rt.dynamic || rt.cpu_variant_path.empty()) {
        return nullptr;
    }
    // the module is loaded already (RTLD_NOLOAD): this only finds its handle
    void * handle = dlopen(rt.cpu_variant_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (handle == nullptr) {
        return nullptr;
    }
    void * symbol = dlsym(handle, name);
    dlclose(handle);  // drops the reference just taken; ggml keeps its own
    return symbol;
#else
    (void) name;
    return nullptr;
#endif
}

}  // namespace llamaproc
