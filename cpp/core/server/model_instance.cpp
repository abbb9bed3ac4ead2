#include "server/model_instance.h"

#include "deadline.h"
#include "rpc/rpc_devices.h"

#include "server/cpu_governor.h"
#include "server/decode_gate.h"
#include "server/draft_policy.h"

#include "server-common.h"
#include "server-context.h"

#include "ggml.h"
#include "ggml-backend.h"
#include "llama-ext.h"  // llama_get_memory_breakdown (llama.cpp's staging API, also used by fit.cpp)

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace llamaproc {

namespace {

using clock = std::chrono::steady_clock;
constexpr uint64_t MiB = 1024 * 1024;

// Without a memory_limit the prompt cache may use this share of the memory available at
// load time (llama-server's fixed 8 GiB default is the cap).
constexpr uint64_t PROMPT_CACHE_SHARE_OF_AVAILABLE = 10;  // percent

// How long a shutdown waits for in-flight handlers to let go (they poll every second).
constexpr auto LEASE_WAIT = std::chrono::seconds(30);
// How long the teardown of an instance that hit a native assertion may take before it is
// abandoned (its worker threads may be blocked for good).
constexpr auto POISONED_TEARDOWN_WAIT = std::chrono::seconds(5);

}  // namespace

std::optional<DeviceStatus> device_status(const std::string & name) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
    if (dev == nullptr) {
        return std::nullopt;
    }
    size_t free = 0, total = 0;
    if (!query_device_memory(dev, free, total)) {
        return std::nullopt;  // an RPC worker that no longer answers
    }
    return DeviceStatus{free, total};
}

uint64_t default_prompt_cache_bytes() {
    return std::min<uint64_t>(static_cast<uint64_t>(common_params{}.cache_ram_mib) * MiB,
                              available_memory_bytes() / 100 * PROMPT_CACHE_SHARE_OF_AVAILABLE);
}

uint64_t available_memory_bytes() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (meminfo >> key >> kib >> unit) {
        if (key == "MemAvailable:") {
            return kib * 1024;
        }
    }
#if defined(_SC_AVPHYS_PAGES)
    const long pages = sysconf(_SC_AVPHYS_PAGES);
    const long page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
    }
#endif
    return 0;
}

ModelInstance::ModelInstance(common_params params, MemoryPolicy memory, std::shared_ptr<LogTail> tail,
                             std::shared_ptr<FaultPlan> faults, ChangeCallback on_change)
    : params_(std::move(params)),
      memory_limit_(memory.limit),
      cache_ram_explicit_(memory.cache_ram_explicit),
      tail_(std::move(tail)),
      faults_(std::move(faults)),
      on_change_(std::move(on_change)) {
    params_.load_progress_callback = &ModelInstance::on_load_progress;
    params_.load_progress_callback_user_data = this;
}

ModelInstance::~ModelInstance() {
    shutdown();
}

void ModelInstance::start() {
    std::lock_guard<std::mutex> once(shutdown_mutex_);
    if (shut_down_) {
        return;  // shut down before it started (a stop() racing a restart)
    }
    runtime_ = std::make_shared<ProcessRuntime>();
    make_server();
    thread_ = std::thread(&ModelInstance::run, this);
}

void ModelInstance::make_server() {
    routes_.reset();  // the routes refer to the context they were made with
    ctx_server_ = std::make_unique<server_context>();
    ctx_server_->set_draft_policy(make_draft_policy(params_));
    routes_ = std::make_unique<server_routes>(params_, *ctx_server_);
    routes_->init_routes();
}

InstanceState ModelInstance::state() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_;
}

std::optional<Failure> ModelInstance::failure() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
}

std::optional<InstanceMemory> ModelInstance::memory() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return memory_;
}

bool ModelInstance::acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != InstanceState::ready || down_->load()) {
        return false;
    }
    ++leases_;
    return true;
}

void ModelInstance::release() {
    bool idle;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        idle = --leases_ == 0;
    }
    cv_.notify_all();
    if (idle && on_idle_) {
        on_idle_();
    }
}

int ModelInstance::leases() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return leases_;
}

void ModelInstance::set_state(InstanceState s) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        state_ = s;
    }
    cv_.notify_all();
    if (on_change_) {
        on_change_();
    }
}

