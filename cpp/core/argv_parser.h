// llama-server's own command-line flags, parsed into common_params without the process-level
// side effects of common_params_parse() (it calls exit() on --help, --version and some errors).
#pragma once

#include "common.h"

#include <string>
#include <vector>

namespace llamaproc {

// Parses llama-server flags (no program name) into `params`. With `use_env`, LLAMA_ARG_*
// environment variables supply defaults, as they do for llama-server; flags win over them.
// Throws Error(config) naming the flag for unknown flags and bad values, and for flags that
// only make sense for a separate process (help, version, model downloads, router mode).
common_params parse_server_args(const std::vector<std::string> & args, bool use_env);

// The help text of every llama-server flag, as llama-server --help prints it.
std::string server_flags_help();

}  // namespace llamaproc
