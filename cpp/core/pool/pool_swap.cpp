// Swaps (new weights under a model's name with no failed request) and reloading the pool's
// sources. A swap is planned (flags parsed, memory estimated) before anything changes, then
// done hot (the new model loads beside the old one, requests flip to it, the old one drains)
// or cold (new requests park, the old model drains and is freed, the new one loads; if it
// fails, the old one loads again).
#include "pool/model_pool.h"
#include "pool/pool_internal.h"

#include "pool/pool_models.h"

#include "deadline.h"
#include "memory_estimate.h"

#include "server-common.h"

#include <algorithm>

namespace llamaproc {

using pool_internal::seconds_since;

SwapReport ModelPool::swap(const std::string & requested, std::vector<std::string> args, const std::string & mode,
                           double timeout_s) {
    if (mode != "auto" && mode != "hot" && mode != "cold") {
        throw Error(ErrorKind::config, "swap mode must be 'auto', 'hot' or 'cold', got '" + mode + "'");
    }
    std::lock_guard<std::mutex> one_swap(swap_mutex_);
    const auto deadline = deadline_after(timeout_s);
    SwapPlan plan = plan_swap(requested, std::move(args));
    Entry & e = *plan.entry;

    std::unique_lock<std::mutex> lock(mutex_);
    // a load in progress finishes first
    if (e.current && e.current->state() == InstanceState::loading) {
        auto loading = e.current;
        wait_ready(lock, loading, deadline);
    }
    if (!e.ready()) {
        // nothing serves under this name: the next request (or load()) loads the new model
        adopt_locked(e, plan.fresh);
        publish_status_locked(e);
        SwapReport report;
        report.mode = "cold";
        return report;
    }
    const bool hot = mode == "hot" || (mode == "auto" && could_fit_locked(plan.fresh.need, &e));
    return hot ? swap_hot_locked(lock, plan, deadline, timeout_s) : swap_cold_locked(lock, plan, deadline, timeout_s);
}

ModelPool::SwapPlan ModelPool::plan_swap(const std::string & requested, std::vector<std::string> args) {
    SwapPlan plan;
    PoolModelConfig old_config;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) {
            throw Error(ErrorKind::not_running, "the model pool is not running");
        }
        plan.entry = entries_.at(find_locked(requested).config.name);
        old_config = plan.entry->config;
    }
    PoolModelConfig given = old_config;
    given.args = std::move(args);
    given.aliases.clear();
    given.tags.clear();
    Entry & fresh = plan.fresh;
    fresh.config = collect_pool_models(options_.router_args, "", "", {given}).front();
    fresh.config.aliases = old_config.aliases;
    fresh.config.tags = old_config.tags;
    fresh.config.pinned = old_config.pinned;
    fresh.config.source = old_config.source;
    prepare_entry(fresh);
    if (fresh.config_error) {
        throw Error(fresh.config_error->kind, fresh.config_error->message);
    }
    if (options_.memory_budget > 0 && fresh.need > options_.memory_budget) {
        throw Error(ErrorKind::resource, "the new model for '" + old_config.name + "' needs about " + mib_text(fresh.need) +
                                             " with its prompt cache (the model: " + fresh.expected.describe() +
                                             "), more than the pool's memory budget of " +
                                             mib_text(options_.memory_budget) + "; nothing changed");
    }
    return plan;
}

void ModelPool::adopt_locked(Entry & e, const Entry & fresh) {
    e.config = fresh.config;
    e.params = fresh.params;
    e.need = fresh.need;
    e.expected = fresh.expected;
    e.cache_bytes = fresh.cache_bytes;
    e.idle_unload_s = fresh.idle_unload_s;
    e.config_error.reset();
}

std::shared_ptr<ModelInstance> ModelPool::load_now_locked(std::unique_lock<std::mutex> & lock, Entry & e,
                                                          const common_params & params, uint64_t need) {
    std::vector<std::shared_ptr<ModelInstance>> to_start;
    auto inst = start_load_locked(e, params, need, to_start);
    lock.unlock();
    start_all(to_start);
    lock.lock();
    return inst;
}

SwapReport ModelPool::swap_hot_locked(std::unique_lock<std::mutex> & lock, SwapPlan & plan,
                                      clock::time_point deadline, double drain_timeout_s) {
    Entry & e = *plan.entry;
    const Entry & fresh = plan.fresh;
    SwapReport report;
    report.mode = "hot";
    // room beside the old model, unloading idle others (waits for their memory)
    if (!wait_for_room_locked(lock, fresh.need, &e, deadline)) {
        throw Error(ErrorKind::resource, "a hot swap of '" + e.config.name +
                                             "' needs room for both models, and the pool has none (other models "
                                             "are busy, pinned or loading); try mode='cold'");
    }
    const auto t0 = clock::now();
    auto inst = load_now_locked(lock, e, fresh.params, fresh.need);
    const bool ok = wait_ready(lock, inst, deadline);
    report.load_s = seconds_since(t0);
    if (!ok) {
        const auto f = inst->failure();
        retire_instance_locked(inst, e.config.name, fresh.need, 0);
        if (!f) {
            throw Error(stopping_ ? ErrorKind::not_running : ErrorKind::timeout,
                        "the new model for '" + e.config.name + "' did not load in time; the old model serves on");
        }
        throw Error(f->kind, "swap of '" + e.config.name + "' failed, the old model serves on: " + f->message,
                    tail_->lines());
    }
    // flip: new requests go to the new instance, the old one drains
    auto old = e.current;
    const uint64_t old_bytes = e.current_bytes;
    report.finished_on_old = old->leases();
    adopt_locked(e, fresh);
    e.current = inst;
    e.current_bytes = fresh.need;
    note_measured_locked(e);
    publish_status_locked(e);
    const auto t1 = clock::now();
    auto freed = retire_instance_locked(old, e.config.name, old_bytes, drain_timeout_s);
    wait_freed(lock, freed, clock::time_point::max());
    report.drain_s = seconds_since(t1);
    return report;
}

