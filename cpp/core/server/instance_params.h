// What llama-server does to its parsed flags before it builds a server (tools/server/server.cpp),
// shared by the single-model server and the model pool.
#pragma once

#include "common.h"

#include <initializer_list>
#include <string>
#include <vector>

namespace llamaproc {

// One per physical core but one: the threads of an RPC worker whose flags name none. (A
// server whose flags name none is governed: cpu_governor.h.)
int default_threads();

// True when `args` (and, with use_env, the environment) name no thread count (-t, -tb): the
// instance's threads then follow the CPU governor (cpu_governor.h).
bool threads_governed(const std::vector<std::string> & args, bool use_env);

// True if `args` hold one of `names` (also as --name=value).
bool flag_given(const std::vector<std::string> & args, std::initializer_list<const char *> names);

bool is_loopback(const std::string & host);

// Throws Error(config) for a listen address beyond loopback without an API key (unless
// allowed), and for flags an embedded server does not run (the web UI's CORS proxy).
void check_front_params(const common_params & params, bool allow_unauthenticated_remote);

// Defaults an embedded model instance gets where `args` (the flags `params` were parsed from)
// name none: parallel slots, client timeouts, threads (the governor's most), speculation
// (draft_policy.h), alias; and fit_params skipped when it cannot change anything.
void prepare_instance_params(common_params & params, const std::vector<std::string> & args, bool use_env);

}  // namespace llamaproc
