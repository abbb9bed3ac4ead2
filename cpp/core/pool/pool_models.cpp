#include "pool/pool_models.h"

#include "errors.h"
#include "native_log.h"

#include "arg.h"
#include "download.h"
#include "preset.h"

#include <map>
#include <set>

namespace llamaproc {

namespace {

[[noreturn]] void config_error(const std::string & message) {
    throw Error(ErrorKind::config, message);
}

// What the router owns: a model's section may not set these (llama-server strips them too).
void unset_router_options(common_preset & preset) {
    for (const char * env : {"LLAMA_ARG_HOST", "LLAMA_ARG_PORT", "LLAMA_ARG_SSL_KEY_FILE", "LLAMA_ARG_SSL_CERT_FILE",
                             "LLAMA_API_KEY", "LLAMA_ARG_API_KEY_FILE", "LLAMA_ARG_MODELS_DIR", "LLAMA_ARG_MODELS_MAX",
                             "LLAMA_ARG_MODELS_PRESET", "LLAMA_ARG_MODELS_AUTOLOAD"}) {
        preset.unset_option(env);
    }
}

std::vector<std::string> split_list(const std::string & text) {
    std::vector<std::string> out;
    for (auto & item : string_split<std::string>(text, ',')) {
        item = string_strip(item);
        if (!item.empty()) {
            out.push_back(item);
        }
    }
    return out;
}

common_preset preset_from_args(const common_preset_context & ctx, const std::vector<std::string> & args,
                               const std::string & what) {
    std::vector<std::string> argv_store = {"llama-server"};
    argv_store.insert(argv_store.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (auto & a : argv_store) {
        argv.push_back(a.data());
    }
    try {
        return ctx.load_from_args(static_cast<int>(argv.size()), argv.data());
    } catch (const std::exception & e) {
        config_error(what + ": " + e.what());
    }
}

// A model named by Hugging Face repo (-hf, a cache model) is served from the local cache:
// its file is found offline and named with -m (llamaproc never downloads). The path, or "".
std::string resolve_from_cache(common_preset & preset, const common_preset_context & ctx) {
    std::string repo;
    if (!preset.get_option("LLAMA_ARG_HF_REPO", repo) || repo.empty()) {
        return "";
    }
    std::string file;
    preset.get_option("LLAMA_ARG_HF_FILE", file);
    const std::string path = common_download_resolve_path(repo, file);
    if (path.empty()) {
        config_error("model '" + preset.name + "': " + repo + " is not in the local model cache (" +
                     "llamaproc serves local files and does not download)");
    }
    preset.unset_option("LLAMA_ARG_HF_REPO");
    preset.unset_option("LLAMA_ARG_HF_FILE");
    preset.set_option(ctx, "LLAMA_ARG_MODEL", path);
    return path;
}

// Renders one model: name, aliases and tags read from its preset, router options removed,
// the instance alias set to the name (as llama-server's router does for its children).
PoolModelConfig render(const common_preset_context & ctx, common_preset preset, const std::string & source) {
    PoolModelConfig out;
    out.name = preset.name;
    out.source = source;
    std::string value;
    if (preset.get_option("LLAMA_ARG_ALIAS", value)) {
        out.aliases = split_list(value);
    }
    if (preset.get_option("LLAMA_ARG_TAGS", value)) {
        out.tags = split_list(value);
    }
    if (preset.get_option(COMMON_ARG_PRESET_LOAD_ON_STARTUP, value)) {
        out.load_on_startup = common_arg_utils::is_truthy(value);
    }
    if (preset.get_option(COMMON_ARG_PRESET_STOP_TIMEOUT, value)) {
        try {
            out.stop_timeout_s = std::stod(value);
        } catch (const std::exception &) {
            config_error("model '" + out.name + "': stop-timeout must be a number of seconds, got '" + value + "'");
        }
    }
    unset_router_options(preset);
    preset.unset_option("LLAMA_ARG_TAGS");
    preset.set_option(ctx, "LLAMA_ARG_ALIAS", out.name);
    common_preset shown = preset;
    shown.unset_option("LLAMA_ARG_ALIAS");
    out.preset_ini = shown.to_ini();
    try {
        out.args = preset.to_args();
    } catch (const std::exception & e) {
        config_error("model '" + out.name + "': " + e.what());
    }
    return out;
}

}  // namespace

void check_unique_names(const std::vector<PoolModelConfig> & models, const PoolModelConfig & model) {
    std::map<std::string, std::string> owner;  // name or alias -> model
    for (const auto & m : models) {
        owner[m.name] = m.name;
        for (const auto & a : m.aliases) {
            owner[a] = m.name;
        }
    }
    if (model.name.empty()) {
        config_error("a model needs a non-empty name");
    }
    if (auto it = owner.find(model.name); it != owner.end()) {
        config_error(it->second == model.name ? "model '" + model.name + "' appears more than once"
                                              : "model name '" + model.name + "' conflicts with an alias of model '" +
                                                    it->second + "'");
    }
    std::set<std::string> own;
    for (const auto & a : model.aliases) {
        if (a == model.name || !own.insert(a).second) {
            continue;
        }
        if (auto it = owner.find(a); it != owner.end()) {
            config_error("alias '" + a + "' of model '" + model.name + "' conflicts with " +
                         (it->first == it->second ? "the model of that name" : "an alias of model '" + it->second + "'"));
        }
    }
}

std::vector<PoolModelConfig> collect_pool_models(const std::vector<std::string> & router_args,
                                                 const std::string & models_dir, const std::string & models_preset,
                                                 const std::vector<PoolModelConfig> & given, bool read_cache) {
    const common_preset_context ctx(LLAMA_EXAMPLE_SERVER);
    common_preset base = preset_from_args(ctx, router_args, "router flags");
    unset_router_options(base);
    for (const char * env : {"LLAMA_ARG_MODEL", "LLAMA_ARG_ALIAS", "LLAMA_ARG_TAGS", "LLAMA_ARG_MMPROJ"}) {
        base.unset_option(env);
    }

    common_presets from_dir;
    if (!models_dir.empty()) {
        try {
            from_dir = ctx.load_from_models_dir(models_dir);
        } catch (const std::exception & e) {
            config_error("--models-dir " + models_dir + ": not a directory (" + string_strip(e.what()) + ")");
        }
    }
    common_preset global;
    common_presets from_ini;
    if (!models_preset.empty()) {
        try {
            from_ini = ctx.load_from_ini(models_preset, global);
        } catch (const std::exception & e) {
            config_error("--models-preset " + models_preset + ": " + string_strip(e.what()));
        }
    }
    // llama-server's order: [*] under each model, the INI section over a directory model of
    // the same name, the router's flags over everything
    common_presets from_cache;
    if (read_cache) {
        try {
            from_cache = ctx.load_from_cache();
        } catch (const std::exception & e) {
            log_line(LogLevel::warning, std::string("model pool: the local model cache cannot be read: ") + e.what());
        }
    }
    // llama-server's order: [*] under each model, a cache model under a directory model of the
    // same name, the INI section over both, the router's flags over everything
    from_cache = ctx.cascade(global, from_cache);
    from_dir = ctx.cascade(global, from_dir);
    from_ini = ctx.cascade(global, from_ini);
    // the files of presets that ask for dedup-cache-models (the model and its draft, as
    // llama-server hides both): cache twins of them are not listed
    std::set<std::string> dedup_paths;
    const auto add_hf_path = [&dedup_paths](const common_preset & preset, const char * repo_key, const char * file_key) {
        std::string repo, file;
        if (preset.get_option(repo_key, repo) && !repo.empty()) {
            preset.get_option(file_key, file);
            if (std::string path = common_download_resolve_path(repo, file); !path.empty()) {
                dedup_paths.insert(path);
            }
        }
    };
    for (auto & [name, preset] : from_ini) {
        std::string dedup;
        if (preset.get_option(COMMON_ARG_PRESET_DEDUP_CACHE_MODELS, dedup) && common_arg_utils::is_truthy(dedup)) {
            add_hf_path(preset, "LLAMA_ARG_HF_REPO", "LLAMA_ARG_HF_FILE");
            add_hf_path(preset, "LLAMA_ARG_SPEC_DRAFT_HF_REPO", "LLAMA_ARG_SPEC_DRAFT_MODEL");
        }
    }
    std::map<std::string, std::pair<common_preset, std::string>> merged;
    std::set<std::string> hidden;
    for (auto & [name, preset] : from_cache) {
        const std::string path = common_download_resolve_path(name);
        if (path.empty()) {
            continue;
        }
        if (dedup_paths.count(path)) {
            hidden.insert(name);
        }
        merged[name] = {preset, "cache"};
    }
    for (auto & [name, preset] : from_dir) {
        merged[name] = {preset, "models_dir"};
    }
    for (auto & [name, preset] : from_ini) {
        auto it = merged.find(name);
        if (it != merged.end()) {
            it->second.first.merge(preset);
            it->second.second = "preset";
        } else {
            merged[name] = {preset, "preset"};
        }
    }
    std::vector<PoolModelConfig> out;
    for (auto & [name, entry] : merged) {
        entry.first.merge(base);
        entry.first.name = name;
        try {
            resolve_from_cache(entry.first, ctx);
        } catch (const Error &) {
            // not in the cache: the model keeps its hf-repo and is listed as failed with the reason
        }
        PoolModelConfig model = render(ctx, entry.first, entry.second);
        model.hidden = hidden.count(name) > 0;
        check_unique_names(out, model);
        out.push_back(std::move(model));
    }
    for (const auto & g : given) {
        common_preset preset = base;
        preset.merge(preset_from_args(ctx, g.args, "model '" + g.name + "'"));
        preset.name = g.name;
        PoolModelConfig model = render(ctx, preset, g.source);
        for (const auto & a : g.aliases) {
            model.aliases.push_back(a);
        }
        for (const auto & t : g.tags) {
            model.tags.push_back(t);
        }
        model.pinned = g.pinned;
        model.load_on_startup = model.load_on_startup || g.load_on_startup;
        check_unique_names(out, model);
        out.push_back(std::move(model));
    }
    return out;
}

}  // namespace llamaproc
