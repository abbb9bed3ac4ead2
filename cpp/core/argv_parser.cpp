#include "argv_parser.h"

#include "errors.h"
#include "rpc/rpc_devices.h"

#include "arg.h"
#include "chat.h"

#include <algorithm>
#include <stdexcept>
#include <cstdlib>
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

// Options whose handlers act on process-wide state (the common_log singleton and threshold,
// the ggml backend registry, the process priority, the file system at parse time) or that
// only a process can honour (NUMA placement: llama_numa_init() is never called in-process).
// Many servers share one process, so these are refused, here as a backstop of the same
// refusal in llamaproc/flags.py (keep the reasons in step), and for their LLAMA_ARG_*
// variables too. The verbosity options are not refused by the Python layer: it maps them to
// the `llamaproc` logger's level and removes them (and reads LLAMA_ARG_LOG_VERBOSITY) itself.
struct ProcessWideOption {
    const char * flag;  // any spelling of the option in llama.cpp's table
    const char * reason;
    bool mapped_by_python;
};

const std::vector<ProcessWideOption> & process_wide_options() {
    static const char * log_format =
        "the native log goes to the 'llamaproc' Python logger, not to llama.cpp's process-wide printer; "
        "format it with a logging.Formatter instead";
    static const char * verbosity =
        "llama.cpp's log threshold is process-wide; llamaproc maps this flag to the 'llamaproc' Python logger's "
        "level and removes it before llama.cpp parses the flags";
    static const std::vector<ProcessWideOption> options = {
        {"--verbose", verbosity, true},
        {"--verbosity", verbosity, true},
        {"--log-file", "the native log goes to the 'llamaproc' Python logger; add a logging.FileHandler to it instead",
         false},
        {"--log-disable",
         "the native log goes to the 'llamaproc' Python logger; raise that logger's level to silence it instead",
         false},
        {"--log-colors", log_format, false},
        {"--log-prefix", log_format, false},
        {"--log-timestamps", log_format, false},
        {"--log-jsonl", log_format, false},
        {"--log-prompts-dir",
         "it creates directories as soon as the flags are parsed and writes every prompt to disk "
         "(a llama-server debugging aid); log requests in your application instead",
         false},
        {"--numa",
         "NUMA placement is a process-wide setting a library must not change for its host; "
         "set it on the Python process instead (numactl)",
         false},
        {"--prio",
         "process priority is a process-wide setting a library must not change for its host; "
         "set it on the Python process instead (os.nice)",
         false},
    };
    return options;
}

bool is_option(const common_arg & opt, const char * flag) {
    for (const char * a : opt.args) {
        if (std::string(a) == flag) {
            return true;
        }
    }
    return false;
}

// llama.cpp's --rpc handler registers the workers' devices for every server in the process;
// this one attaches them for the server being parsed (rpc/rpc_devices.h)
void attach_rpc(std::vector<ggml_backend_dev_t> & rpc_devices, const std::string & servers) {
    auto attached = attach_rpc_servers(servers);
    rpc_devices.insert(rpc_devices.end(), attached.begin(), attached.end());
}

const ProcessWideOption * process_wide(const common_arg & opt) {
    for (const auto & pw : process_wide_options()) {
        if (is_option(opt, pw.flag)) {
            return &pw;
        }
    }
    return nullptr;
}

// The variable that supplied an option's value (LLAMA_ARG_NO_* for a negated boolean).
std::string env_name_in_effect(const common_arg & opt) {
    if (!opt.args_neg.empty()) {
        std::string neg = opt.env;
        const std::string prefix = "LLAMA_ARG_";
        if (neg.rfind(prefix, 0) == 0) {
            neg = "LLAMA_ARG_NO_" + neg.substr(prefix.size());
            if (std::getenv(neg.c_str()) != nullptr) {
                return neg;
            }
        }
    }
    return opt.env;
}

[[noreturn]] void config_error(const std::string & message) {
    throw Error(ErrorKind::config, message);
}

