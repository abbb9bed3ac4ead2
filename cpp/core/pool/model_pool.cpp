#include "pool/model_pool.h"
#include "pool/pool_internal.h"

#include "argv_parser.h"
#include "deadline.h"
#include "memory_estimate.h"
#include "server/instance_params.h"
#include "server/route_call.h"

#include "server-common.h"
#include "server-context.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamaproc {

namespace {

using clock = std::chrono::steady_clock;
constexpr uint64_t MiB = 1024 * 1024;
// A pool instance's prompt cache may use at most this share of the budget (and no more than
// a single server's default, default_prompt_cache_bytes()).
constexpr uint64_t PROMPT_CACHE_SHARE_OF_BUDGET = 10;  // percent

}  // namespace

using pool_internal::seconds_since;
using pool_internal::unix_now;

ModelPool::ModelPool(PoolOptions options) : options_(std::move(options)) {}

ModelPool::~ModelPool() {
    stop();
}

bool ModelPool::running() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return running_;
}

int ModelPool::port() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return running_ && front_ ? front_->port() : 0;
}

std::string ModelPool::host() const {
    return router_params_.hostnames.empty() ? std::string("127.0.0.1") : router_params_.hostnames.front();
}

int ModelPool::max_loaded() const {
    return router_params_.models_max;
}

bool ModelPool::autoload() const {
    return router_params_.models_autoload;
}

uint64_t ModelPool::reserved_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return reserved_;
}

int ModelPool::instances_alive() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return alive_;
}

RequestCounts ModelPool::request_counts() const {
    return front_ ? front_->counts() : RequestCounts{};
}

// Parses the model's flags and estimates what one load of it reserves. Never throws: a model
// that cannot be prepared is listed with the reason and fails when it is asked for.
void ModelPool::prepare_entry(Entry & e) {
    try {
        common_params params = parse_server_args(e.config.args, options_.use_env);
        prepare_instance_params(params, e.config.args, options_.use_env);
        if (options_.verbosity >= 0) {
            params.verbosity = options_.verbosity;
        }
        params.model_alias = {e.config.name};
        params.hostnames = router_params_.hostnames;
        params.port = 0;
        // llama-server's per-instance sleep keeps the model's reservation, and terminating a
        // sleeping instance can hang: here an idle model is unloaded by the pool instead
        e.idle_unload_s = params.sleep_idle_seconds > 0 ? params.sleep_idle_seconds : options_.idle_unload_s;
        params.sleep_idle_seconds = -1;
        // (a governed model's pools rest instead when another model waits: ThreadPools::rest)
        if (options_.decode_gate && !threads_governed(e.config.args, options_.use_env) &&
            !flag_given(e.config.args, {"--poll"})) {
            // with the gate, a model's idle thread pool must not spin on the cores another
            // model decodes on: its workers sleep between decodes (docs/benchmarks.md, P4)
            params.cpuparams.poll = 0;
            if (!flag_given(e.config.args, {"--poll-batch"})) {
                params.cpuparams_batch.poll = 0;
            }
        }
        const bool cache_given = flag_given(e.config.args, {"-cram", "--cache-ram"});
        uint64_t cache = 0;
        if (cache_given) {
            if (params.cache_ram_mib < 0 && options_.memory_budget > 0) {
                throw Error(ErrorKind::config, "model '" + e.config.name +
                                                   "': --cache-ram -1 (no limit) cannot be combined with a memory budget");
            }
            cache = params.cache_ram_mib > 0 ? static_cast<uint64_t>(params.cache_ram_mib) * MiB : 0;
        } else {
            cache = default_prompt_cache_bytes();
            if (options_.memory_budget > 0) {
                cache = std::min(cache, options_.memory_budget / 100 * PROMPT_CACHE_SHARE_OF_BUDGET);
            }
            params.cache_ram_mib = static_cast<int32_t>(cache / MiB);
        }
        // what an earlier load of the same file and flags held, else llama.cpp's dry run
        e.expected = expected_memory(params);
        e.cache_bytes = cache;
        e.need = e.expected.need() + cache;
        e.params = std::move(params);
        e.config_error.reset();
    } catch (const Error & err) {
        e.config_error = Failure{err.kind(), err.what()};
    } catch (const std::exception & err) {
        e.config_error = Failure{ErrorKind::model_load, "model '" + e.config.name + "': " + err.what()};
    }
}

