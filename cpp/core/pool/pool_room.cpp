// Room in the pool: whether a load fits the model count (--models-max) and the memory budget,
// and making room by unloading idle models, least recently used first.
#include "pool/model_pool.h"

#include "native_log.h"

#include <algorithm>

namespace llamaproc {

bool ModelPool::fits_locked(uint64_t need, int extra_instances) const {
    const int max = router_params_.models_max;
    return (max <= 0 || alive_ + extra_instances <= max) &&
           (options_.memory_budget == 0 || reserved_ + need <= options_.memory_budget);
}

// Unloads idle models, least recently used first, until `need` fits beside what stays.
// Busy, loading, pinned and waited-for models stay. True once it fits now; false while it
// does not (yet: the memory of a model being freed counts until it is gone).
bool ModelPool::make_room_locked(uint64_t need, const Entry * keep) {
    while (!fits_once_freed_locked(need, 1)) {
        if (!evict_one_locked(keep)) {
            return false;
        }
    }
    return fits_locked(need, 1);
}

// Whether `need` (and `extra_instances` more instances) fit once the models being freed are gone.
bool ModelPool::fits_once_freed_locked(uint64_t need, int extra_instances) const {
    return fits_in_locked(room_once_freed_locked(), need, extra_instances);
}

ModelPool::Room ModelPool::room_once_freed_locked() const {
    Room taken{reserved_, alive_};
    for (const auto & r : retiring_) {
        taken.bytes -= r.bytes;
        --taken.instances;
    }
    return taken;
}

bool ModelPool::fits_in_locked(const Room & taken, uint64_t need, int extra_instances) const {
    const int max = router_params_.models_max;
    return (max <= 0 || taken.instances + extra_instances <= max) &&
           (options_.memory_budget == 0 || taken.bytes + need <= options_.memory_budget);
}

// Unloads the least recently used idle model (not `keep`): loaded, no request in flight, not
// pinned, not being swapped, not waited for. False if there is none.
bool ModelPool::evictable_locked(const std::string & name, const Entry & e) const {
    return e.ready() && !e.config.pinned && !e.parked && !waiters_.count(name) && e.current->leases() == 0;
}

bool ModelPool::evict_one_locked(const Entry * keep) {
    Entry * victim = nullptr;
    for (auto & [name, e] : entries_) {
        if (e.get() == keep || !evictable_locked(name, *e)) {
            continue;
        }
        if (!victim || e->last_used < victim->last_used) {
            victim = e.get();
        }
    }
    if (!victim) {
        return false;
    }
    log_line(LogLevel::info, "model pool: unloading idle model '" + victim->config.name + "' to make room");
    retire_locked(*victim, 0);
    return true;
}

// Whether `need` would fit once every model that make_room_locked() may unload is gone.
bool ModelPool::could_fit_locked(uint64_t need, const Entry * keep) const {
    Room taken = room_once_freed_locked();
    for (const auto & [name, e] : entries_) {
        if (e.get() != keep && evictable_locked(name, *e)) {
            taken.bytes -= e->current_bytes;
            --taken.instances;
        }
    }
    return fits_in_locked(taken, need, 1);
}

bool ModelPool::wait_for_room_locked(std::unique_lock<std::mutex> & lock, uint64_t need, const Entry * keep,
                                     clock::time_point deadline) {
    while (!make_room_locked(need, keep)) {
        if (clock::now() >= deadline || stopping_) {
            return false;
        }
        cv_.wait_until(lock, std::min(deadline, clock::now() + std::chrono::milliseconds(100)));
    }
    return true;
}

}  // namespace llamaproc
