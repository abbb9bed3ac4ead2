// The router's own HTTP answers, with llama-server's JSON shapes and status codes
// (tools/server/server-models.cpp): GET /models, /props without ?model=, POST /models/load,
// POST /models/unload, GET /models/sse. Model downloads are refused.
#include "pool/model_pool.h"

#include "server/route_call.h"
#include "server/web_ui.h"

#include "build-info.h"
#include "server-common.h"
#include "server-context.h"

#include <ctime>

namespace llamaproc {

namespace {

std::string body_model(const server_http_req & req) {
    auto model = model_in_body(req.body);
    if (!model) {
        throw std::invalid_argument("the request body must be a JSON object with a \"model\" field");
    }
    return *model;
}

server_http_res_ptr ok(const json & data) {
    auto res = std::make_unique<server_http_res>();
    res->status = 200;
    res->data = safe_json_to_str(data);
    return res;
}

}  // namespace

std::optional<std::string> model_in_body(const std::string & body) {
    json parsed;
    try {
        parsed = json::parse(body);
    } catch (const std::exception &) {
        return std::nullopt;
    }
    if (!parsed.is_object()) {
        return std::string();
    }
    return parsed.contains("model") && parsed.at("model").is_string() ? parsed.at("model").get<std::string>()
                                                                     : std::string();
}

void ModelPool::register_routes() {
    front_->add_route("POST", "/models/load", [this](const server_http_req & req) { return handle_load(req); });
    front_->add_route("POST", "/models/unload", [this](const server_http_req & req) { return handle_unload(req); });
    front_->add_route("GET", "/models/sse", [this](const server_http_req & req) { return handle_events(req); });
    front_->add_route("GET", "/llamaproc/status", [this](const server_http_req &) { return status_response(status()); });
    const auto no_downloads = [](const server_http_req &) {
        return error_response("llamaproc serves local GGUF files only: downloading (POST /models) and deleting "
                              "(DELETE /models) cached models are not supported. Put the file in --models-dir or "
                              "name it in --models-preset",
                              ERROR_TYPE_NOT_SUPPORTED);
    };
    front_->add_route("POST", "/models", no_downloads);
    front_->add_route("DELETE", "/models", no_downloads);
}

server_http_res_ptr ModelPool::models_response(bool reload) {
    if (reload) {
        try {
            reload_sources();
        } catch (const Error & e) {
            // a broken preset edit: the running list stays, the client learns why
            return error_response(std::string("reloading the model sources failed: ") + e.what(),
                                  ERROR_TYPE_INVALID_REQUEST);
        }
    }
    json data = json::array();
    const std::time_t now = std::time(nullptr);
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto & [name, e] : entries_) {
        if (e->config.hidden) {
            continue;  // a cache model that a preset deduplicates (still routable)
        }
        const PoolModelInfo info = info_locked(*e);
        json status = {{"value", info.status}, {"args", info.args}};
        if (!e->config.preset_ini.empty()) {
            status["preset"] = e->config.preset_ini;
        }
        if (info.failed) {
            status["failed"] = true;
            status["exit_code"] = 1;
            status["error"] = info.failure;  // llamaproc: the cause, where llama-server has only an exit code
        }
        json model = {
            {"id", name},
            {"aliases", info.aliases},
            {"tags", info.tags},
            {"object", "model"},
            {"owned_by", "llamacpp"},
            {"created", now},
            {"status", status},
            {"architecture", {{"input_modalities", json::array({"text"})}, {"output_modalities", json::array({"text"})}}},
            {"source", info.source == "api" ? "preset" : info.source},
            {"can_remove", false},  // cached models are not deleted by llamaproc
            {"llamaproc",
             {{"memory_estimate", info.memory_estimate},
              {"active_requests", info.active_requests},
              {"last_used", info.last_used},
              {"pinned", info.pinned},
              {"loads", info.loads}}},
        };
        if (e->ready()) {
            const json loaded = e->current->routes().get_model_info();
            for (auto it = loaded.begin(); it != loaded.end(); ++it) {
                if (!model.contains(it.key())) {
                    model[it.key()] = it.value();
                }
            }
        }
        data.push_back(model);
    }
    return ok({{"data", data}, {"object", "list"}});
}