void ModelPool::start() {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (running_ || stopping_) {
            throw Error(ErrorKind::internal, "a ModelPool starts once; create a new one to start again");
        }
    }
    ThreadLogScope scope(tail_);
    {
        common_params params;
        try {
            params = parse_server_args(options_.router_args, options_.use_env, ArgsFor::router);
        } catch (const Error & e) {
            throw Error(ErrorKind::config, std::string("router flags: ") + e.what());
        }
        if (!params.model.path.empty()) {
            throw Error(ErrorKind::config, "a model pool serves the models of --models-dir, --models-preset and its "
                                           "model list; -m/--model is for a single-model server");
        }
        check_front_params(params, options_.allow_unauthenticated_remote);
        prepare_instance_params(params, options_.router_args, options_.use_env);  // client timeouts
        router_params_ = std::move(params);
    }
    // llama-server's debug knob for its router tests: 2 s more per load and per routed request
    fake_timing_ = options_.use_env && std::getenv("LLAMA_SERVER_DEBUG_FAKE_TIMING") != nullptr;
    if (router_params_.models_max < 0) {
        throw Error(ErrorKind::config, "--models-max must be 0 (no limit) or more");
    }
    std::vector<PoolModelConfig> configs = collect_pool_models(options_.router_args, router_params_.models_dir,
                                                               router_params_.models_preset, options_.models,
                                                               options_.read_cache);
    if (!options_.default_model.empty()) {
        bool known = false;
        for (const auto & c : configs) {
            known = known || c.name == options_.default_model ||
                    std::find(c.aliases.begin(), c.aliases.end(), options_.default_model) != c.aliases.end();
        }
        if (!known) {
            throw Error(ErrorKind::config, "default model '" + options_.default_model + "' is not one of the pool's models");
        }
    }
    int startup_loads = 0;
    for (auto & c : configs) {
        auto e = std::make_shared<Entry>();
        e->config = std::move(c);
        prepare_entry(*e);
        startup_loads += e->config.load_on_startup ? 1 : 0;
        entries_[e->config.name] = e;
    }
    if (router_params_.models_max > 0 && startup_loads > router_params_.models_max) {
        throw Error(ErrorKind::config, std::to_string(startup_loads) + " models are marked load-on-startup, more than "
                                       "--models-max " + std::to_string(router_params_.models_max));
    }
    runtime_ = std::make_unique<ProcessRuntime>();
    front_ = std::make_unique<HttpFront>(router_params_, tail_, front_faults_, options_.max_request_bytes,
                                         [this](const server_http_req & req, const std::function<bool()> & stop) {
                                             return route(req, stop);
                                         });
    front_->serve_as_router();
    register_routes();
    try {
        front_->start();
    } catch (...) {
        front_.reset();
        runtime_.reset();
        throw;
    }
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        router_params_.port = front_->port();
        running_ = true;
        for (auto & [name, e] : entries_) {
            if (e->config.load_on_startup) {
                queue_.push_back(name);
            }
        }
        pump_locked(to_start);
    }
    maintenance_ = std::thread(&ModelPool::maintain, this);
    start_all(to_start);
}

ModelPool::Entry * ModelPool::lookup_locked(const std::string & name) {
    auto it = entries_.find(name);
    if (it != entries_.end()) {
        return it->second.get();
    }
    for (auto & [key, e] : entries_) {
        if (std::find(e->config.aliases.begin(), e->config.aliases.end(), name) != e->config.aliases.end()) {
            return e.get();
        }
    }
    return nullptr;
}

ModelPool::Entry & ModelPool::find_locked(const std::string & name) {
    Entry * e = lookup_locked(name);
    if (!e) {
        throw Error(ErrorKind::not_found, "model '" + name + "' not found");
    }
    return *e;
}

