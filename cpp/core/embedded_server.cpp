#include "embedded_server.h"

#include "argv_parser.h"
#include "errors.h"
#include "gguf_file.h"

#include "server-common.h"
#include "server-context.h"
#include "server-http.h"
#include "server-mcp.h"
#include "server-stream.h"
#include "server-tools.h"

#include "ggml-backend.h"

#include <chrono>
#include <cstdio>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamaproc {

namespace {

using clock = std::chrono::steady_clock;

// A request as the route handlers see it: the original, with should_stop() also true once
// the server is stopping, so that waiting handlers and streams end instead of blocking stop().
struct GuardedRequest {
    std::function<bool()> should_stop;
    server_http_req req;

    GuardedRequest(const server_http_req & original, std::shared_ptr<std::atomic<bool>> stopping)
        : should_stop([orig = &original.should_stop, stopping = std::move(stopping)] {
              return stopping->load() || (*orig && (*orig)());
          }),
          req{original.params, original.headers, original.path, original.query_string,
              original.body, original.files, should_stop} {}
};

server_http_res_ptr error_response(const std::string & message, error_type type) {
    auto res = std::make_unique<server_http_res>();
    json err = format_error_response(message, type);
    res->status = json_value(err, "code", 500);
    res->data = safe_json_to_str({{"error", err}});
    return res;
}

// Owns the inner response and the guarded request it may refer to, until httplib is done.
struct GuardedResponse : server_http_res {
    server_http_res_ptr inner;
    std::unique_ptr<GuardedRequest> request;
    std::shared_ptr<LogTail> tail;

    void on_complete() override {
        ThreadLogScope scope(tail);
        try {
            inner->on_complete();
        } catch (const std::exception & e) {
            log_line(LogLevel::error, std::string("request completion failed: ") + e.what());
        }
    }
};

bool has_gpu_device() {
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        const auto type = ggml_backend_dev_type(ggml_backend_dev_get(i));
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) {
            return true;
        }
    }
    return false;
}

}  // namespace

EmbeddedServer::EmbeddedServer(ServerOptions options) : options_(std::move(options)) {}

EmbeddedServer::~EmbeddedServer() {
    stop();
}

std::string EmbeddedServer::host() const {
    return params_.hostnames.empty() ? std::string("127.0.0.1") : params_.hostnames.front();
}

std::optional<MemoryEstimate> EmbeddedServer::memory_estimate() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return memory_estimate_;
}

std::vector<std::string> EmbeddedServer::log_tail(std::size_t max_lines) const {
    return tail_->lines(max_lines);
}

// What llama_server() does to the parsed flags before it builds the server.
void EmbeddedServer::prepare_params() {
    if (params_.embedding && params_.n_batch > params_.n_ubatch) {
        params_.n_batch = params_.n_ubatch;  // embeddings need the whole input in one ubatch
    }
    if (params_.n_parallel < 0) {
        params_.n_parallel = 4;
        params_.kv_unified = true;
    }
    const bool pool_auto_sized = params_.kv_unified_per_slot > 0 && params_.n_ctx == 0 &&
                                 (uint32_t) params_.fit_params_min_ctx != UINT32_MAX;
    if (pool_auto_sized) {
        params_.n_ctx = params_.n_parallel * params_.kv_unified_per_slot;
    }
    const std::string name = params_.model.get_name();
    if (params_.model_alias.empty() && !name.empty()) {
        params_.model_alias.insert(name);
    }
    // fit_params adapts *unset* values (auto context size, GPU layers) to device memory. With an
    // explicit context and no GPU there is nothing it can change, and its dry-run load of the
    // model costs about a third of the start time: skip it then.
    if (params_.fit_params && params_.n_ctx > 0 && !has_gpu_device()) {
        params_.fit_params = false;
    }
    params_.load_progress_callback = &EmbeddedServer::on_load_progress;
    params_.load_progress_callback_user_data = this;
}

