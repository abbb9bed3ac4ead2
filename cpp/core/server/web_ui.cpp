#include "server/web_ui.h"

#include <chrono>
#include <mutex>

namespace llamaproc {

namespace {

std::mutex dir_mutex;
std::string dir_value;

json memory_json(const InstanceMemory & m) {
    return {{"held", m.held()}, {"model", m.model_bytes}, {"context", m.context_bytes}, {"compute", m.compute_bytes}};
}

}  // namespace

void set_web_ui_dir(const std::string & dir) {
    std::lock_guard<std::mutex> lock(dir_mutex);
    dir_value = dir;
}

std::string web_ui_dir() {
    std::lock_guard<std::mutex> lock(dir_mutex);
    return dir_value;
}

json model_status_json(const ModelStatusEntry & m) {
    json out = {
        {"id", m.id},
        {"aliases", m.aliases},
        {"state", m.state},
        {"load_progress", m.load_progress},
        {"failure", nullptr},
        {"memory", m.memory ? memory_json(*m.memory) : json(nullptr)},
        {"memory_estimate", m.memory_estimate},
        {"slots", nullptr},
        {"tokens", nullptr},
        {"active_requests", m.active_requests},
        {"loads", m.loads},
        {"last_used", m.last_used},
        {"pinned", m.pinned},
    };
    if (m.failure) {
        out["failure"] = {{"kind", error_kind_name(m.failure->kind)}, {"message", m.failure->message}};
    }
    if (m.loop) {
        const LoopMetrics & l = *m.loop;
        out["slots"] = {{"total", l.load.n_slots}, {"busy", l.load.n_processing}, {"waiting", l.load.n_deferred}};
        out["tokens"] = {{"generated", l.generated_tokens},
                         {"generation_seconds", l.generation_seconds},
                         {"prompt", l.prompt_tokens},
                         {"prompt_seconds", l.prompt_seconds},
                         {"prompt_cached", l.prompt_tokens_cached}};
    }
    return out;
}

json status_json(const std::string & kind, json models, uint64_t memory_budget,
                                   uint64_t memory_reserved, const RequestCounts & counts) {
    using O = RequestOutcome;
    const auto n = [&](O o) { return counts.by_outcome[static_cast<int>(o)]; };
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    return {
        {"object", "llamaproc.status"},
        {"kind", kind},
        {"time", now},
        {"memory_budget", memory_budget},
        {"memory_reserved", memory_reserved},
        {"requests",
         {{"ok", n(O::ok)},
          {"client_error", n(O::client_error)},
          {"server_error", n(O::server_error)},
          {"unavailable", n(O::unavailable)},
          {"stream_failed", n(O::stream_failed)}}},
        {"models", std::move(models)},
    };
}

server_http_res_ptr status_response(const json & doc) {
    auto res = std::make_unique<server_http_res>();
    res->status = 200;
    res->content_type = "application/json; charset=utf-8";
    res->data = safe_json_to_str(doc);
    return res;
}

}  // namespace llamaproc