std::shared_ptr<ModelInstance> ModelPool::start_load_locked(Entry & e, const common_params & params, uint64_t need,
                                                            std::vector<std::shared_ptr<ModelInstance>> & to_start) {
    auto self = std::make_shared<std::weak_ptr<ModelInstance>>();
    const std::string name = e.config.name;
    auto inst = std::make_shared<ModelInstance>(params, MemoryPolicy{0, true}, tail_, e.faults,
                                                [this, name, self] { on_instance_change(name, *self); });
    *self = inst;
    if (fake_timing_) {
        inst->delay_load(2000);  // as llama-server's router: 2 s once per load (and per request, route())
    }
    inst->on_idle([this] { pump(); });  // its last request finished: it may be unloaded for a waiting model
    inst->gate_decodes(options_.decode_gate);
    inst->govern_threads(threads_governed(e.config.args, options_.use_env));
    reserved_ += need;
    ++alive_;
    ++e.loads;
    to_start.push_back(inst);
    return inst;
}

void ModelPool::pump() {
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        pump_locked(to_start);
    }
    start_all(to_start);
}

void ModelPool::start_all(std::vector<std::shared_ptr<ModelInstance>> & to_start) {
    for (auto & inst : to_start) {
        inst->start();
    }
    to_start.clear();
}

std::shared_ptr<bool> ModelPool::retire_instance_locked(std::shared_ptr<ModelInstance> inst, const std::string & name,
                                                        uint64_t bytes, double drain_s) {
    auto freed = std::make_shared<bool>(false);
    retiring_.push_back(Retiring{std::move(inst), name, bytes, deadline_after(drain_s), freed, false});
    cv_.notify_all();
    return freed;
}

std::shared_ptr<bool> ModelPool::retire_locked(Entry & e, double drain_s) {
    auto inst = std::move(e.current);
    e.current.reset();
    const uint64_t bytes = e.current_bytes;
    e.current_bytes = 0;
    publish_status_locked(e);
    return retire_instance_locked(std::move(inst), e.config.name, bytes, drain_s);
}

// Starts the loads the queue asks for, in order, while they fit (making room as needed).
void ModelPool::pump_locked(std::vector<std::shared_ptr<ModelInstance>> & to_start) {
    while (!queue_.empty() && running_ && !stopping_) {
        auto it = entries_.find(queue_.front());
        Entry * e = it == entries_.end() ? nullptr : it->second.get();
        if (!e || e->removed || e->current || e->parked) {
            queue_.pop_front();  // gone, or already loading or serving: its waiters wait on that
            continue;
        }
        if (!e->config_error) {
            // measured meanwhile (by a model on the same file and flags, here or in another
            // process)? Then that, not the estimate, is what it needs
            if (auto held = MeasuredMemory::process().find(e->expected.key)) {
                use_measurement_locked(*e, *held);
            }
        }
        std::optional<Failure> refused = e->config_error;
        if (!refused && options_.memory_budget > 0 && e->need > options_.memory_budget) {
            refused = Failure{ErrorKind::resource, "model '" + e->config.name + "' needs about " + mib_text(e->need) +
                                                       " with its prompt cache (the model: " + e->expected.describe() +
                                                       "), more than the pool's memory budget of " +
                                                       mib_text(options_.memory_budget) + "; nothing was loaded"};
        }
        if (refused) {
            e->failure = refused;
            ++e->failures;
            queue_.pop_front();
            publish_status_locked(*e);
            continue;
        }
        if (!make_room_locked(e->need, e)) {
            break;  // first in, first served: later models wait too
        }
        e->current = start_load_locked(*e, e->params, e->need, to_start);
        e->current_bytes = e->need;
        queue_.pop_front();
        publish_status_locked(*e);
    }
    cv_.notify_all();
}

void ModelPool::on_instance_change(const std::string & name, const std::weak_ptr<ModelInstance> & weak) {
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto inst = weak.lock();
        auto it = entries_.find(name);
        if (inst && it != entries_.end() && it->second->current == inst) {
            Entry & e = *it->second;
            switch (inst->state()) {
                case InstanceState::ready:
                    e.failure.reset();
                    e.last_used = clock::now();  // idle time counts from the load
                    note_measured_locked(e);
                    publish_status_locked(e);
                    break;
                case InstanceState::failed:
                    e.failure = inst->failure();
                    ++e.failures;
                    retire_locked(e, 0);
                    break;
                default: break;
            }
        }
        pump_locked(to_start);
    }
    cv_.notify_all();
    start_all(to_start);
}