server_http_res_ptr ModelPool::router_props_response() const {
    return ok({
        {"role", "router"},
        {"max_instances", router_params_.models_max},
        {"models_autoload", router_params_.models_autoload},
        {"model_alias", "llama-server"},
        {"model_path", "none"},
        {"default_generation_settings", {{"params", nullptr}, {"n_ctx", 0}}},  // null, as llama-server's json{}
        {"ui_settings", json::object()},
        {"build_info", std::string(llama_build_info())},
        {"cors_proxy_enabled", router_params_.ui_mcp_proxy},
    });
}

server_http_res_ptr ModelPool::handle_load(const server_http_req & req) {
    const std::string requested = body_model(req);
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        Entry * e = lookup_locked(requested);
        if (!e) {
            return error_response("model is not found", ERROR_TYPE_NOT_FOUND);
        }
        if (e->current || e->parked) {
            return error_response("model is already running", ERROR_TYPE_INVALID_REQUEST);
        }
        if (std::find(queue_.begin(), queue_.end(), e->config.name) == queue_.end()) {
            queue_.push_back(e->config.name);
        }
        pump_locked(to_start);  // llama-server answers once the load started; so does this
    }
    start_all(to_start);
    return ok({{"success", true}});
}

server_http_res_ptr ModelPool::handle_unload(const server_http_req & req) {
    const std::string requested = body_model(req);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        Entry * e = lookup_locked(requested);
        if (!e) {
            return error_response("model is not found", ERROR_TYPE_INVALID_REQUEST);
        }
        if (!e->current) {
            return error_response("model is not running", ERROR_TYPE_INVALID_REQUEST);
        }
        retire_locked(*e, e->config.stop_timeout_s);  // drains: requests in flight finish
    }
    return ok({{"success", true}});
}

json ModelPool::status() {
    std::vector<ModelStatusEntry> entries;
    std::vector<std::shared_ptr<ModelInstance>> serving;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto & [name, e] : entries_) {
            if (e->config.hidden) {
                continue;
            }
            const PoolModelInfo info = info_locked(*e);
            ModelStatusEntry m;
            m.id = name;
            m.aliases = info.aliases;
            m.state = info.failed ? "failed" : info.status;
            m.load_progress = info.load_progress;
            if (!info.failure.empty()) {
                m.failure = Failure{info.failure_kind, info.failure};
            }
            m.memory = info.memory;
            m.memory_estimate = info.memory_estimate;
            m.active_requests = info.active_requests;
            m.loads = info.loads;
            m.last_used = info.last_used;
            m.pinned = info.pinned;
            entries.push_back(std::move(m));
            serving.push_back(e->ready() ? e->current : nullptr);
        }
    }
    json models = json::array();
    for (size_t i = 0; i < entries.size(); ++i) {
        if (serving[i]) {  // asked without the pool's lock: the loop answers between decode steps
            entries[i].loop = serving[i]->query_metrics(STATUS_LOOP_TIMEOUT_S);
        }
        models.push_back(model_status_json(entries[i]));
    }
    return status_json("pool", std::move(models), options_.memory_budget, reserved_bytes(), request_counts());
}

server_http_res_ptr ModelPool::handle_events(const server_http_req & req) {
    auto res = std::make_unique<server_http_res>();
    res->status = 200;
    res->content_type = "text/event-stream";
    auto queue = subscribe();
    res->next = [queue, &req](std::string & output) -> bool {
        auto event = queue->pop(1e9, [&req] { return req.should_stop(); });
        if (!event) {
            return false;  // the client left, or the pool stopped
        }
        output = "data: " + *event + "\n\n";
        return true;
    };
    return res;
}

}  // namespace llamaproc