void EmbeddedServer::start() {
    std::unique_lock<std::shared_mutex> lifecycle(lifecycle_mutex_);
    if (state_ != ServerState::created) {
        throw Error(ErrorKind::internal, "an EmbeddedServer starts once; create a new one to start again");
    }
    state_ = ServerState::starting;
    try {
        params_ = parse_server_args(options_.args, options_.use_env);
        check_gguf_file(params_.model.path);  // common mistakes, named, before llama.cpp sees the file
        runtime_ = std::make_unique<ProcessRuntime>();
        prepare_params();

        ctx_server_ = std::make_unique<server_context>();
        mcp_ = std::make_unique<server_mcp>();
        routes_ = std::make_unique<server_routes>(params_, *ctx_server_);
        tools_ = std::make_unique<server_tools>();
        ctx_http_ = std::make_unique<server_http_context>();
        {
            ThreadLogScope scope(tail_);
            if (!ctx_http_->init(params_)) {
                throw Error(ErrorKind::startup, "cannot set up the HTTP server for " + host(), tail_->lines());
            }
            register_routes();
            if (!ctx_http_->start()) {
                throw Error(ErrorKind::startup,
                            "cannot listen on " + host() + ":" + std::to_string(params_.port) +
                                " (is the port already in use?)",
                            tail_->lines());
            }
        }
        port_ = ctx_http_->port;
        server_thread_ = std::thread(&EmbeddedServer::run_server_thread, this);
    } catch (...) {
        // undo whatever was built, in the right order, then report
        stopping_->store(true);
        if (ctx_http_) {
            ctx_http_->stop();
            ctx_http_->join();
        }
        if (mcp_) {
            mcp_->shutdown();
        }
        ctx_http_.reset();
        tools_.reset();
        routes_.reset();
        mcp_.reset();
        ctx_server_.reset();
        runtime_.reset();
        state_ = ServerState::failed;
        throw;
    }
}

void EmbeddedServer::register_routes() {
    server_routes & r = *routes_;
    auto guard = [this](server_http_context::handler_t inner) -> server_http_context::handler_t {
        return [this, inner = std::move(inner)](const server_http_req & original) -> server_http_res_ptr {
            ThreadLogScope scope(tail_);  // a failed GGML_ASSERT in the handler throws instead of aborting
            auto request = std::make_unique<GuardedRequest>(original, stopping_);
            server_http_res_ptr res;
            try {
                res = inner(request->req);
            } catch (const std::invalid_argument & e) {
                return error_response(e.what(), ERROR_TYPE_INVALID_REQUEST);
            } catch (const std::exception & e) {
                return error_response(e.what(), ERROR_TYPE_SERVER);
            } catch (...) {
                return error_response("unknown error", ERROR_TYPE_SERVER);
            }
            auto out = std::make_unique<GuardedResponse>();
            out->content_type = std::move(res->content_type);
            out->status = res->status;
            out->data = std::move(res->data);
            out->headers = std::move(res->headers);
            out->tail = tail_;
            if (res->is_stream()) {
                out->next = [inner_res = res.get(), tail = tail_](std::string & chunk) -> bool {
                    ThreadLogScope scope(tail);
                    try {
                        return inner_res->next(chunk);
                    } catch (const std::exception & e) {
                        log_line(LogLevel::error, std::string("stream ended by an error: ") + e.what());
                        return false;
                    }
                };
            }
            out->inner = std::move(res);
            out->request = std::move(request);
            return out;
        };
    };
    server_http_context & http = *ctx_http_;

    r.init_routes();
    http.get("/health", guard(r.get_health));
    http.get("/v1/health", guard(r.get_health));
    http.get("/metrics", guard(r.get_metrics));
    http.get("/props", guard(r.get_props));
    http.post("/props", guard(r.post_props));
    http.get("/models", guard(r.get_models));
    http.get("/v1/models", guard(r.get_models));
    http.post("/completion", guard(r.post_completions));
    http.post("/completions", guard(r.post_completions));
    http.post("/v1/completions", guard(r.post_completions_oai));
    http.post("/chat/completions", guard(r.post_chat_completions));
    http.post("/v1/chat/completions", guard(r.post_chat_completions));
    http.post("/v1/chat/completions/control", guard(r.post_control));
    http.post("/v1/responses", guard(r.post_responses_oai));
    http.post("/responses", guard(r.post_responses_oai));
    http.post("/v1/audio/transcriptions", guard(r.post_transcriptions_oai));
    http.post("/audio/transcriptions", guard(r.post_transcriptions_oai));
    http.post("/v1/messages", guard(r.post_anthropic_messages));
    http.post("/infill", guard(r.post_infill));
    http.post("/embedding", guard(r.post_embeddings));
    http.post("/embeddings", guard(r.post_embeddings));
    http.post("/v1/embeddings", guard(r.post_embeddings_oai));
    http.post("/rerank", guard(r.post_rerank));
    http.post("/reranking", guard(r.post_rerank));
    http.post("/v1/rerank", guard(r.post_rerank));
    http.post("/v1/reranking", guard(r.post_rerank));
    http.post("/tokenize", guard(r.post_tokenize));
    http.post("/detokenize", guard(r.post_detokenize));
    http.post("/apply-template", guard(r.post_apply_template));
    http.post("/chat/completions/input_tokens", guard(r.post_chat_completions_tok));
    http.post("/v1/chat/completions/input_tokens", guard(r.post_chat_completions_tok));
    http.post("/responses/input_tokens", guard(r.post_responses_tok_oai));
    http.post("/v1/responses/input_tokens", guard(r.post_responses_tok_oai));
    http.post("/v1/messages/count_tokens", guard(r.post_anthropic_count_tokens));
    http.get("/lora-adapters", guard(r.get_lora_adapters));
    http.post("/lora-adapters", guard(r.post_lora_adapters));
    http.get("/slots", guard(r.get_slots));
    http.post("/slots/:id_slot", guard(r.post_slots));
    http.get("/v1/stream", guard(server_stream_make_get_handler()));
    http.post("/v1/streams/lookup", guard(server_stream_make_lookup_handler()));
    http.del("/v1/stream", guard(server_stream_make_delete_handler()));
    http.register_gcp_compat();

    const auto disabled = [](const server_http_req &) {
        auto res = std::make_unique<server_http_res>();
        res->status = 403;
        res->data = safe_json_to_str({{"error", {{"message", "this feature is disabled"}, {"type", "feature_disabled"}}}});
        return res;
    };
    // the CORS proxy serves llama.cpp's web UI, which is not part of an embedded server
    http.get("/cors-proxy", disabled);
    http.post("/cors-proxy", disabled);
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

bool EmbeddedServer::on_load_progress(float progress, void * self) {
    auto * server = static_cast<EmbeddedServer *>(self);
    server->load_progress_.store(progress);
    return !server->stopping_->load();  // false cancels the load
}

void EmbeddedServer::fail(ErrorKind kind, const std::string & message) {
    log_line(LogLevel::error, message);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        failure_kind_ = kind;
        failure_message_ = message;
    }
    state_ = ServerState::failed;
    cv_.notify_all();
}