// A retired instance's memory is gone: its bytes and its place in the count are free again.
void ModelPool::forget_freed_locked(const std::shared_ptr<ModelInstance> & inst) {
    for (auto it = retiring_.begin(); it != retiring_.end(); ++it) {
        if (it->inst == inst) {
            reserved_ -= it->bytes;
            --alive_;
            *it->freed = true;
            retiring_.erase(it);
            return;
        }
    }
}

// An unloaded entry's next load is judged by `held`, what a load of its file and flags held.
void ModelPool::use_measurement_locked(Entry & e, uint64_t held) {
    e.expected.measured = held;
    e.need = held + e.cache_bytes;
}

// What the entry's serving instance really holds corrects the estimate, for this and later
// loads; if it holds more than estimated (e.g. repacked weights), idle models are unloaded to
// get back under the budget.
void ModelPool::note_measured_locked(Entry & e) {
    const auto mem = e.current ? e.current->memory() : std::nullopt;
    if (!mem) {
        return;
    }
    const uint64_t held = mem->held();
    e.expected.measured = held;  // the instance recorded it for later loads too (MeasuredMemory)
    for (auto & [name, other] : entries_) {  // models on the same file and flags need as much
        if (other.get() != &e && !other->current && other->expected.key == e.expected.key) {
            use_measurement_locked(*other, held);
        }
    }
    const uint64_t total = held + mem->prompt_cache_limit_bytes;
    e.need = total;
    // the reservation becomes what is held: less frees room for waiting models (pumped by the
    // caller), more unloads idle models until the pool is back within its budget
    reserved_ = reserved_ - e.current_bytes + total;
    const bool grew = total > e.current_bytes;
    e.current_bytes = total;
    if (grew) {
        while (!fits_once_freed_locked(0, 0) && evict_one_locked(&e)) {
        }
    }
}

// The maintenance thread: frees drained (or timed-out) instances and unloads idle models.
void ModelPool::maintain() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
        Retiring * next = nullptr;
        for (auto & r : retiring_) {
            if (!r.taken && (stopping_ || clock::now() >= r.drain_deadline || r.inst->leases() == 0)) {
                next = &r;
                break;
            }
        }
        if (next) {
            next->taken = true;
            auto inst = next->inst;
            lock.unlock();
            inst->shutdown();  // ends what is left in flight (after the drain deadline), frees the model
#if defined(__GLIBC__)
            malloc_trim(0);
#endif
            lock.lock();
            std::vector<std::shared_ptr<ModelInstance>> to_start;
            forget_freed_locked(inst);
            pump_locked(to_start);
            if (!to_start.empty()) {
                lock.unlock();
                start_all(to_start);
                lock.lock();
            }
            cv_.notify_all();
            continue;
        }
        if (!stopping_) {
            for (auto & [name, e] : entries_) {
                if (e->idle_unload_s > 0 && e->ready() && !e->config.pinned && !e->parked &&
                    e->current->leases() == 0 && seconds_since(e->last_used) >= e->idle_unload_s) {
                    log_line(LogLevel::info, "model pool: unloading model '" + name + "', idle for " +
                                                 std::to_string(e->idle_unload_s) + " s");
                    retire_locked(*e, 0);
                }
            }
        }
        if (stopping_ && retiring_.empty() && alive_ == 0) {
            return;
        }
        if (!queue_.empty()) {
            std::vector<std::shared_ptr<ModelInstance>> to_start;
            pump_locked(to_start);  // a model may have become idle since the last pump
            if (!to_start.empty()) {
                lock.unlock();
                start_all(to_start);
                lock.lock();
            }
        }
        cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
}

void ModelPool::publish_status_locked(const Entry & e) {
    json data = {{"status", e.status()}};
    if (!e.current) {
        data["exit_code"] = e.failure ? 1 : 0;
        if (e.failure) {
            data["failed"] = true;
            data["error"] = e.failure->message;
        }
    } else if (e.current->state() == InstanceState::ready) {
        data["info"] = e.current->routes().get_model_info();
    }
    events_.publish(safe_json_to_str({{"model", e.config.name}, {"event", "status_change"}, {"data", data}}));
}

