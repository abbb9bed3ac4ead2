#include "server/http_front.h"
#include "server/web_ui.h"

#include "server/cpu_governor.h"

#include "errors.h"

#include "server-common.h"
#include "server-context.h"
#include "server-models.h"  // server_http_proxy, for the CORS proxy below
#include "server-cors-proxy.h"
#include "server-http.h"
#include "server-mcp.h"
#include "server-tools.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>


namespace llamaproc {

namespace {

std::string host_of(const common_params & params) {
    return params.hostnames.empty() ? std::string("127.0.0.1") : params.hostnames.front();
}

using handler_t = server_http_context::handler_t;


// Owns what the response refers to until httplib is done. Declaration order is reverse
// destruction order: the inner response goes first, then the request, then the lease.
// A resumable stream (`session` set) is also written into its session; when its client leaves
// early, on_complete() goes on reading the generation into the session for a later reader,
// until it ends, is cancelled or the server stops.
struct GuardedResponse : server_http_res {
    std::unique_ptr<Lease> lease;
    std::unique_ptr<GuardedRequest> request;
    server_http_res_ptr inner;
    std::shared_ptr<LogTail> tail;
    std::shared_ptr<StreamSession> session;
    bool stream_ended = false;

    ~GuardedResponse() override {
        if (session) {
            session->finish();
        }
    }