void EmbeddedServer::run_server_thread() {
    ThreadLogScope scope(tail_);  // this thread's log lines go to the server's tail; asserts throw
    const std::string & path = params_.model.path;
    try {
        if (options_.memory_limit > 0) {
            const MemoryEstimate need = estimate_memory(params_);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                memory_estimate_ = need;
            }
            if (need.total() > options_.memory_limit) {
                fail(ErrorKind::resource,
                     "model '" + path + "' with this configuration needs about " + std::to_string(need.total()) +
                         " bytes (weights " + std::to_string(need.model_bytes) + ", context " +
                         std::to_string(need.context_bytes) + ", compute " + std::to_string(need.compute_bytes) +
                         "), more than memory_limit=" + std::to_string(options_.memory_limit) +
                         " bytes; nothing was loaded. Hint: lower context_size or parallel, or use a smaller quantization");
                server_thread_done_ = true;
                return;
            }
        }
        if (stopping_->load()) {
            server_thread_done_ = true;
            return;
        }
        if (!ctx_server_->load_model(params_)) {
            if (stopping_->load()) {
                server_thread_done_ = true;  // cancelled by stop()
                return;
            }
            fail(ErrorKind::model_load, "failed to load model '" + path + "'; see the log lines attached");
            server_thread_done_ = true;
            return;
        }
        routes_->update_meta(*ctx_server_);
        ctx_http_->is_ready.store(true);
        load_progress_ = 1.0f;
        loop_running_ = true;  // set before READY is visible; start_loop() follows at once
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (state_ == ServerState::starting) {
                state_ = ServerState::ready;
            }
        }
        cv_.notify_all();
        if (!stopping_->load()) {
            ctx_server_->start_loop();  // returns once terminate() is called
        }
        loop_running_ = false;
        if (!stopping_->load()) {
            fail(ErrorKind::internal, "the inference loop stopped unexpectedly");
        }
    } catch (const Error & e) {
        fail(e.kind(), e.what());
    } catch (const NativeAbort & e) {
        loop_running_ = false;
        fail(ErrorKind::internal, std::string("llama.cpp hit a failed assertion: ") + e.what());
    } catch (const std::exception & e) {
        loop_running_ = false;
        fail(ErrorKind::model_load, "failed to load model '" + path + "': " + e.what());
    }
    server_thread_done_ = true;
}