PoolModelInfo ModelPool::info_locked(const Entry & e) const {
    PoolModelInfo info;
    info.name = e.config.name;
    info.aliases = e.config.aliases;
    info.tags = e.config.tags;
    info.source = e.config.source;
    info.status = e.status();
    const std::optional<Failure> failure = e.config_error ? e.config_error : e.failure;
    info.failed = !e.current && failure.has_value();
    if (failure) {
        info.failure_kind = failure->kind;
        info.failure = failure->message;
    }
    info.args = e.config.args;
    info.model_path = e.params.model.path;
    info.memory_estimate = e.need;
    info.memory_measured = e.expected.is_measured();
    if (e.current) {
        info.memory = e.current->memory();
        info.active_requests = e.current->leases();
        info.load_progress = e.current->load_progress();
    }
    info.last_used = e.last_used_unix;
    info.pinned = e.config.pinned;
    info.loads = e.loads;
    return info;
}

std::vector<PoolModelInfo> ModelPool::models() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<PoolModelInfo> out;
    for (const auto & [name, e] : entries_) {
        out.push_back(info_locked(*e));
    }
    return out;
}

// Waits (lock held, released while waiting) until the instance is ready or gone.
bool ModelPool::wait_ready(std::unique_lock<std::mutex> & lock, const std::shared_ptr<ModelInstance> & inst,
                           clock::time_point deadline) {
    while (true) {
        const InstanceState s = inst->state();
        if (s == InstanceState::ready) {
            return true;
        }
        if (s != InstanceState::loading || stopping_ || clock::now() >= deadline) {
            return false;
        }
        cv_.wait_until(lock, std::min(deadline, clock::now() + std::chrono::milliseconds(100)));
    }
}

bool ModelPool::wait_freed(std::unique_lock<std::mutex> & lock, const std::shared_ptr<bool> & freed,
                           clock::time_point deadline) {
    while (!*freed) {
        if (clock::now() >= deadline) {
            return false;
        }
        cv_.wait_until(lock, std::min(deadline, clock::now() + std::chrono::milliseconds(100)));
    }
    return true;
}

void ModelPool::load(const std::string & requested, double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!running_) {
        throw Error(ErrorKind::not_running, "the model pool is not running");
    }
    std::shared_ptr<Entry> e = entries_.at(find_locked(requested).config.name);
    if (e->config_error) {
        throw Error(e->config_error->kind, e->config_error->message);
    }
    Waited w = wait_serving_locked(lock, e, true, false, deadline_after(timeout_s), nullptr);
    switch (w.outcome) {
        case Waited::serving: return;
        case Waited::removed:
            throw Error(ErrorKind::not_found, "model '" + requested + "' was removed while it loaded");
        case Waited::failed: {
            const Failure f = w.failure.value_or(Failure{ErrorKind::internal, "the model failed"});
            throw Error(f.kind, f.message, tail_->lines());
        }
        case Waited::timed_out:
            throw Error(ErrorKind::timeout, "model '" + e->config.name + "' did not load within " +
                                                std::to_string(timeout_s) + " s (it " +
                                                (e->current ? "is still loading" : "waits for room in the pool") + ")");
        default:
            throw Error(ErrorKind::not_running, "the model pool stopped while model '" + e->config.name + "' loaded");
    }
}

bool ModelPool::unload(const std::string & requested, double drain_timeout_s, bool wait) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!running_) {
        throw Error(ErrorKind::not_running, "the model pool is not running");
    }
    Entry & e = find_locked(requested);
    if (!e.current) {
        return false;
    }
    const double drain = drain_timeout_s < 0 ? e.config.stop_timeout_s : drain_timeout_s;
    auto freed = retire_locked(e, drain);
    if (wait) {
        wait_freed(lock, freed, clock::time_point::max());
    }
    return true;
}

