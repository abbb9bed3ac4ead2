// llama-server's own command-line flags, parsed into common_params without the process-level
// side effects of common_params_parse() (it calls exit() on --help, --version and some errors).
#pragma once

#include "common.h"

#include <map>
#include <string>
#include <vector>

namespace llamaproc {

// Parses llama-server flags (no program name) into `params`. With `use_env`, LLAMA_ARG_*
// environment variables supply defaults, as they do for llama-server; flags win over them.
// Throws Error(config) naming the flag for unknown flags and bad values, and for flags that
// only make sense for a separate process (help, version, model downloads, router mode) or act
// on process-wide state (log settings, --numa, --prio; also as LLAMA_ARG_* variables). --rpc
// attaches its workers to this server only (rpc/rpc_devices.h).
// With ArgsFor::router the flags are a model pool's (llama-server's router mode): no model.
enum class ArgsFor { server, router };
common_params parse_server_args(const std::vector<std::string> & args, bool use_env, ArgsFor what = ArgsFor::server);

// The help text of every llama-server flag, as llama-server --help prints it.
std::string server_flags_help();

// How many values each llama-server flag spelling takes (0, 1 or 2), so that a caller can walk
// a command line without mistaking a value for a flag.
std::map<std::string, int> server_flag_values();

}  // namespace llamaproc