// What was wrong with a flag's `value`: std::stoi/stof/... name only themselves ("stof").
std::string value_problem(const std::exception & e, const std::string & value) {
    const std::string what = e.what();
    if (what.rfind("sto", 0) != 0) {
        return what;
    }
    if (dynamic_cast<const std::out_of_range *>(&e) != nullptr) {
        return "'" + value + "' is out of range";
    }
    return "expects a number, got '" + value + "'";
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

void apply_env(common_params_context & ctx, std::vector<ggml_backend_dev_t> & rpc_devices) {
    for (auto & opt : ctx.options) {
        std::string value;
        if (!opt.get_value_from_env(value)) {
            continue;
        }
        if (const ProcessWideOption * pw = process_wide(opt)) {
            if (pw->mapped_by_python) {
                continue;  // LLAMA_ARG_LOG_VERBOSITY: llamaproc/flags.py maps it to the logger's level
            }
            config_error("unset the environment variable " + env_name_in_effect(opt) + " (" + pw->flag +
                         "): " + pw->reason);
        }
        if (is_option(opt, "--rpc")) {
            attach_rpc(rpc_devices, value);
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
            config_error(std::string("environment variable ") + opt.env + ": " + value_problem(e, value));
        }
    }
}

void apply_flags(common_params_context & ctx, const std::vector<std::string> & args,
                 std::vector<ggml_backend_dev_t> & rpc_devices) {
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
        if (const ProcessWideOption * pw = process_wide(opt)) {
            config_error(flag + ": " + pw->reason);
        }
        auto value_at = [&](size_t j) -> const std::string & {
            if (j >= args.size()) {
                config_error("flag '" + flag + "' expects a value");
            }
            return args[j];
        };
        if (is_option(opt, "--rpc")) {
            attach_rpc(rpc_devices, value_at(++i));
            continue;
        }
        std::string value;  // what the flag was given, for the error message
        try {
            if (opt.handler_void) {
                opt.handler_void(ctx.params);
            } else if (opt.handler_bool) {
                opt.handler_bool(ctx.params, it->second.second);
            } else if (opt.handler_int) {
                value = value_at(++i);
                opt.handler_int(ctx.params, std::stoi(value));
            } else if (opt.handler_string) {
                value = value_at(++i);
                opt.handler_string(ctx.params, value);
            } else if (opt.handler_str_str) {
                const std::string first = value_at(++i);
                value = value_at(++i);
                opt.handler_str_str(ctx.params, first, value);
            }
        } catch (const Error &) {
            throw;
        } catch (const std::exception & e) {
            config_error("flag '" + flag + "': " + value_problem(e, value));
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

void reject_process_features(const common_params & params, ArgsFor what) {
    if (!params.model.hf_repo.empty() || !params.model.url.empty() || !params.model.docker_repo.empty()) {
        config_error("llamaproc loads local GGUF files only: download the model first and pass its path "
                     "(model download flags such as -hf, -mu and -dr are not supported)");
    }
    if (params.model.path.empty() && what == ArgsFor::server) {
        config_error("no model given: pass the path of a .gguf file (-m), or serve several models with a model "
                     "pool (llama-server's router mode: --models-dir or --models-preset; llamaproc.ModelPool)");
    }
}

}  // namespace

common_params parse_server_args(const std::vector<std::string> & args, bool use_env, ArgsFor what) {
    common_params params;
    common_params_context ctx = common_params_parser_init(params, LLAMA_EXAMPLE_SERVER);
    std::vector<ggml_backend_dev_t> rpc_devices;
    if (use_env) {
        apply_env(ctx, rpc_devices);
    }
    apply_flags(ctx, args, rpc_devices);
    choose_instance_devices(params.devices, rpc_devices);
    finish(params);
    reject_process_features(params, what);
    return params;
}

std::string server_flags_help() {
    common_params params;
    common_params_context ctx = common_params_parser_init(params, LLAMA_EXAMPLE_SERVER);
    std::string out;
    for (auto & opt : ctx.options) {
        bool process_only = process_wide(opt) != nullptr && !process_wide(opt)->mapped_by_python;
        for (const char * a : opt.args) {
            process_only |= process_only_flags().count(a) > 0;
        }
        if (!process_only && !opt.is_preset_only) {
            out += opt.to_string();
        }
    }
    return out;
}

std::map<std::string, int> server_flag_values() {
    common_params params;
    common_params_context ctx = common_params_parser_init(params, LLAMA_EXAMPLE_SERVER);
    std::map<std::string, int> out;
    for (auto & opt : ctx.options) {
        const int n = opt.handler_str_str ? 2 : (opt.handler_int || opt.handler_string) ? 1 : 0;
        for (const char * a : opt.args) {
            out[a] = n;
        }
        for (const char * a : opt.args_neg) {
            out[a] = 0;  // --no-X never takes a value
        }
    }
    return out;
}

}  // namespace llamaproc