void ModelInstance::fail(ErrorKind kind, const std::string & message, bool poisoned) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (state_ == InstanceState::failed || state_ == InstanceState::stopped) {
            return;  // the first cause is the one kept
        }
        failure_ = Failure{kind, message};
        state_ = InstanceState::failed;
    }
    if (poisoned) {
        poisoned_ = true;
    }
    down_->store(true);  // waiting handlers let go, streams end with an error chunk
    log_line(LogLevel::error, message);
    cv_.notify_all();
    if (on_change_) {
        on_change_();
    }
}

void ModelInstance::fail_from_request(const std::string & what) {
    fail(ErrorKind::internal, "llama.cpp hit a failed assertion while serving a request: " + what, true);
    if (ctx_server_) {
        ctx_server_->terminate();  // the loop must not go on with a half-updated state
    }
}

void ModelInstance::kill_loop() {
    if (!acquire()) {
        return;
    }
    // READY is set just before start_loop(), which resets the queue's running flag: repeat
    // until the loop has really returned (the instance then fails)
    const auto deadline = clock::now() + std::chrono::seconds(5);
    while (state() == InstanceState::ready && clock::now() < deadline) {
        ctx_server_->terminate();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    release();
}

bool ModelInstance::on_load_progress(float progress, void * self) {
    auto * inst = static_cast<ModelInstance *>(self);
    inst->load_progress_.store(progress);
    if (inst->slow_load_ms_ > 0) {
        // sleep in short steps so that stop() still cancels promptly
        const auto until = clock::now() + std::chrono::milliseconds(inst->slow_load_ms_);
        while (clock::now() < until && !inst->stop_requested_.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }
    return !inst->stop_requested_.load();  // false cancels the load
}

// Lines logged on the loop thread pass here: the "assert while serving a request" fault
// fires from the line llama.cpp logs when a slot starts a task, i.e. inside the loop's own
// frames, so the assertion unwinds through llama.cpp exactly as a real one would.
void ModelInstance::on_loop_line(const std::string & line) {
    if (line.find("processing task") != std::string::npos && faults_->take(FaultKind::assert_in_request)) {
        ggml_abort(__FILE__, __LINE__, "injected fault: GGML_ASSERT failed while serving a request");
    }
}

// The prompt cache's cap: an explicit --cache-ram as given (checked against the limit), else
// a share of the available memory, and with a memory_limit no more than what `need` leaves.
void ModelInstance::prepare_prompt_cache(uint64_t need) {
    const uint64_t cap = prompt_cache_cap(params_, cache_ram_explicit_, memory_limit_, need, default_prompt_cache_bytes());
    if (!cache_ram_explicit_) {
        params_.cache_ram_mib = static_cast<int32_t>(cap / MiB);  // 0 disables the cache
    }
}

// What memory_limit is checked against before loading: what an earlier load of the same file
// and flags measured (MeasuredMemory), else llama.cpp's dry-run estimate.
ExpectedMemory ModelInstance::expected_need() {
    return expected_within_limit(params_, memory_limit_);
}

InstanceMemory ModelInstance::measure() const {
    InstanceMemory mem;
    for (const auto & [type, data] : llama_get_memory_breakdown(ctx_server_->get_llama_context())) {
        mem.model_bytes += data.model;
        mem.context_bytes += data.context;
        mem.compute_bytes += data.compute;
        ggml_backend_dev_t dev = ggml_backend_buft_is_host(type) ? nullptr : ggml_backend_buft_get_device(type);
        if (dev == nullptr || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) {
            continue;  // host memory: counted above, not a device's
        }
        ggml_backend_dev_props props;
        ggml_backend_dev_get_props(dev, &props);
        auto it = std::find_if(mem.devices.begin(), mem.devices.end(),
                               [&](const DeviceMemory & d) { return d.name == props.name; });
        if (it == mem.devices.end()) {
            mem.devices.push_back({props.name ? props.name : "", props.description ? props.description : "",
                                   props.device_id ? props.device_id : "", 0});
            it = mem.devices.end() - 1;
        }
        it->bytes += data.model + data.context + data.compute;
    }
    mem.prompt_cache_limit_bytes = params_.cache_ram_mib > 0 ? static_cast<uint64_t>(params_.cache_ram_mib) * MiB : 0;
    return mem;
}

void ModelInstance::run() {
    ThreadLogScope scope(tail_, [this](const std::string & line) { on_loop_line(line); });
    name_this_thread("llp-loop");  // ggml's workers, made by this thread, inherit the name
    if (govern_threads_) {
        pools_ = std::make_unique<ThreadPools>(params_.cpuparams);
    }
    DecodeGateScope gate(gate_decodes_, govern_threads_, &decode_report_, pools_.get());
    RpcDecodeCheckScope rpc_check(uses_rpc_devices(params_.devices));
    const std::string & path = params_.model.path;
    bool loaded = false;
    try {
        if (faults_->take(FaultKind::load_fails)) {
            throw Error(ErrorKind::model_load, "injected fault: failed to load model '" + path + "'");
        }
        if (faults_->take(FaultKind::over_memory)) {
            throw Error(ErrorKind::resource, "injected fault: model '" + path +
                                                 "' needs more than memory_limit; nothing was loaded");
        }
        slow_load_ms_ = faults_->take(FaultKind::slow_load) ? faults_->param(FaultKind::slow_load) : 0;
        for (const auto until = clock::now() + std::chrono::milliseconds(load_delay_ms_);
             clock::now() < until && !stop_requested_.load();) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        InstanceMemory mem;
        // With a memory_limit the first load also measures: if what it holds leaves the prompt
        // cache less room than the estimate gave it, the model loads once more with the right cap.
        for (int attempt = 0; attempt < 2 && !stop_requested_.load(); ++attempt) {
            // judged (with a limit) or only keyed before the load adapts any params
            std::optional<ExpectedMemory> expected;
            if (memory_limit_ > 0) {
                expected = expected_need();
            }
            const std::string memory_id = expected ? expected->key : memory_key(params_);
            prepare_prompt_cache(expected ? expected->need() : 0);
            params_.load_progress_callback = &ModelInstance::on_load_progress;
            params_.load_progress_callback_user_data = this;
            const bool ok = ctx_server_->load_model(params_);
            if (take_rpc_failure()) {  // the weights never reached an RPC worker (patches/0005)
                throw Error(ErrorKind::model_load, "failed to load model '" + path + "': the connection to an RPC "
                                                   "worker broke while the weights were sent to it");
            }
            if (!ok) {
                if (stop_requested_.load()) {
                    break;
                }
                throw Error(ErrorKind::model_load, "failed to load model '" + path + "'; see the log lines attached");
            }
            mem = measure();
            if (expected) {
                mem.expected_bytes = expected->need();
                mem.expected_measured = expected->is_measured();
            }
            const uint64_t held = mem.held();
            // later loads of this file with these flags (a restart, a pool's other models, the
            // next process) are judged by what this one holds
            MeasuredMemory::process().record(memory_id, held);
            if (memory_limit_ == 0 || held + mem.prompt_cache_limit_bytes <= memory_limit_) {
                loaded = true;
                break;
            }
            if (held > memory_limit_ || cache_ram_explicit_ || attempt == 1) {
                throw Error(ErrorKind::resource,
                            "model '" + path + "' holds " + mib_text(held) + " once loaded (weights " +
                                mib_text(mem.model_bytes) + ", context " + mib_text(mem.context_bytes) + ", compute " +
                                mib_text(mem.compute_bytes) + ") and a prompt cache of up to " +
                                mib_text(mem.prompt_cache_limit_bytes) + ", over memory_limit=" +
                                mib_text(memory_limit_) + "; it was unloaded. Hint: raise memory_limit or lower context_size");
            }
            log_line(LogLevel::info, "memory_limit: the model holds " + mib_text(held) +
                                         " once loaded, more than llama.cpp estimated; reloading it with a smaller prompt cache");
            make_server();
            if (pools_) {
                pools_->forget_contexts();
            }
        }
        if (loaded && !stop_requested_.load()) {
            routes_->update_meta(*ctx_server_);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                memory_ = mem;
            }
            load_progress_ = 1.0f;
            set_state(InstanceState::ready);
            ctx_server_->start_loop();  // returns once terminate() is called
            if (!stop_requested_.load()) {
                fail(ErrorKind::internal, "the inference loop stopped unexpectedly");
            }
        }
    } catch (const Error & e) {
        fail(e.kind(), e.what());
    } catch (const NativeAbort & e) {
        fail(ErrorKind::internal,
             std::string(loaded ? "llama.cpp hit a failed assertion in the inference loop: "
                                : "llama.cpp hit a failed assertion while loading the model: ") + e.what(),
             true);
    } catch (const std::exception & e) {
        fail(loaded ? ErrorKind::internal : ErrorKind::model_load,
             (loaded ? std::string("the inference loop failed: ") : "failed to load model '" + path + "': ") + e.what());
    }
    thread_done_ = true;
    cv_.notify_all();
}

std::optional<LoopMetrics> ModelInstance::query_metrics(double timeout_s) {
    if (!acquire()) {
        return std::nullopt;
    }
    struct Release {
        ModelInstance * inst;
        ~Release() { inst->release(); }
    } release{this};
    ThreadLogScope scope(tail_);
    server_response_reader reader = ctx_server_->get_response_reader();
    server_task task(SERVER_TASK_TYPE_METRICS);
    task.id = reader.get_new_id();
    task.metrics_reset_bucket = false;
    reader.post_task(std::move(task), true);
    const auto deadline = deadline_after(timeout_s);
    server_task_result_ptr result = reader.next([&] { return clock::now() >= deadline || down_->load(); });
    auto * m = dynamic_cast<server_task_result_metrics *>(result.get());
    if (m == nullptr) {
        return std::nullopt;
    }
    LoopMetrics out;
    out.load.n_slots = params_.n_parallel;
    out.load.n_processing = m->n_processing_slots;
    out.load.n_deferred = m->n_tasks_deferred;
    out.prompt_tokens = m->metrics.prompt.count;
    out.prompt_seconds = m->metrics.prompt.time / 1e6;
    out.prompt_tokens_cached = m->metrics.n_prompt_cached;
    out.generated_tokens = m->metrics.predict.count;
    out.generation_seconds = m->metrics.predict.time / 1e6;
    out.decode_calls = m->metrics.n_decode;
    out.draft_tokens = m->metrics.n_draft_tokens;
    out.draft_accepted = m->metrics.n_draft_accepted;
    out.prometheus = m->to_metrics();
    out.decode_threads = decode_report_.threads.load();
    out.decode_reason = static_cast<DecodeReason>(decode_report_.reason.load());
    if (!govern_threads_) {
        out.decode_threads = params_.cpuparams.n_threads;
        out.decode_reason = DecodeReason::fixed;
    }
    return out;
}

bool ModelInstance::shutdown() {
    std::lock_guard<std::mutex> once(shutdown_mutex_);
    if (shut_down_) {
        return freed_;
    }
    shut_down_ = true;
    stop_requested_ = true;  // cancels a load in progress (the progress callback returns false)
    down_->store(true);      // waiting handlers and streams let go within one polling interval
    if (thread_.joinable()) {
        ThreadLogScope scope(tail_);
        // terminate() until the thread is out: it may be between load_model() and
        // start_loop(), and start_loop() would otherwise reset the queue's running flag
        while (!thread_done_.load()) {
            ctx_server_->terminate();
            std::unique_lock<std::mutex> lock(mutex_);
            cv_.wait_for(lock, std::chrono::milliseconds(5), [this] { return thread_done_.load(); });
        }
        thread_.join();
    }
    bool leases_gone;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        leases_gone = cv_.wait_for(lock, LEASE_WAIT, [this] { return leases_ == 0; });
    }
    freed_ = false;
    if (!leases_gone) {
        log_line(LogLevel::error, "model instance shutdown: requests still hold it after 30 s; its memory is left allocated");
        (void) ctx_server_.release();  // freeing under a live handler would crash the host
        (void) routes_.release();
        (void) pools_.release();       // the context may still use them
    } else if (poisoned_.load()) {
        // after a native assertion, ggml's worker threads may wait forever in a barrier and
        // freeing the context would join them: free on a helper thread, abandon it if stuck
        auto done = std::make_shared<std::atomic<bool>>(false);
        std::thread reaper([routes = std::move(routes_), ctx = std::move(ctx_server_), pools = std::move(pools_),
                            runtime = runtime_, done]() mutable {
            routes.reset();
            ctx.reset();
            pools.reset();
            runtime.reset();
            done->store(true);
        });
        const auto deadline = clock::now() + POISONED_TEARDOWN_WAIT;
        while (!done->load() && clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (done->load()) {
            reaper.join();
            freed_ = true;
        } else {
            log_line(LogLevel::error,
                     "model instance shutdown: after a native assertion llama.cpp's threads did not stop within 5 s; "
                     "they and the model's memory are abandoned");
            reaper.detach();
        }
    } else {
        routes_.reset();
        ctx_server_.reset();  // frees the model, the context and the KV cache
        pools_.reset();       // the thread pools it used
        freed_ = true;
    }
    runtime_.reset();
    set_state(InstanceState::stopped);
    return freed_;
}

}  // namespace llamaproc