void ModelPool::add(PoolModelConfig model) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) {
            throw Error(ErrorKind::not_running, "the model pool is not running");
        }
    }
    insert(collect_pool_models(options_.router_args, "", "", {model}).front(), true);
}

// Adds a rendered model; with `strict`, one whose flags or file are bad is refused (else it is
// listed as failed, as at startup).
void ModelPool::insert(PoolModelConfig config, bool strict) {
    std::vector<PoolModelConfig> existing;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto & [name, e] : entries_) {
            existing.push_back(e->config);
        }
    }
    check_unique_names(existing, config);
    auto e = std::make_shared<Entry>();
    e->config = std::move(config);
    prepare_entry(*e);  // reads the file: outside the lock
    if (strict && e->config_error) {
        throw Error(e->config_error->kind, e->config_error->message);
    }
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        existing.clear();
        for (const auto & [name, other] : entries_) {
            existing.push_back(other->config);
        }
        check_unique_names(existing, e->config);  // again: another add() may have raced this one
        entries_[e->config.name] = e;
        publish_status_locked(*e);
        if (e->config.load_on_startup) {
            queue_.push_back(e->config.name);
            pump_locked(to_start);
        }
    }
    start_all(to_start);
}

void ModelPool::remove(const std::string & name, double drain_timeout_s) {
    std::shared_ptr<bool> freed;
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = entries_.find(name);
    if (it == entries_.end()) {
        throw Error(ErrorKind::not_found, "model '" + name + "' not found (remove() takes the model's name, not an alias)");
    }
    std::shared_ptr<Entry> e = it->second;
    if (e->current) {
        freed = retire_locked(*e, drain_timeout_s < 0 ? e->config.stop_timeout_s : drain_timeout_s);
    }
    e->removed = true;
    entries_.erase(it);
    events_.publish(safe_json_to_str({{"model", name}, {"event", "model_remove"}}));
    cv_.notify_all();
    if (freed) {
        wait_freed(lock, freed, clock::time_point::max());
    }
}

std::optional<LoopMetrics> ModelPool::query_metrics(const std::string & name, double timeout_s) {
    std::shared_ptr<ModelInstance> inst;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        inst = find_locked(name).current;
    }
    return inst ? inst->query_metrics(timeout_s) : std::nullopt;
}

void ModelPool::inject_fault(const std::string & name, const FaultSpec & spec) {
    std::shared_ptr<ModelInstance> inst;
    std::shared_ptr<FaultPlan> faults;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        Entry & e = find_locked(name);
        faults = e.faults;
        inst = e.current;
    }
    if (acts_on_requests(spec.kind)) {
        front_faults_->arm(spec);  // HTTP requests, whichever model they name
        faults->arm(spec);         // direct calls to this model
        return;
    }
    faults->arm(spec);
    if (spec.kind == FaultKind::loop_dies && inst && inst->state() == InstanceState::ready && faults->take(spec.kind)) {
        inst->kill_loop();
    }
}

void ModelPool::clear_faults() {
    front_faults_->clear();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto & [name, e] : entries_) {
        e->faults->clear();
    }
}

void ModelPool::stop() {
    std::vector<std::shared_ptr<ModelInstance>> all;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) {
            return;
        }
        stopping_ = true;
        for (auto & [name, e] : entries_) {
            if (e->current) {
                retire_locked(*e, 0);
            }
        }
        for (auto & r : retiring_) {
            if (!r.taken) {
                r.taken = true;
                all.push_back(r.inst);
            }
        }
        queue_.clear();
    }
    cv_.notify_all();
    std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
    front_->begin_stop();  // handlers and streams let go
    // every model shuts down at once: a stop waits for the slowest, not for the sum
    std::vector<std::thread> stoppers;
    for (auto & inst : all) {
        stoppers.emplace_back([inst] { inst->shutdown(); });
    }
    for (auto & t : stoppers) {
        t.join();
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto & inst : all) {
            forget_freed_locked(inst);
        }
    }
    cv_.notify_all();
    if (maintenance_.joinable()) {
        maintenance_.join();  // it finishes an instance it was freeing, then returns
    }
    front_->stop_and_join();
    events_.close();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        running_ = false;
    }
    runtime_.reset();
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

}  // namespace llamaproc
