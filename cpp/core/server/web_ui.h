// What the web pages (the chat page at / and the dashboard, src/llamaproc/webui/) need from the
// core: where their files are, and the status document they poll.
//
// The pages are plain files served by llama.cpp's own static-file mount (llama-server's --path):
// an HTTP front whose flags enable the UI (the default; --no-webui turns it off) and name no
// --path of their own serves the package's directory, set once per process by the Python layer.
//
// GET /llamaproc/status answers one JSON document for a single server and for a pool
// (docs/webui.md lists its fields): each model's state, load progress, failure, memory, slots
// and token counters, the memory budget and the request counts. Counters are cumulative: the
// dashboard derives its rates from two polls.
#pragma once

#include "server/http_front.h"
#include "server/model_instance.h"

#include "server-common.h"

#include <optional>
#include <string>

namespace llamaproc {

// The directory of the web pages ("" = none: the front serves no pages).
void set_web_ui_dir(const std::string & dir);
std::string web_ui_dir();

// How long a status poll waits for a model's inference loop to answer (it answers between
// decode steps); a busy loop that misses it reports "slots": null for that poll.
constexpr double STATUS_LOOP_TIMEOUT_S = 0.25;

// One model's entry of the status document. `state` is "loaded", "loading", "unloaded",
// "failed" or "stopping".
struct ModelStatusEntry {
    std::string id;
    std::string state;
    float load_progress = 0;
    std::optional<Failure> failure;
    std::optional<InstanceMemory> memory;
    uint64_t memory_estimate = 0;  // bytes a load reserves (0 = not judged)
    std::optional<LoopMetrics> loop;
    int active_requests = 0;
    uint64_t loads = 0;
    double last_used = 0;  // Unix seconds, 0 = never
    bool pinned = false;
    std::vector<std::string> aliases;
};

json model_status_json(const ModelStatusEntry & m);

// The whole document. `kind` is "server" or "pool"; `memory_budget` 0 = none.
json status_json(const std::string & kind, json models, uint64_t memory_budget,
                                   uint64_t memory_reserved, const RequestCounts & counts);

// The route's answer: the document as JSON text.
server_http_res_ptr status_response(const json & doc);

}  // namespace llamaproc
