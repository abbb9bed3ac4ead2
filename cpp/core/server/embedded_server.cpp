#include "server/embedded_server.h"
#include "server/instance_params.h"
#include "server/web_ui.h"

#include "argv_parser.h"
#include "deadline.h"
#include "errors.h"
#include "model_file/gguf_file.h"

#include "ggml-backend.h"
#include "server-common.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamaproc {

EmbeddedServer::EmbeddedServer(ServerOptions options) : options_(std::move(options)) {}

EmbeddedServer::~EmbeddedServer() {
    stop();
}

std::string EmbeddedServer::host() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return params_.hostnames.empty() ? std::string("127.0.0.1") : params_.hostnames.front();
}

int EmbeddedServer::port() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return phase_ == Phase::created || phase_ == Phase::start_failed ? 0 : params_.port;
}

std::shared_ptr<ModelInstance> EmbeddedServer::current() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return instance_;
}

float EmbeddedServer::load_progress() const {
    auto inst = current();
    return inst ? inst->load_progress() : 0.0f;
}

std::optional<InstanceMemory> EmbeddedServer::memory() const {
    auto inst = current();
    return inst ? inst->memory() : std::nullopt;
}

std::optional<Failure> EmbeddedServer::failure() const {
    auto inst = current();
    return inst ? inst->failure() : std::nullopt;
}

RequestCounts EmbeddedServer::request_counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return front_ ? front_->counts() : RequestCounts{};
}

std::vector<std::string> EmbeddedServer::log_tail(std::size_t max_lines) const {
    return tail_->lines(max_lines);
}

int EmbeddedServer::abandoned_instances() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return abandoned_;
}

ServerState EmbeddedServer::state() const {
    std::lock_guard<std::mutex> lock(mutex_);
    switch (phase_) {
        case Phase::created: return ServerState::created;
        case Phase::stopping: return ServerState::stopping;
        case Phase::stopped: return ServerState::stopped;
        case Phase::start_failed: return ServerState::failed;
        case Phase::running: break;
    }
    if (!instance_) {
        return ServerState::starting;
    }
    switch (instance_->state()) {
        case InstanceState::ready: return ServerState::ready;
        case InstanceState::failed: return ServerState::failed;
        default: return ServerState::starting;  // loading, or the old one being replaced
    }
}

void EmbeddedServer::changed() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++change_seq_;
    }
    cv_.notify_all();
}

uint64_t EmbeddedServer::wait_change(uint64_t seen, double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_until(lock, deadline_after(timeout_s), [&] { return change_seq_ != seen; });
    return change_seq_;
}

// What llama_server() does to the parsed flags before it builds the server.
void EmbeddedServer::prepare_params() {
    check_front_params(params_, options_.allow_unauthenticated_remote);
    prepare_instance_params(params_, options_.args, options_.use_env);
    if (options_.verbosity >= 0) {
        params_.verbosity = options_.verbosity;  // not the process-wide log threshold: the logger has that
    }
}

json EmbeddedServer::status() {
    ModelStatusEntry m;
    std::shared_ptr<ModelInstance> inst = current();
    const ServerState st = state();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        m.aliases.assign(params_.model_alias.begin(), params_.model_alias.end());
        m.id = m.aliases.empty() ? std::filesystem::path(params_.model.path).filename().string() : m.aliases.front();
        m.loads = loads_;
    }
    m.state = st == ServerState::ready      ? "loaded"
              : st == ServerState::failed   ? "failed"
              : st == ServerState::stopping ? "stopping"
              : st == ServerState::starting ? "loading"
                                            : "unloaded";
    if (inst) {
        m.load_progress = inst->load_progress();
        m.failure = inst->failure();
        m.memory = inst->memory();
        m.active_requests = inst->leases();
        if (st == ServerState::ready) {
            m.loop = inst->query_metrics(STATUS_LOOP_TIMEOUT_S);
        }
    }
    if (m.memory && m.memory->expected_bytes) {
        m.memory_estimate = *m.memory->expected_bytes;  // what the load was judged by (a memory limit)
    }
    json models = json::array();
    models.push_back(model_status_json(m));
    const uint64_t held = m.memory ? m.memory->held() : 0;
    return status_json("server", std::move(models), options_.memory_limit, held, request_counts());
}

std::shared_ptr<ModelInstance> EmbeddedServer::make_instance() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++loads_;
    }
    const bool cache_ram_given = flag_given(options_.args, {"-cram", "--cache-ram"}) ||
                                 (options_.use_env && std::getenv("LLAMA_ARG_CACHE_RAM"));
    auto inst = std::make_shared<ModelInstance>(params_, MemoryPolicy{options_.memory_limit, cache_ram_given},
                                                tail_, faults_, [this] { changed(); });
    // one budget of CPU threads for every server in the process (decode_gate.h, cpu_governor.h)
    inst->gate_decodes(true);
    inst->govern_threads(threads_governed(options_.args, options_.use_env));
    return inst;
}