SwapReport ModelPool::swap_cold_locked(std::unique_lock<std::mutex> & lock, SwapPlan & plan,
                                       clock::time_point deadline, double drain_timeout_s) {
    Entry & e = *plan.entry;
    const Entry & fresh = plan.fresh;
    SwapReport report;
    report.mode = "cold";
    const common_params old_params = e.params;
    const uint64_t old_need = e.need;
    e.parked = true;
    const auto t1 = clock::now();
    report.finished_on_old = e.current->leases();
    auto freed = retire_locked(e, drain_timeout_s);
    wait_freed(lock, freed, clock::time_point::max());
    report.drain_s = seconds_since(t1);
    // loads while requests stay parked; nullptr when there is no room in time or it fails
    auto load_parked = [&](const common_params & params, uint64_t need) -> std::shared_ptr<ModelInstance> {
        if (!wait_for_room_locked(lock, need, &e, deadline)) {
            return nullptr;
        }
        auto inst = load_now_locked(lock, e, params, need);
        e.current = inst;
        e.current_bytes = need;
        if (!wait_ready(lock, inst, deadline)) {
            if (e.current == inst) {
                retire_locked(e, 0);
            }
            return nullptr;
        }
        return inst;
    };
    auto unpark = [&] {
        e.parked = false;
        publish_status_locked(e);
        cv_.notify_all();
    };
    const auto t0 = clock::now();
    auto inst = load_parked(fresh.params, fresh.need);
    report.load_s = seconds_since(t0);
    if (inst) {
        adopt_locked(e, fresh);
        note_measured_locked(e);  // into the new model's figures, now the entry's
        unpark();
        return report;
    }
    const std::string why = e.failure ? e.failure->message : "it did not load in time";
    // roll back: the old model again
    auto back = load_parked(old_params, old_need);
    unpark();
    if (!back) {
        throw Error(ErrorKind::model_load, "swap of '" + e.config.name + "' failed (" + why +
                                               ") and reloading the old model failed too; the model is unloaded",
                    tail_->lines());
    }
    throw Error(ErrorKind::model_load, "swap of '" + e.config.name + "' failed, the old model was reloaded: " + why,
                tail_->lines());
}

ReloadReport ModelPool::reload_sources() {
    ReloadReport report;
    if (router_params_.models_dir.empty() && router_params_.models_preset.empty() && !options_.read_cache) {
        return report;
    }
    std::lock_guard<std::mutex> one_reload(reload_mutex_);
    std::vector<PoolModelConfig> fresh = collect_pool_models(options_.router_args, router_params_.models_dir,
                                                             router_params_.models_preset, {}, options_.read_cache);
    std::vector<PoolModelConfig> added, changed;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto & [name, e] : entries_) {
            const bool still = std::any_of(fresh.begin(), fresh.end(), [&](const auto & f) { return f.name == name; });
            if (e->config.source != "api" && !still) {
                report.removed.push_back(name);
            }
        }
        for (auto & f : fresh) {
            auto it = entries_.find(f.name);
            if (it == entries_.end()) {
                added.push_back(f);
                continue;
            }
            it->second->config.hidden = f.hidden;  // a preset's dedup-cache-models set or removed
            if (it->second->config.args != f.args || it->second->config.aliases != f.aliases) {
                changed.push_back(f);
            }
        }
    }
    for (const auto & name : report.removed) {
        remove(name, -1);  // drains
    }
    for (auto & f : added) {
        report.added.push_back(f.name);
        try {
            insert(f, false);
        } catch (const Error & err) {
            log_line(LogLevel::error, "reloading models: model '" + f.name + "' not added: " + err.what());
        }
    }
    for (auto & f : changed) {
        report.changed.push_back(f.name);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = entries_.find(f.name);
            if (it == entries_.end()) {
                continue;
            }
            it->second->config.aliases = f.aliases;
            it->second->config.tags = f.tags;
            it->second->config.preset_ini = f.preset_ini;
        }
        try {
            // a running model changes by a swap (no failed request), the others at their next load
            swap(f.name, f.args, "auto", 600);
        } catch (const Error & err) {
            log_line(LogLevel::error, "reloading models: model '" + f.name + "' keeps its old settings: " + err.what());
        }
    }
    events_.publish(safe_json_to_str({{"model", "*"}, {"event", "models_reload"}}));
    return report;
}

}  // namespace llamaproc
