#include "argv_parser.h"

#include "errors.h"

#include "arg.h"
#include "chat.h"

#include <algorithm>
#include <set>
#include <unordered_map>

namespace llamaproc {

namespace {

// Flags whose handlers print something and exit(), or that list things for a terminal.
const std::set<std::string> & process_only_flags() {
    static const std::set<std::string> flags = {
        "-h", "--help", "--usage", "--version", "-cl", "--cache-list",
        "--completion-bash", "--list-devices",
    };
    return flags;
}

[[noreturn]] void config_error(const std::string & message) {
    throw Error(ErrorKind::config, message);
}

bool parse_bool(const std::string & value) {
    if (common_arg_utils::is_truthy(value)) {
        return true;
    }
    if (common_arg_utils::is_falsey(value)) {
        return false;
    }
    throw std::invalid_argument("invalid boolean value '" + value + "'");
}

void apply_env(common_params_context & ctx) {
    for (auto & opt : ctx.options) {
        std::string value;
        if (!opt.get_value_from_env(value)) {
            continue;
        }
        try {
            if (opt.handler_void && common_arg_utils::is_truthy(value)) {
                opt.handler_void(ctx.params);
            } else if (opt.handler_int) {
                opt.handler_int(ctx.params, std::stoi(value));
            } else if (opt.handler_bool) {
                opt.handler_bool(ctx.params, parse_bool(value));
            } else if (opt.handler_string) {
                opt.handler_string(ctx.params, value);
            }
        } catch (const std::exception & e) {
            config_error(std::string("environment variable ") + opt.env + "='" + value + "': " + e.what());
        }
    }
}

void apply_flags(common_params_context & ctx, const std::vector<std::string> & args) {
    std::unordered_map<std::string, std::pair<common_arg *, bool>> by_flag;
    for (auto & opt : ctx.options) {
        for (const char * a : opt.args) {
            by_flag[a] = {&opt, true};
        }
        for (const char * a : opt.args_neg) {
            by_flag[a] = {&opt, false};
        }
    }
    for (size_t i = 0; i < args.size(); ++i) {
        std::string flag = args[i];
        if (flag.rfind("--", 0) == 0) {
            std::replace(flag.begin(), flag.end(), '_', '-');
        }
        if (process_only_flags().count(flag)) {
            config_error("flag '" + flag + "' only makes sense for a separate llama-server process; "
                         "`python -m llamaproc serve --help` and `python -m llamaproc info` show the same information");
        }
        auto it = by_flag.find(flag);
        if (it == by_flag.end()) {
            config_error("unknown llama-server flag '" + flag + "'");
        }
        common_arg & opt = *it->second.first;
        auto value_at = [&](size_t j) -> const std::string & {
            if (j >= args.size()) {
                config_error("flag '" + flag + "' expects a value");
            }
            return args[j];
        };
        try {
            if (opt.handler_void) {
                opt.handler_void(ctx.params);
            } else if (opt.handler_bool) {
                opt.handler_bool(ctx.params, it->second.second);
            } else if (opt.handler_int) {
                opt.handler_int(ctx.params, std::stoi(value_at(++i)));
            } else if (opt.handler_string) {
                opt.handler_string(ctx.params, value_at(++i));
            } else if (opt.handler_str_str) {
                const std::string first = value_at(++i);
                opt.handler_str_str(ctx.params, first, value_at(++i));
            }
        } catch (const Error &) {
            throw;
        } catch (const std::exception & e) {
            config_error("flag '" + flag + "': " + e.what());
        }
    }
}

// What common_params_parse() does after the flags, minus model downloads and exit().
void finish(common_params & params) {
    postprocess_cpu_params(params.cpuparams, nullptr);
    postprocess_cpu_params(params.cpuparams_batch, &params.cpuparams);
    postprocess_cpu_params(params.speculative.draft.cpuparams, &params.cpuparams);
    postprocess_cpu_params(params.speculative.draft.cpuparams_batch, &params.cpuparams_batch);

    if (params.mmproj_use_gpu && params.mmproj_device == nullptr && !params.devices.empty()) {
        params.mmproj_device = params.devices.front();
        params.mmproj_use_gpu = params.mmproj_device != nullptr;
    }
    if (!params.kv_overrides.empty()) {
        params.kv_overrides.emplace_back();
        params.kv_overrides.back().key[0] = 0;
    }
    const bool mcp_enabled = !params.mcp_servers_config.empty() || !params.mcp_servers_json.empty();
    if ((!params.server_tools.empty() || mcp_enabled) && !params.cors_origins_explicit) {
        params.cors_origins = "localhost";
    }
    const size_t n_overrides = llama_max_tensor_buft_overrides();
    while (params.tensor_buft_overrides.size() < n_overrides) {
        params.tensor_buft_overrides.push_back({nullptr, nullptr});
    }
    if (!params.speculative.draft.tensor_buft_overrides.empty()) {
        params.speculative.draft.tensor_buft_overrides.push_back({nullptr, nullptr});
    }
    if (!params.chat_template.empty() && !common_chat_verify_template(params.chat_template, params.use_jinja)) {
        config_error("the chat template given is not supported" +
                     std::string(params.use_jinja ? "" : " (without --jinja only common templates are)"));
    }
    if (!params.default_template_kwargs.count("preserve_reasoning")) {
        params.default_template_kwargs["preserve_reasoning"] = "true";
    }
}

void reject_process_features(const common_params & params) {
    if (!params.model.hf_repo.empty() || !params.model.url.empty() || !params.model.docker_repo.empty()) {
        config_error("llamaproc loads local GGUF files only: download the model first and pass its path "
                     "(model download flags such as -hf, -mu and -dr are not supported)");
    }
    if (params.model.path.empty()) {
        config_error("no model given: pass the path of a .gguf file (llama-server's router mode, "
                     "which runs models as child processes, is not available in-process)");
    }
}

}  // namespace

common_params parse_server_args(const std::vector<std::string> & args, bool use_env) {
    common_params params;
    common_params_context ctx = common_params_parser_init(params, LLAMA_EXAMPLE_SERVER);
    if (use_env) {
        apply_env(ctx);
    }
    apply_flags(ctx, args);
    finish(params);
    reject_process_features(params);
    return params;
}

std::string server_flags_help() {
    common_params params;
    common_params_context ctx = common_params_parser_init(params, LLAMA_EXAMPLE_SERVER);
    std::string out;
    for (auto & opt : ctx.options) {
        bool process_only = false;
        for (const char * a : opt.args) {
            process_only |= process_only_flags().count(a) > 0;
        }
        if (!process_only && !opt.is_preset_only) {
            out += opt.to_string();
        }
    }
    return out;
}

}  // namespace llamaproc
