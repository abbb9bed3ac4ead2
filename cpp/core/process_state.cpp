#include "process_state.h"

#include "native_log.h"

#include "llama.h"

#include <clocale>
#include <mutex>

namespace llamaproc {

namespace {
std::mutex g_mutex;
int g_users = 0;
}  // namespace

ProcessRuntime::ProcessRuntime() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_users++ == 0) {
        install_native_log_hooks();
        llama_backend_init();
    }
}

ProcessRuntime::~ProcessRuntime() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (--g_users == 0) {
        llama_backend_free();
    }
}

int ProcessRuntime::users() {
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_users;
}

}  // namespace llamaproc
