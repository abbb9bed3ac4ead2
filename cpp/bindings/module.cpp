// llamaproc._core: llama.cpp's server, in-process. The public API is the llamaproc package.
#include "bindings.h"

#include "runtime_backends.h"

NB_MODULE(_core, m) {
    m.doc() = "Native core of llamaproc: llama.cpp's HTTP server on native threads (private API).";
    llamaproc::load_runtime_backends();  // a portable build's backend modules, before anything uses ggml
    init_errors(m);
    init_logging(m);
    init_direct(m);
    init_server(m);
    init_pool(m);
    init_rpc(m);
    init_info(m);
    init_quant_types(m);
    init_model_file(m);
    init_memory(m);
}
