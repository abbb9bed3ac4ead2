// HttpFront: llama.cpp's HTTP server (server_http_context: listener, thread pool, API key,
// CORS) with every llama-server route. A model route asks the front's owner where the request
// goes (a RouteFn): the single-model server answers with its one instance, the model pool
// picks the instance by the request's "model" (loading it first if need be).
//
// Every handler is guarded: it answers at once when its owner refuses the request (503 while
// loading, failed, stopping; 400 for an unknown model), holds a lease on the instance for the
// life of the response (streams included), lets go when the instance fails or the server
// stops, turns a failed native assertion into HTTP 500 plus a FAILED instance, and counts the
// outcome.
#pragma once

#include "native_log.h"
#include "server/model_instance.h"
#include "server/route_call.h"
#include "server/stream_sessions.h"

#include "common.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct server_http_context;
struct server_tools;
class server_mcp;

namespace llamaproc {

struct RequestCounts {
    std::array<uint64_t, static_cast<int>(RequestOutcome::count_)> by_outcome{};
};

// Where a request to a model route goes: an instance already leased for it (acquire()
// succeeded; the front releases it), or the answer to send instead.
struct Routed {
    std::shared_ptr<ModelInstance> inst;
    server_http_res_ptr answer;
};
// Decides where a request goes; may block (e.g. until a model loads) while `should_stop()`
// stays false. Called on an HTTP thread without any front lock held.
using RouteFn = std::function<Routed(const server_http_req & req, const std::function<bool()> & should_stop)>;

class HttpFront {
public:
    using handler_t = std::function<server_http_res_ptr(const server_http_req &)>;

    // `params` must outlive the front. Requests over `max_request_bytes` get HTTP 413.
    HttpFront(const common_params & params, std::shared_ptr<LogTail> tail, std::shared_ptr<FaultPlan> faults,
              uint64_t max_request_bytes, RouteFn route);
    ~HttpFront();
    HttpFront(const HttpFront &) = delete;
    HttpFront & operator=(const HttpFront &) = delete;

    // Binds and starts the HTTP threads. Throws Error(startup) or Error(config).
    void start();
    int port() const;

    // Routes beyond llama-server's model routes (before start()); they get the same API-key
    // check, body limit, exception guard and counts. `method` is "GET", "POST" or "DELETE".
    void add_route(const std::string & method, const std::string & path, handler_t handler);

    // Answer as llama-server's router does where it differs from a single-model server
    // (before start()).
    void serve_as_router() { router_ = true; }

    // From now on new requests get 503, waiting handlers let go and resumable streams end.
    void begin_stop();
    // Closes the listener and joins the HTTP threads (after begin_stop()).
    void stop_and_join();

    RequestCounts counts() const;
    // The counter of this front's requests (direct calls count into it too).
    const std::shared_ptr<RequestCounter> & counter() const { return counter_; }
    // Set once the front stops: every guarded request (HTTP or direct) lets go.
    const std::shared_ptr<std::atomic<bool>> & stopping_flag() const { return stopping_; }

private:
    void register_routes();
    handler_t guard(handler_t inner);
    // GET /v1/stream, POST /v1/streams/lookup, DELETE /v1/stream (stream_sessions.h).
    void register_stream_routes();
    void count(RequestOutcome outcome);
    // Counts `req`'s outcome unless it is a monitoring probe (route_call.h).
    void count(const server_http_req & req, RequestOutcome outcome);
    // nullptr if the request may go on; else the answer (401 without a valid API key, 413 over
    // the body limit). Keys are compared in constant time; /health stays open.
    server_http_res_ptr refuse(const server_http_req & req) const;

    const common_params & params_;
    std::shared_ptr<LogTail> tail_;
    std::shared_ptr<FaultPlan> faults_;
    const uint64_t max_request_bytes_;
    std::vector<std::string> api_keys_;  // checked by refuse(), not by llama.cpp's middleware
    std::unique_ptr<common_params> http_params_;  // what llama.cpp's HTTP layer refers to
    std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);

    RouteFn route_;
    bool router_ = false;
    StreamSessions sessions_;  // resumable streams of this front (stream_sessions.h)
    struct ExtraRoute {
        std::string method, path;
        handler_t handler;
    };
    std::vector<ExtraRoute> extra_routes_;

    std::shared_ptr<RequestCounter> counter_ = std::make_shared<RequestCounter>();

    // declaration order = reverse destruction order: HTTP first
    std::unique_ptr<server_mcp> mcp_;
    std::unique_ptr<server_tools> tools_;
    std::unique_ptr<server_http_context> http_;
};

}  // namespace llamaproc