    void on_complete() override {
        ThreadLogScope scope(tail);
        try {
            std::string chunk;
            while (session && !stream_ended && !session->cancelled() && next) {
                chunk.clear();
                if (!next(chunk)) {
                    break;
                }
            }
            inner->on_complete();
        } catch (const NativeAbort & e) {
            if (lease) {
                lease->inst->fail_from_request(e.what());
            }
        } catch (const std::exception & e) {
            log_line(LogLevel::error, std::string("request completion failed: ") + e.what());
        }
        if (session) {
            session->finish();
        }
    }
};

}  // namespace

HttpFront::HttpFront(const common_params & params, std::shared_ptr<LogTail> tail, std::shared_ptr<FaultPlan> faults,
                     uint64_t max_request_bytes, RouteFn route)
    : params_(params),
      tail_(std::move(tail)),
      faults_(std::move(faults)),
      max_request_bytes_(max_request_bytes),
      api_keys_(params.api_keys),
      route_(std::move(route)) {}

namespace {

// Equal strings, in time that depends only on their lengths (not on where they differ).
bool same_secret(const std::string & a, const std::string & b) {
    const size_t n = std::max(a.size(), b.size());
    unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
    for (size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

std::string header(const server_http_req & req, const std::string & lower_name) {
    for (const auto & [key, value] : req.headers) {
        if (key.size() == lower_name.size() &&
            std::equal(key.begin(), key.end(), lower_name.begin(),
                       [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; })) {
            return value;
        }
    }
    return "";
}

}  // namespace

server_http_res_ptr HttpFront::refuse(const server_http_req & req) const {
    if (req.body.size() > max_request_bytes_) {
        auto res = error_response("the request body has " + std::to_string(req.body.size()) +
                                      " bytes, more than this server accepts (" + std::to_string(max_request_bytes_) + ")",
                                  ERROR_TYPE_INVALID_REQUEST);
        res->status = 413;  // the body's "code" says the same as the status line
        json body = json::parse(res->data);
        body["error"]["code"] = 413;
        res->data = body.dump();
        return res;
    }
    if (api_keys_.empty() || is_health_probe(req.path)) {
        return nullptr;
    }
    std::string key = header(req, "authorization");
    if (key.empty()) {
        key = header(req, "x-api-key");
    }
    if (key.rfind("Bearer ", 0) == 0) {
        key = key.substr(7);
    }
    bool ok = false;
    for (const auto & k : api_keys_) {
        ok |= same_secret(key, k);  // every key compared: no early exit
    }
    if (ok) {
        return nullptr;
    }
    return error_response("Invalid API Key", ERROR_TYPE_AUTHENTICATION);
}

HttpFront::~HttpFront() {
    begin_stop();
    stop_and_join();
}

int HttpFront::port() const {
    return http_ ? http_->port : 0;
}

void HttpFront::add_route(const std::string & method, const std::string & path, handler_t handler) {
    extra_routes_.push_back({method, path, std::move(handler)});
}

void HttpFront::count(RequestOutcome outcome) {
    counter_->count(outcome);
}

void HttpFront::count(const server_http_req & req, RequestOutcome outcome) {
    if (!is_monitoring_probe(req.path)) {
        counter_->count(outcome);
    }
}

RequestCounts HttpFront::counts() const {
    RequestCounts out;
    out.by_outcome = counter_->snapshot();
    return out;
}

void HttpFront::start() {
    mcp_ = std::make_unique<server_mcp>();
    tools_ = std::make_unique<server_tools>();
    http_ = std::make_unique<server_http_context>();
    ThreadLogScope scope(tail_);
    // llama.cpp's HTTP layer keeps references into the params it is given: they must live as
    // long as the front. Its API-key middleware gets none: refuse() checks keys, in constant time.
    http_params_ = std::make_unique<common_params>(params_);
    http_params_->api_keys.clear();
    // the web pages: the package's files unless the flags turned the UI off (--no-webui; then
    // llama.cpp serves no files) or named a directory of their own (--path)
    if (http_params_->public_path.empty()) {
        http_params_->public_path = web_ui_dir();
    }
    if (!http_->init(*http_params_)) {
        throw Error(ErrorKind::startup, "cannot set up the HTTP server for " + host_of(params_), tail_->lines());
    }
    register_routes();
    bool started = false;
    {
        ThreadNameScope name("llp-http");  // its listener and worker threads inherit the name
        started = http_->start();
    }
    if (!started) {
        throw Error(ErrorKind::startup,
                    "cannot listen on " + host_of(params_) + ":" + std::to_string(params_.port) +
                        " (is the port already in use?)",
                    tail_->lines());
    }
    // availability is decided per request by the guard (instance state), not by llama.cpp's
    // is_ready middleware, so that a failed or reloading model answers with its own reason
    http_->is_ready.store(true);
}

void HttpFront::begin_stop() {
    stopping_->store(true);
    sessions_.close_all();  // readers and producers of resumable streams wake now
}

void HttpFront::stop_and_join() {
    if (!http_) {
        return;
    }
    ThreadLogScope scope(tail_);
    http_->stop();  // no new connections
    if (mcp_) {
        mcp_->shutdown();
    }
    http_->join();  // in-flight handlers return within one polling interval
    http_.reset();
    tools_.reset();
    mcp_.reset();
}

// Routes that need no model instance, guarded against asserts and exceptions, with the API-key
// check, the body limit and the counts.
HttpFront::handler_t HttpFront::guard(handler_t inner) {
    return [this, inner = std::move(inner)](const server_http_req & original) -> server_http_res_ptr {
        ThreadLogScope scope(tail_);
        if (auto refused = refuse(original)) {
            count(original, outcome_of(refused->status));
            return refused;
        }
        auto request = std::make_unique<GuardedRequest>(original, stopping_, nullptr);
        try {
            auto res = inner(request->req);
            count(original, outcome_of(res->status));
            if (!res->is_stream()) {
                return res;
            }
            auto out = std::make_unique<GuardedResponse>();
            out->status = res->status;
            out->content_type = res->content_type;
            out->headers = res->headers;
            out->next = [inner_res = res.get()](std::string & chunk) { return inner_res->next(chunk); };
            out->inner = std::move(res);
            out->request = std::move(request);
            out->tail = tail_;
            return out;
        } catch (const NativeAbort & e) {
            count(original, RequestOutcome::server_error);
            return error_response(std::string("llama.cpp hit a failed assertion: ") + e.what(), ERROR_TYPE_SERVER);
        } catch (const std::invalid_argument & e) {
            count(original, RequestOutcome::client_error);
            return error_response(e.what(), ERROR_TYPE_INVALID_REQUEST);
        } catch (const std::exception & e) {
            count(original, RequestOutcome::server_error);
            return error_response(e.what(), ERROR_TYPE_SERVER);
        }
    };
}

void HttpFront::register_routes() {
    server_http_context & http = *http_;

    // routes answered by the current model instance
    auto instance_route = [this](route_member member) -> handler_t {
        return [this, member](const server_http_req & original) -> server_http_res_ptr {
            ThreadLogScope scope(tail_);  // a failed GGML_ASSERT in the handler throws instead of aborting
            if (auto refused = refuse(original)) {
                count(original, outcome_of(refused->status));
                return refused;
            }
            if (stopping_->load()) {
                count(original, RequestOutcome::unavailable);
                return error_response("the server is stopping", ERROR_TYPE_UNAVAILABLE);
            }
            // A resumable request (X-Conversation-Id on a generating route) does not depend on
            // its client: it waits for its model until it is served or stopped (DELETE
            // /v1/stream, a newer request of the conversation, the server stopping).
            const std::string conversation =
                streams_resumably(original.path) ? header(original, "x-conversation-id") : std::string();
            const uint64_t ticket = conversation.empty() ? 0 : sessions_.expect(conversation);
            const std::function<bool()> give_up = [this, &original, &conversation, ticket] {
                if (stopping_->load()) {
                    return true;
                }
                return ticket != 0 ? !sessions_.wanted(conversation, ticket)
                                   : (original.should_stop && original.should_stop());
            };
            Routed routed;
            try {
                routed = route_(original, give_up);
            } catch (const std::exception & e) {
                routed.answer = error_response(e.what(), ERROR_TYPE_SERVER);
            }
            std::shared_ptr<StreamSession> session;
            if (ticket != 0 && routed.inst) {
                session = sessions_.open(conversation, ticket, routed.inst);
                if (!session) {
                    routed.inst->release();
                    routed.inst.reset();
                }
            }
            if (ticket != 0 && !session) {
                const bool stopped = !sessions_.wanted(conversation, ticket) && !stopping_->load();
                sessions_.close(conversation, ticket);
                if (stopped) {
                    routed.answer = error_response("request cancelled by a stop while the model was loading",
                                                   ERROR_TYPE_INVALID_REQUEST);
                }
            }
            if (!routed.inst) {
                count(original, outcome_of(routed.answer->status));
                return std::move(routed.answer);
            }
            std::shared_ptr<ModelInstance> inst = std::move(routed.inst);
            auto lease = std::make_unique<Lease>(inst);
            std::function<bool()> let_go;
            if (session) {
                let_go = [session] { return session->cancelled(); };
            }
            auto request = std::make_unique<GuardedRequest>(original, stopping_, inst->down_flag(), std::move(let_go));
            server_http_res_ptr res = injected_error(*faults_, original.path, original.body);
            if (!res && original.body.size() > 0 && !answers_without_the_loop(original.path)) {
                faults_->park_while_busy(request->req.should_stop);
            }
            if (!res) {
                res = call_route(*inst, member, request->req);
            }
            count(original, outcome_of(res->status));
            // The response goes out wrapped, holding the lease until it is destroyed: llama.cpp's
            // response (its reader on the instance's result queue, its on_complete()) must go
            // before the instance can be unloaded. Returned bare, a non-stream answer outlived
            // its lease, and a model unloaded at once (idle, another model queued) freed the
            // queue under it: std::terminate or a crash in the HTTP thread.
            auto out = std::make_unique<GuardedResponse>();
            out->content_type = res->content_type;
            out->status = res->status;
            out->headers = res->headers;
            out->tail = tail_;
            if (!res->is_stream()) {
                if (session) {
                    sessions_.close(conversation, ticket);  // nothing streamed: nothing to resume
                }
                out->data = std::move(res->data);
                out->inner = std::move(res);
                out->request = std::move(request);
                out->lease = std::move(lease);
                return out;
            }
            // a stream's first chunk stays in the inner response's data: its next() sends it
            out->session = session;
            out->next = [this, out = out.get(), inner_res = res.get(), inst = inst.get(), tail = tail_,
                         req = &request->req, stream_faults = StreamFaults(*faults_)](std::string & chunk) mutable -> bool {
                ThreadLogScope scope(tail);
                if (!stream_faults.before_chunk(req->should_stop)) {
                    out->stream_ended = true;
                    return false;  // a test cut this stream
                }
                bool failed = false;
                const bool more = next_chunk(*inner_res, *inst, chunk, failed);
                if (failed) {
                    count(RequestOutcome::stream_failed);
                }
                if (out->session) {
                    out->session->append(chunk);  // what the client gets, a later reader gets too
                }
                out->stream_ended = !more;
                return more;
            };
            out->inner = std::move(res);
            out->request = std::move(request);
            out->lease = std::move(lease);
            return out;
        };
    };

    for (const auto & route : instance_routes()) {
        if (route.post) {
            http.post(route.path, instance_route(route.member));
        } else {
            http.get(route.path, instance_route(route.member));
        }
    }
    for (auto & route : extra_routes_) {
        if (route.method == "GET") {
            http.get(route.path, guard(route.handler));
        } else if (route.method == "POST") {
            http.post(route.path, guard(route.handler));
        } else {
            http.del(route.path, guard(route.handler));
        }
    }
    register_stream_routes();
    http.register_gcp_compat();

    const auto disabled = [](const server_http_req &) {
        auto res = std::make_unique<server_http_res>();
        res->status = 403;
        res->data = safe_json_to_str({{"error", {{"message", "this feature is disabled"}, {"type", "feature_disabled"}}}});
        return res;
    };
    // the web UI's CORS proxy for MCP servers: off (403) unless --ui-mcp-proxy opts in, as in
    // llama-server; it forwards to any URL it is given, with only the headers the caller names
    if (params_.ui_mcp_proxy) {
        log_line(LogLevel::warning, "--ui-mcp-proxy: /cors-proxy forwards requests to any URL it is given "
                                 "(the web UI's MCP proxy, experimental); keep the server private or use an API key");
        http.get("/cors-proxy", guard(proxy_handler_get));
        http.post("/cors-proxy", guard(proxy_handler_post));
    } else {
        http.get("/cors-proxy", disabled);
        http.post("/cors-proxy", disabled);
    }
    try {
        mcp_->start(params_);
    } catch (const std::exception & e) {
        throw Error(ErrorKind::config, std::string("MCP server configuration: ") + e.what());
    }
    if (!params_.server_tools.empty() || !mcp_->empty()) {
        try {
            tools_->setup(params_.server_tools, *mcp_, params_.server_tools_runtime);
        } catch (const std::exception & e) {
            throw Error(ErrorKind::config, std::string("server tools: ") + e.what());
        }
        http.get("/tools", guard(tools_->handle_get));
        http.post("/tools", guard(tools_->handle_post));
    } else {
        http.get("/tools", disabled);
        http.post("/tools", disabled);
    }
}

namespace {

server_http_res_ptr json_response(int status, const json & body) {
    auto res = std::make_unique<server_http_res>();
    res->status = status;
    res->content_type = "application/json; charset=utf-8";
    res->data = safe_json_to_str(body);
    return res;
}

}  // namespace

// The resumable-stream routes, with llama-server's paths, statuses and bodies. The id travels
// in ?conv_id= (it may hold a model name with slashes).
void HttpFront::register_stream_routes() {
    server_http_context & http = *http_;
    // GET /v1/stream?conv_id=ID&from=N: what the session holds from byte N on, then its live
    // bytes until the generation ends (text/event-stream)
    http.get("/v1/stream", guard([this](const server_http_req & req) -> server_http_res_ptr {
        const std::string conversation = req.get_param("conv_id");
        if (conversation.empty()) {
            return error_response("Missing conversation id in path", ERROR_TYPE_INVALID_REQUEST);
        }
        std::shared_ptr<StreamSession> session = sessions_.find(conversation);
        if (!session) {
            if (sessions_.waiting_for_model(conversation)) {
                return error_response("Stream owner model is loading, retry later", ERROR_TYPE_UNAVAILABLE);
            }
            return error_response("Stream not found or expired", ERROR_TYPE_NOT_FOUND);
        }
        size_t from = 0;
        const std::string from_text = req.get_param("from");
        if (!from_text.empty()) {
            try {
                from = static_cast<size_t>(std::stoull(from_text));
            } catch (const std::exception &) {
                return error_response("Invalid 'from' offset", ERROR_TYPE_INVALID_REQUEST);
            }
        }
        if (from < session->dropped_bytes()) {
            return error_response("Stream offset lost, please restart", ERROR_TYPE_INVALID_REQUEST);
        }
        auto res = std::make_unique<server_http_res>();
        res->status = 200;
        res->content_type = "text/event-stream";
        res->next = [session, offset = from, req = &req](std::string & out) mutable {
            return session->read(offset, out, req->should_stop) == StreamSession::Read::bytes;
        };
        return res;
    }));
    // POST /v1/streams/lookup {"conversation_ids": [...]}: the live sessions among those asked
    // about, never others
    http.post("/v1/streams/lookup", guard([this](const server_http_req & req) -> server_http_res_ptr {
        std::vector<std::string> asked;
        try {
            const json body = json::parse(req.body);
            if (body.contains("conversation_ids") && body["conversation_ids"].is_array()) {
                for (const auto & id : body["conversation_ids"]) {
                    if (id.is_string() && !id.get<std::string>().empty()) {
                        asked.push_back(id.get<std::string>());
                    }
                }
            }
        } catch (const std::exception & e) {
            if (router_) {
                return json_response(200, json::array());  // llama-server's router answers so
            }
            return json_response(400, {{"error", {{"message", std::string("invalid body: ") + e.what()},
                                                  {"type", "invalid_request_error"}}}});
        }
        json found = json::array();
        for (const auto & session : sessions_.lookup(asked)) {
            found.push_back({
                {"conversation_id", session->conversation_id()},
                {"is_done", session->done()},
                {"total_bytes", session->total_bytes()},
                {"started_at", session->started_at()},
                {"completed_at", session->completed_at()},
            });
        }
        return json_response(200, found);
    }));
    // DELETE /v1/stream?conv_id=ID: the user's Stop. Cancels the generation (or its request
    // still waiting for a model) and forgets the session; 204 even when nothing matched.
    http.del("/v1/stream", guard([this](const server_http_req & req) -> server_http_res_ptr {
        const std::string conversation = req.get_param("conv_id");
        if (conversation.empty()) {
            return error_response("Missing conversation id in path", ERROR_TYPE_INVALID_REQUEST);
        }
        sessions_.stop(conversation);
        auto res = std::make_unique<server_http_res>();
        res->status = 204;
        res->content_type = "application/json";
        return res;
    }));
}

}  // namespace llamaproc
