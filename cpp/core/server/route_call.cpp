#include "server/route_call.h"

#include "errors.h"
#include "native_log.h"

#include "server-common.h"
#include "server-context.h"

#include <cctype>
#include <chrono>
#include <new>
#include <system_error>
#include <thread>

namespace llamaproc {

namespace {

std::map<std::string, std::string> without_conversation_id(const std::map<std::string, std::string> & headers) {
    std::map<std::string, std::string> out;
    for (const auto & [key, value] : headers) {
        std::string lower = key;
        for (auto & c : lower) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        if (lower != "x-conversation-id") {
            out.emplace(key, value);
        }
    }
    return out;
}

}  // namespace

const std::vector<InstanceRoute> & instance_routes() {
    static const std::vector<InstanceRoute> routes = {
    {false, "/health", &server_routes::get_health},
    {false, "/v1/health", &server_routes::get_health},
    {false, "/metrics", &server_routes::get_metrics},
    {false, "/props", &server_routes::get_props},
    {true, "/props", &server_routes::post_props},
    {false, "/models", &server_routes::get_models},
    {false, "/v1/models", &server_routes::get_models},
    {true, "/completion", &server_routes::post_completions},
    {true, "/completions", &server_routes::post_completions},
    {true, "/v1/completions", &server_routes::post_completions_oai},
    {true, "/chat/completions", &server_routes::post_chat_completions},
    {true, "/v1/chat/completions", &server_routes::post_chat_completions},
    {true, "/v1/chat/completions/control", &server_routes::post_control},
    {true, "/v1/responses", &server_routes::post_responses_oai},
    {true, "/responses", &server_routes::post_responses_oai},
    {true, "/v1/audio/transcriptions", &server_routes::post_transcriptions_oai},
    {true, "/audio/transcriptions", &server_routes::post_transcriptions_oai},
    {true, "/v1/messages", &server_routes::post_anthropic_messages},
    {true, "/infill", &server_routes::post_infill},
    {true, "/embedding", &server_routes::post_embeddings},
    {true, "/embeddings", &server_routes::post_embeddings},
    {true, "/v1/embeddings", &server_routes::post_embeddings_oai},
    {true, "/rerank", &server_routes::post_rerank},
    {true, "/reranking", &server_routes::post_rerank},
    {true, "/v1/rerank", &server_routes::post_rerank},
    {true, "/v1/reranking", &server_routes::post_rerank},
    {true, "/tokenize", &server_routes::post_tokenize},
    {true, "/detokenize", &server_routes::post_detokenize},
    {true, "/apply-template", &server_routes::post_apply_template},
    {true, "/chat/completions/input_tokens", &server_routes::post_chat_completions_tok},
    {true, "/v1/chat/completions/input_tokens", &server_routes::post_chat_completions_tok},
    {true, "/responses/input_tokens", &server_routes::post_responses_tok_oai},
    {true, "/v1/responses/input_tokens", &server_routes::post_responses_tok_oai},
    {true, "/v1/messages/count_tokens", &server_routes::post_anthropic_count_tokens},
    {false, "/lora-adapters", &server_routes::get_lora_adapters},
    {true, "/lora-adapters", &server_routes::post_lora_adapters},
    {false, "/slots", &server_routes::get_slots},
    {true, "/slots/:id_slot", &server_routes::post_slots},
};
    return routes;
}

route_member find_instance_route(bool post, const std::string & path) {
    for (const auto & route : instance_routes()) {
        if (route.post == post && path == route.path) {
            return route.member;
        }
    }
    return nullptr;
}

bool streams_resumably(const std::string & path) {
    static const char * const generating[] = {
        "/completion", "/completions", "/v1/completions", "/chat/completions", "/v1/chat/completions",
        "/v1/responses", "/responses", "/v1/messages", "/infill",
    };
    for (const char * p : generating) {
        if (path == p) {
            return true;
        }
    }
    return false;
}

bool answers_without_the_loop(const std::string & path) {
    return path == "/tokenize" || path == "/detokenize" || path == "/apply-template";
}

GuardedRequest::GuardedRequest(const server_http_req & original, std::shared_ptr<std::atomic<bool>> stopping,
                               std::shared_ptr<std::atomic<bool>> down, std::function<bool()> let_go)
    : should_stop([let_go = let_go ? std::move(let_go) : original.should_stop, stopping = std::move(stopping),
                   down = std::move(down)] { return stopping->load() || (down && down->load()) || (let_go && let_go()); }),
      req{original.params, without_conversation_id(original.headers), original.path, original.query_string,
          original.body, original.files, should_stop} {}

GuardedRequest::GuardedRequest(const std::string & path, std::string body, std::shared_ptr<std::atomic<bool>> cancelled,
                               std::shared_ptr<std::atomic<bool>> stopping, std::shared_ptr<std::atomic<bool>> down)
    : should_stop([cancelled = std::move(cancelled), stopping = std::move(stopping), down = std::move(down)] {
          return cancelled->load() || stopping->load() || down->load();
      }),
      req{{}, {}, path, "", std::move(body), {}, should_stop} {}

server_http_res_ptr error_response(const std::string & message, int error_type_value) {
    auto res = std::make_unique<server_http_res>();
    json err = format_error_response(message, static_cast<error_type>(error_type_value));
    res->status = json_value(err, "code", 500);
    res->data = safe_json_to_str({{"error", err}});
    return res;
}

std::string error_chunk(const std::string & message) {
    return format_oai_sse(json{{"error", format_error_response(message, ERROR_TYPE_UNAVAILABLE)}});
}

std::string unavailable_reason(const ModelInstance & inst) {
    switch (inst.state()) {
        case InstanceState::loading: return "Loading model";
        case InstanceState::failed: {
            auto f = inst.failure();
            return "the model failed and is not serving: " + (f ? f->message : std::string("unknown cause"));
        }
        case InstanceState::stopped: return "the model is being replaced";
        default: return "the server is stopping";
    }
}

RequestOutcome outcome_of(int status) {
    if (status == 503) {
        return RequestOutcome::unavailable;
    }
    if (status >= 500) {
        return RequestOutcome::server_error;
    }
    if (status >= 400) {
        return RequestOutcome::client_error;
    }
    return RequestOutcome::ok;
}

static void reclassify_client_errors(server_http_res & res);

server_http_res_ptr call_route(ModelInstance & inst, route_member member, const server_http_req & req) {
    server_http_res_ptr res;
    try {
        res = (inst.routes().*member)(req);
    } catch (const NativeAbort & e) {
        inst.fail_from_request(e.what());
        return error_response(std::string("llama.cpp hit a failed assertion: ") + e.what(), ERROR_TYPE_SERVER);
    } catch (const std::invalid_argument & e) {
        return error_response(e.what(), ERROR_TYPE_INVALID_REQUEST);
    } catch (const common_json_error & e) {
        // malformed JSON, a field of the wrong type, a missing field, text that is not UTF-8:
        // the request's fault, so 400 (llama.cpp's own handlers let these escape as 500)
        return error_response(std::string("invalid request: ") + e.what(), ERROR_TYPE_INVALID_REQUEST);
    } catch (const std::bad_alloc & e) {
        return error_response(std::string("out of memory: ") + e.what(), ERROR_TYPE_SERVER);
    } catch (const std::system_error & e) {
        return error_response(e.what(), ERROR_TYPE_SERVER);
    } catch (const std::exception & e) {
        // A handler throws while it reads the request (parsing, templating, tokenizing: "'messages'
        // is required", an unknown role, ...); failures of the model come back as task results,
        // not exceptions. So what escapes here is the request's fault.
        log_line(LogLevel::debug, std::string("request refused: ") + e.what());
        return error_response(e.what(), ERROR_TYPE_INVALID_REQUEST);
    }
    if (!res->is_stream() && res->data.empty() && req.should_stop()) {
        // the handler let go because the instance failed, the server is stopping or the caller left
        return error_response(unavailable_reason(inst), ERROR_TYPE_UNAVAILABLE);
    }
    if (res->status == 500) {
        reclassify_client_errors(*res);
    }
    return res;
}

// llama.cpp answers some request-made conditions with a 500 server_error from the inference
// loop (the request's input did not fit, its grammar rejected every token). They are the
// request's fault: 400, with the same message.
static void reclassify_client_errors(server_http_res & res) {
    static const char * const client_conditions[] = {
        "Context size has been exceeded",
        "is too large to process",
        "grammar stack",
    };
    for (const char * condition : client_conditions) {
        if (res.data.find(condition) == std::string::npos) {
            continue;
        }
        try {
            json body = json::parse(res.data);
            const std::string message = body.at("error").at("message").get<std::string>();
            auto fixed = error_response(message, ERROR_TYPE_INVALID_REQUEST);
            res.status = fixed->status;
            res.data = std::move(fixed->data);
        } catch (const std::exception &) {
            // not llama.cpp's error body: leave it as it is
        }
        return;
    }
}

bool next_chunk(server_http_res & res, ModelInstance & inst, std::string & chunk, bool & failed) {
    try {
        const bool more = res.next(chunk);
        if (!more && chunk.empty() && inst.state() == InstanceState::failed) {
            failed = true;
            chunk = error_chunk(unavailable_reason(inst));
        }
        return more;
    } catch (const NativeAbort & e) {
        inst.fail_from_request(e.what());
        failed = true;
        chunk = error_chunk(std::string("llama.cpp hit a failed assertion: ") + e.what());
    } catch (const std::exception & e) {
        log_line(LogLevel::error, std::string("stream ended by an error: ") + e.what());
        failed = true;
        chunk = error_chunk(e.what());
    }
    return false;
}

server_http_res_ptr injected_error(FaultPlan & faults, const std::string & path, const std::string & body) {
    auto fault = faults.take_error(path, body);
    if (!fault) {
        return nullptr;
    }
    const int status = fault->first;
    if (!fault->second.empty()) {
        auto res = std::make_unique<server_http_res>();
        res->status = status;
        res->data = fault->second;
        return res;
    }
    const error_type type = status == 400   ? ERROR_TYPE_INVALID_REQUEST
                            : status == 401 ? ERROR_TYPE_AUTHENTICATION
                            : status == 404 ? ERROR_TYPE_NOT_FOUND
                            : status == 501 ? ERROR_TYPE_NOT_SUPPORTED
                            : status == 503 ? ERROR_TYPE_UNAVAILABLE
                                            : ERROR_TYPE_SERVER;
    auto res = error_response("injected fault: HTTP " + std::to_string(status), type);
    res->status = status;
    return res;
}

bool StreamFaults::before_chunk(const std::function<bool()> & should_stop) {
    if (cut_after >= 0 && sent >= cut_after) {
        return false;
    }
    ++sent;
    if (slow_ms > 0) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(slow_ms);
        while (std::chrono::steady_clock::now() < until && !should_stop()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min(slow_ms, 5)));
        }
    }
    return true;
}

}  // namespace llamaproc
