// Calling llama.cpp's route handlers (server_routes) safely, for every caller: the HTTP front
// and direct calls from Python. One place decides what a handler may see and what its
// failures become.
#pragma once

#include "server/faults.h"
#include "server/model_instance.h"

#include "server-http.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace llamaproc {

enum class RequestOutcome { ok, client_error, server_error, unavailable, stream_failed, count_ };

// Requests answered, by outcome: one per HTTP front, shared with the direct calls it serves
// (which may outlive the front). Health probes (/health) are not requests: nobody counts them.
class RequestCounter {
public:
    static constexpr int n_outcomes = static_cast<int>(RequestOutcome::count_);
    void count(RequestOutcome outcome) { counts_[static_cast<int>(outcome)].fetch_add(1, std::memory_order_relaxed); }
    std::array<uint64_t, n_outcomes> snapshot() const {
        std::array<uint64_t, n_outcomes> out{};
        for (int i = 0; i < n_outcomes; ++i) {
            out[i] = counts_[i].load(std::memory_order_relaxed);
        }
        return out;
    }

private:
    std::array<std::atomic<uint64_t>, n_outcomes> counts_{};
};

// True for the liveness probe's paths (answered, never counted as requests).
inline bool is_health_probe(const std::string & path) { return path == "/health" || path == "/v1/health"; }
// Probes that watch the server (health checks, the dashboard's status polls) are not requests:
// nobody counts them, so that watching does not change the request rates it shows.
inline bool is_monitoring_probe(const std::string & path) {
    return is_health_probe(path) || path == "/llamaproc/status";
}

using route_member = server_http_context::handler_t server_routes::*;

struct InstanceRoute {
    bool post;
    const char * path;
    route_member member;
};

// llama-server's routes (tools/server/server.cpp) that a model instance answers.
const std::vector<InstanceRoute> & instance_routes();
// The handler for `path` ("/v1/chat/completions", ...), or nullptr.
route_member find_instance_route(bool post, const std::string & path);

// Routes whose handlers answer on the calling thread (tokenizer, chat template) without
// posting a task to the inference loop.
bool answers_without_the_loop(const std::string & path);

// Holds an instance unfreed while a handler or its response uses it (see ModelInstance::acquire()).
struct Lease {
    std::shared_ptr<ModelInstance> inst;
    explicit Lease(std::shared_ptr<ModelInstance> i) : inst(std::move(i)) {}
    Lease(const Lease &) = delete;
    Lease & operator=(const Lease &) = delete;
    ~Lease() {
        if (inst) {
            inst->release();
        }
    }
};

// A request as the route handlers see it. should_stop() is also true once `stopping` or
// `down` is set, so that waiting handlers and streams let go. The X-Conversation-Id header is
// not passed on: llama.cpp's own resumable streams (one table per process, whose producers
// ignore a stopping server) stay off; the front keeps its own (stream_sessions.h).
struct GuardedRequest {
    std::function<bool()> should_stop;
    server_http_req req;

    // `let_go` replaces the client's disconnect as the request's own reason to stop (a
    // resumable stream outlives its client and stops when its session is cancelled).
    GuardedRequest(const server_http_req & original, std::shared_ptr<std::atomic<bool>> stopping,
                   std::shared_ptr<std::atomic<bool>> down, std::function<bool()> let_go = nullptr);
    // A request made in-process: POST `path` with `body`; `cancelled` also stops it.
    GuardedRequest(const std::string & path, std::string body, std::shared_ptr<std::atomic<bool>> cancelled,
                   std::shared_ptr<std::atomic<bool>> stopping, std::shared_ptr<std::atomic<bool>> down);
};

// Routes that generate text and can stream it resumably under an X-Conversation-Id.
bool streams_resumably(const std::string & path);

server_http_res_ptr error_response(const std::string & message, int error_type_value);
std::string error_chunk(const std::string & message);
std::string unavailable_reason(const ModelInstance & inst);
RequestOutcome outcome_of(int status);

// Calls `member` of the instance's routes. Never throws: exceptions become llama.cpp's error
// bodies (400 for invalid arguments, 500 otherwise), a failed native assertion fails the
// instance and answers 500, and a handler that let go because the request was stopped
// answers 503 with the reason.
server_http_res_ptr call_route(ModelInstance & inst, route_member member, const server_http_req & req);

// Pulls a stream's next chunk like `res.next()`, but never throws. When the stream ends because
// the instance failed (or a native assertion fires in it), `chunk` carries an SSE error event
// and `failed` is set.
bool next_chunk(server_http_res & res, ModelInstance & inst, std::string & chunk, bool & failed);

// Test faults on the request path (faults.h), applied by every caller of call_route().
// The response an injected error asks for: `body` as given, or llama.cpp's error body for
// `status`; nullptr when no error fault fires for this request.
server_http_res_ptr injected_error(FaultPlan & faults, const std::string & path, const std::string & body);

// A stream's share of the faults: slow chunks and a cut.
struct StreamFaults {
    int slow_ms = 0;
    int cut_after = -1;
    int sent = 0;

    explicit StreamFaults(FaultPlan & faults) : slow_ms(faults.slow_token_ms()), cut_after(faults.take_cut_stream()) {}
    // Called before each chunk; false ends the stream here (cut).
    bool before_chunk(const std::function<bool()> & should_stop);
};

}  // namespace llamaproc
