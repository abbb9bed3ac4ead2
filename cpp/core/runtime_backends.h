// Backends loaded at run time: a portable build (-DLLAMAPROC_PORTABLE=ON) ships ggml's backends
// as modules next to _core, one CPU backend per instruction-set level (libggml-cpu-x64.so ...
// libggml-cpu-sapphirerapids.so), and loads them when the extension is imported: per backend,
// the file whose ggml_backend_score() is highest on this machine (ggml's own rule), or for the
// CPU the variant that LLAMAPROC_CPU_VARIANT names. A native build links its backends in and
// loads nothing.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace llamaproc {

struct RuntimeBackends {
    bool dynamic = false;           // false: the backends are linked into _core
    std::string directory;          // where the modules are
    std::string cpu_variant;        // the CPU variant in use ("sapphirerapids"); "" if not dynamic
    std::string cpu_variant_path;
    bool forced = false;            // chosen by LLAMAPROC_CPU_VARIANT
    std::vector<std::pair<std::string, int>> cpu_variants;  // each shipped variant, its score here (0: cannot run)
    std::vector<std::string> loaded;  // every module loaded
    std::string problem;            // why LLAMAPROC_CPU_VARIANT was not honoured; "" if it was (or unset)
};

// Loads the modules once (later calls return the first result). Never throws: a variant that
// cannot be honoured is reported in `problem` (and logged) and the best one is used instead.
const RuntimeBackends & load_runtime_backends();

// A function the loaded CPU module exports (for what its backend registry does not offer);
// nullptr in a native build (call it directly there) or when it has none of that name.
void * cpu_module_symbol(const char * name);

}  // namespace llamaproc
