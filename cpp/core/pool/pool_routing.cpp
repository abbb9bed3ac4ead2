// Where a request goes in the pool: route() reads the model a request names and waits (queued,
// FIFO per model) until it serves, loading it when allowed; call() is the same for a direct call.
#include "pool/model_pool.h"
#include "pool/pool_internal.h"

#include "deadline.h"
#include "server/route_call.h"

#include "server-common.h"

namespace llamaproc {

namespace {

using clock = std::chrono::steady_clock;

// The model name a request asks for: the body's "model", else ?model=.
std::string requested_model(const server_http_req & req) {
    if (!req.body.empty()) {
        // not JSON (e.g. a multipart upload), or no "model" in it: the query's
        if (auto model = model_in_body(req.body); model && !model->empty()) {
            return *model;
        }
    }
    return req.get_param("model");
}

}  // namespace

using pool_internal::unix_now;

Routed ModelPool::route(const server_http_req & req, const std::function<bool()> & should_stop) {
    Routed out;
    const bool has_body = !req.body.empty();
    if (is_health_probe(req.path)) {
        out.answer = std::make_unique<server_http_res>();
        out.answer->data = safe_json_to_str({{"status", "ok"}});
        return out;
    }
    if (!has_body && (req.path == "/models" || req.path == "/v1/models")) {
        out.answer = models_response(!req.get_param("reload").empty());
        return out;
    }
    std::string name = requested_model(req);
    if (!has_body && req.path == "/props" && name.empty()) {
        out.answer = router_props_response();
        return out;
    }
    const std::string autoload_param = req.get_param("autoload");
    const bool autoload = autoload_param.empty() ? router_params_.models_autoload
                                                 : (autoload_param == "true" || autoload_param == "1");
    out = route_to(name, autoload, has_body, should_stop);  // only POSTs count as use, as in llama-server
    if (out.inst && fake_timing_) {
        for (int i = 0; i < 200 && !(should_stop && should_stop()); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    return out;
}

// Finds the model, waits for it to load (queueing a load if autoload allows), takes a lease.
// Waits (lock held, released while waiting) until `e` serves, queueing its load when nothing
// serves it (requests for one model share one load), and leaves the queue on any way out: a
// model nobody waits for any more is neither loaded nor makes room. With `lease`, the
// instance comes back already acquired.
ModelPool::Waited ModelPool::wait_serving_locked(std::unique_lock<std::mutex> & lock, const std::shared_ptr<Entry> & e,
                                                 bool autoload, bool lease, clock::time_point deadline,
                                                 const std::function<bool()> & should_stop) {
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    uint64_t failures_seen = e->failures;
    bool queued = false;
    auto done = [&](Waited::Outcome outcome, std::shared_ptr<ModelInstance> inst = nullptr) {
        if (queued && --waiters_[e->config.name] == 0) {
            waiters_.erase(e->config.name);
            auto q = std::find(queue_.begin(), queue_.end(), e->config.name);
            if (q != queue_.end() && !e->current) {
                queue_.erase(q);
            }
        }
        return Waited{outcome, std::move(inst), e->failure};
    };
    while (true) {
        if (stopping_ || !running_) {
            return done(Waited::stopping);
        }
        if (e->removed) {
            return done(Waited::removed);
        }
        if (!e->parked && e->ready() && (!lease || e->current->acquire())) {
            return done(Waited::serving, e->current);
        }
        if (e->parked) {
            failures_seen = e->failures;  // a swap's failed load is the swap's, not this waiter's
        } else if (e->failures != failures_seen) {
            return done(Waited::failed);
        }
        if (!e->current && !e->parked && !queued) {
            if (!autoload) {
                return done(Waited::not_loaded);
            }
            queued = true;
            ++waiters_[e->config.name];
            if (std::find(queue_.begin(), queue_.end(), e->config.name) == queue_.end()) {
                queue_.push_back(e->config.name);
            }
            pump_locked(to_start);
            if (!to_start.empty()) {
                lock.unlock();
                start_all(to_start);
                lock.lock();
                continue;
            }
        }
        if (should_stop && should_stop()) {
            return done(Waited::gave_up);
        }
        if (clock::now() >= deadline) {
            return done(Waited::timed_out);
        }
        cv_.wait_until(lock, std::min(deadline, clock::now() + std::chrono::milliseconds(100)));
    }
}

Routed ModelPool::route_to(const std::string & requested, bool autoload, bool touch,
                           const std::function<bool()> & should_stop) {
    Routed out;
    auto answer = [&](const std::string & message, error_type type) {
        out.answer = error_response(message, type);
        return std::move(out);
    };
    const std::string name = requested.empty() ? options_.default_model : requested;
    if (name.empty()) {
        return answer("model name is missing from the request", ERROR_TYPE_INVALID_REQUEST);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    Entry * found = lookup_locked(name);
    if (!found) {
        return answer("model '" + name + "' not found", ERROR_TYPE_INVALID_REQUEST);
    }
    std::shared_ptr<Entry> e = entries_.at(found->config.name);  // stays valid if removed meanwhile
    Waited w = wait_serving_locked(lock, e, autoload, true, clock::time_point::max(), should_stop);
    switch (w.outcome) {
        case Waited::serving:
            if (touch) {
                e->last_used = clock::now();
                e->last_used_unix = unix_now();
            }
            out.inst = std::move(w.inst);
            return out;
        case Waited::stopping: return answer("the server is stopping", ERROR_TYPE_UNAVAILABLE);
        case Waited::removed: return answer("model '" + name + "' not found", ERROR_TYPE_INVALID_REQUEST);
        case Waited::not_loaded: return answer("model is not loaded", ERROR_TYPE_INVALID_REQUEST);
        case Waited::failed:
            // no room in the memory budget is the server's state, not a fault: 503, as
            // llama-server answers while it cannot serve (the client may retry later)
            return answer("model '" + e->config.name + "' failed to load: " +
                              (w.failure ? w.failure->message : std::string("the model failed")),
                          w.failure && w.failure->kind == ErrorKind::resource ? ERROR_TYPE_UNAVAILABLE
                                                                              : ERROR_TYPE_SERVER);
        default: return answer("the client went away while the model loaded", ERROR_TYPE_UNAVAILABLE);
    }
}

std::shared_ptr<DirectCall> ModelPool::call(const std::string & path, std::string body, bool post) {
    const std::function<bool()> never = [] { return false; };
    server_http_req probe{{}, {}, path, "", post ? body : "", {}, never};
    if (!post && (path == "/models" || path == "/v1/models")) {
        auto res = models_response(false);
        return DirectCall::finished(res->status, res->data);
    }
    std::shared_ptr<std::atomic<bool>> stopping;
    std::shared_ptr<RequestCounter> counter;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_ || !front_) {
            auto res = error_response("the server is not running", ERROR_TYPE_UNAVAILABLE);
            return DirectCall::finished(res->status, res->data);
        }
        stopping = front_->stopping_flag();
        counter = front_->counter();
    }
    Routed routed = route(probe, never);
    if (!routed.inst) {
        return DirectCall::finished(routed.answer->status, routed.answer->data, counter);
    }
    std::shared_ptr<FaultPlan> faults;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto & [name, e] : entries_) {
            if (e->current == routed.inst) {
                faults = e->faults;
            }
        }
    }
    if (!faults) {
        faults = front_faults_;
    }
    if (auto res = injected_error(*faults, path, body)) {
        routed.inst->release();
        return DirectCall::finished(res->status, res->data, counter);
    }
    return DirectCall::start(std::make_unique<Lease>(routed.inst), find_instance_route(post, path), path, std::move(body),
                             tail_, std::move(stopping), faults, std::move(counter));
}

}  // namespace llamaproc