void EmbeddedServer::start() {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (phase_ != Phase::created) {
            throw Error(ErrorKind::internal, "an EmbeddedServer starts once; create a new one to start again");
        }
    }
    try {
        common_params parsed = parse_server_args(options_.args, options_.use_env);
        check_gguf_file(parsed.model.path);  // common mistakes, named, before llama.cpp sees the file
        runtime_ = std::make_unique<ProcessRuntime>();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            params_ = std::move(parsed);
        }
        prepare_params();
        // every model route goes to the current instance, or gets 503 with the reason
        front_ = std::make_unique<HttpFront>(params_, tail_, faults_, options_.max_request_bytes,
                                             [this](const server_http_req &, const std::function<bool()> &) {
                                                 Routed routed;
                                                 std::shared_ptr<ModelInstance> inst = current();
                                                 if (inst && inst->acquire()) {
                                                     routed.inst = std::move(inst);
                                                 } else {
                                                     routed.answer = error_response(
                                                         inst ? unavailable_reason(*inst) : "Loading model",
                                                         ERROR_TYPE_UNAVAILABLE);
                                                 }
                                                 return routed;
                                             });
        front_->add_route("GET", "/llamaproc/status", [this](const server_http_req &) { return status_response(status()); });
        front_->start();
        auto inst = make_instance();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            params_.port = front_->port();
            instance_ = inst;
            phase_ = Phase::running;
        }
        inst->start();
    } catch (...) {
        // undo whatever was built, in the right order, then report
        if (front_) {
            front_->begin_stop();
            front_->stop_and_join();
        }
        std::shared_ptr<ModelInstance> inst;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            inst = std::move(instance_);
            phase_ = Phase::start_failed;
        }
        if (inst) {
            inst->shutdown();
        }
        front_.reset();
        runtime_.reset();
        changed();
        throw;
    }
    changed();
}

bool EmbeddedServer::wait_ready(double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto deadline = deadline_after(timeout_s);
    auto settled = [this] {
        if (phase_ != Phase::running) {
            return true;
        }
        if (!instance_) {
            return false;  // being replaced
        }
        const InstanceState s = instance_->state();
        return s == InstanceState::ready || s == InstanceState::failed;
    };
    cv_.wait_until(lock, deadline, settled);
    const Phase phase = phase_;
    auto inst = instance_;
    lock.unlock();
    if (phase != Phase::running) {
        throw Error(ErrorKind::not_running, "the server was stopped before it became ready");
    }
    switch (inst ? inst->state() : InstanceState::loading) {
        case InstanceState::ready: return true;
        case InstanceState::failed: {
            const auto f = inst->failure();
            throw Error(f ? f->kind : ErrorKind::internal, f ? f->message : "the model failed", tail_->lines());
        }
        default: return false;
    }
}

void EmbeddedServer::restart_instance() {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
    std::shared_ptr<ModelInstance> old = current();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (phase_ != Phase::running) {
            return;
        }
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        instance_.reset();  // requests get 503 "Loading model" meanwhile
    }
    if (old && !old->shutdown()) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++abandoned_;
    }
    auto fresh = make_instance();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        instance_ = fresh;
    }
    changed();
    fresh->start();
#if defined(__GLIBC__)
    malloc_trim(0);  // hand the old model's pages back to the OS
#endif
}

void EmbeddedServer::stop() {
    std::shared_ptr<ModelInstance> inst;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (phase_ != Phase::running) {
            if (phase_ == Phase::created) {
                phase_ = Phase::stopped;
            }
            return;
        }
        phase_ = Phase::stopping;
    }
    changed();
    if (front_) {
        front_->begin_stop();  // handlers see this first and let go
    }
    if (auto loading = current()) {
        loading->shutdown();  // a load in progress is cancelled before we wait for the lock
    }
    std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        inst = std::move(instance_);
    }
    if (inst && !inst->shutdown()) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++abandoned_;
    }
    inst.reset();
    front_->stop_and_join();
    runtime_.reset();
#if defined(__GLIBC__)
    // the model, KV cache and per-thread arenas were freed; hand the pages back to the OS
    malloc_trim(0);
#endif
    {
        std::lock_guard<std::mutex> lock(mutex_);
        phase_ = Phase::stopped;
    }
    changed();
}

std::shared_ptr<DirectCall> EmbeddedServer::call(const std::string & path, std::string body, bool post) {
    std::shared_ptr<ModelInstance> inst;
    std::shared_ptr<std::atomic<bool>> stopping;
    std::shared_ptr<RequestCounter> counter;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (phase_ == Phase::running && front_) {
            inst = instance_;
            stopping = front_->stopping_flag();
            counter = front_->counter();
        }
    }
    if (!inst || stopping->load() || !inst->acquire()) {
        auto res = error_response(inst && !stopping->load() ? unavailable_reason(*inst) : "the server is not running",
                                  ERROR_TYPE_UNAVAILABLE);
        return DirectCall::finished(res->status, res->data, counter);
    }
    if (auto res = injected_error(*faults_, path, body)) {
        inst->release();
        return DirectCall::finished(res->status, res->data, counter);
    }
    return DirectCall::start(std::make_unique<Lease>(inst), find_instance_route(post, path), path, std::move(body), tail_,
                             std::move(stopping), faults_, std::move(counter));
}

void EmbeddedServer::inject_fault(const FaultSpec & spec) {
    faults_->arm(spec);
    if (spec.kind == FaultKind::loop_dies) {
        if (auto inst = current(); inst && inst->state() == InstanceState::ready && faults_->take(spec.kind)) {
            inst->kill_loop();
        }
    }
}

std::optional<LoopMetrics> EmbeddedServer::query_metrics(double timeout_s) {
    auto inst = current();
    if (!inst || state() != ServerState::ready) {
        return std::nullopt;
    }
    return inst->query_metrics(timeout_s);
}

std::optional<SlotLoad> EmbeddedServer::query_load(double timeout_s) {
    auto metrics = query_metrics(timeout_s);
    if (!metrics) {
        return std::nullopt;
    }
    if (faults_->slots_busy()) {  // (a test made every slot look busy)
        metrics->load.n_processing = metrics->load.n_slots;
        metrics->load.n_deferred += faults_->parked();
    }
    return metrics->load;
}

}  // namespace llamaproc