[[noreturn]] void EmbeddedServer::throw_failure() const {
    std::lock_guard<std::mutex> lock(mutex_);
    throw Error(failure_kind_, failure_message_, tail_->lines());
}

bool EmbeddedServer::wait_ready(double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout_s));
    cv_.wait_until(lock, deadline, [this] {
        const ServerState s = state_.load();
        return s != ServerState::starting;
    });
    const ServerState s = state_.load();
    lock.unlock();
    switch (s) {
        case ServerState::ready: return true;
        case ServerState::starting: return false;
        case ServerState::failed: throw_failure();
        default: throw Error(ErrorKind::not_running, "the server was stopped before it became ready");
    }
}

void EmbeddedServer::stop() {
    stopping_->store(true);  // handlers and queries see this first and let go
    std::unique_lock<std::shared_mutex> lifecycle(lifecycle_mutex_);
    const ServerState before = state_.load();
    if (before == ServerState::created || before == ServerState::stopped ||
        (before == ServerState::failed && !ctx_http_)) {
        if (before == ServerState::created) {
            state_ = ServerState::stopped;
        }
        return;
    }
    const bool failed = before == ServerState::failed;
    if (!failed) {
        state_ = ServerState::stopping;
    }
    cv_.notify_all();
    {
        ThreadLogScope scope(tail_);
        ctx_http_->stop();  // no new connections
        mcp_->shutdown();
        // terminate() until the server thread is out: it may be between load_model() and
        // start_loop(), and start_loop() would otherwise reset the queue's running flag
        while (server_thread_.joinable() && !server_thread_done_.load()) {
            ctx_server_->terminate();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (server_thread_.joinable()) {
            server_thread_.join();
        }
        ctx_http_->stop();
        ctx_http_->join();  // in-flight handlers return within one polling interval
        ctx_http_.reset();
        tools_.reset();
        routes_.reset();
        mcp_.reset();
        ctx_server_.reset();  // frees the model, the context and the KV cache
    }
    runtime_.reset();
#if defined(__GLIBC__)
    // the model, KV cache and per-thread arenas were freed; hand the pages back to the OS
    malloc_trim(0);
#endif
    if (!failed) {
        state_ = ServerState::stopped;
    }
    cv_.notify_all();
}

std::optional<ServerMetrics> EmbeddedServer::query_metrics(double timeout_s) {
    std::shared_lock<std::shared_mutex> lifecycle(lifecycle_mutex_);
    if (state_ != ServerState::ready || !loop_running_ || stopping_->load()) {
        return std::nullopt;
    }
    ThreadLogScope scope(tail_);
    server_response_reader reader = ctx_server_->get_response_reader();
    server_task task(SERVER_TASK_TYPE_METRICS);
    task.id = reader.get_new_id();
    task.metrics_reset_bucket = false;
    reader.post_task(std::move(task), true);
    const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout_s));
    server_task_result_ptr result = reader.next([&] { return clock::now() >= deadline || stopping_->load(); });
    auto * m = dynamic_cast<server_task_result_metrics *>(result.get());
    if (m == nullptr) {
        return std::nullopt;
    }
    ServerMetrics out;
    out.load.n_slots = params_.n_parallel;
    out.load.n_processing = m->n_processing_slots;
    out.load.n_deferred = m->n_tasks_deferred;
    out.prompt_tokens = m->metrics.prompt.count;
    out.prompt_seconds = m->metrics.prompt.time / 1e6;
    out.prompt_tokens_cached = m->metrics.n_prompt_cached;
    out.generated_tokens = m->metrics.predict.count;
    out.generation_seconds = m->metrics.predict.time / 1e6;
    out.decode_calls = m->metrics.n_decode;
    out.prometheus = m->to_metrics();
    return out;
}

std::optional<SlotLoad> EmbeddedServer::query_load(double timeout_s) {
    auto metrics = query_metrics(timeout_s);
    if (!metrics) {
        return std::nullopt;
    }
    return metrics->load;
}

}  // namespace llamaproc
