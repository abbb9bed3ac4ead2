// The models a pool can serve, read from the same sources as llama-server's router mode
// (tools/server/server-models.cpp): a models directory, an INI preset file, and models given
// through the API. Local files only: cache and download sources are not read.
#pragma once

#include "common.h"

#include <cstdint>
#include <string>
#include <vector>

namespace llamaproc {

struct PoolModelConfig {
    std::string name;
    std::vector<std::string> args;     // llama-server flags for this model, with -m (no program name)
    std::vector<std::string> aliases;  // other names requests may use
    std::vector<std::string> tags;     // informational, listed by GET /models
    std::string source = "api";        // "preset", "models_dir", "cache" or "api"
    bool pinned = false;               // never unloaded to make room or when idle
    bool load_on_startup = false;
    double stop_timeout_s = 10;        // how long an unload lets requests finish (preset key stop-timeout)
    std::string preset_ini;            // the model's section, as GET /models shows it
    bool hidden = false;               // a cache model a preset deduplicates: routable, not listed
};

// Models from llama.cpp's local model cache (with `read_cache`; listed offline, never
// downloaded), `models_dir` and `models_preset` (either may be empty) as llama-server's router
// reads them, followed by `given`. A preset's hf-repo is resolved to its file in the cache. The router's own flags (`router_args`, without host, port,
// API key, SSL and models-*) are merged over each preset and directory model (they win, as in
// llama-server); for a `given` model its own flags win. Throws Error(config) naming the file
// for a missing directory, an unreadable preset or an unknown key, and for duplicate names
// or aliases.
std::vector<PoolModelConfig> collect_pool_models(const std::vector<std::string> & router_args,
                                                 const std::string & models_dir, const std::string & models_preset,
                                                 const std::vector<PoolModelConfig> & given, bool read_cache = false);

// Throws Error(config) if `model` (name or alias) clashes with a name or alias in `models`.
void check_unique_names(const std::vector<PoolModelConfig> & models, const PoolModelConfig & model);

}  // namespace llamaproc
