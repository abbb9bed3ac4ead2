// Conversions shared by the bindings: native records -> Python dicts and names.
#pragma once

#include "bindings.h"

#include "errors.h"
#include "server/faults.h"
#include "server/http_front.h"
#include "server/model_instance.h"

#include <map>
#include <string>

namespace {

using llamaproc::error_kind_name;

// The native fault of llamaproc.faults.Fault's fields (llamaproc.faults.native_args()).
inline llamaproc::FaultSpec fault_spec(const std::string & kind, int times, int param, int status, std::string body,
                                       int nth, std::string match) {
    return {llamaproc::fault_kind(kind), times, param, status, std::move(body), nth, std::move(match)};
}

inline nb::object load_to_dict(const llamaproc::SlotLoad & load) {
    nb::dict d;
    d["n_slots"] = load.n_slots;
    d["n_processing"] = load.n_processing;
    d["n_deferred"] = load.n_deferred;
    return d;
}

inline nb::object metrics_to_dict(const llamaproc::LoopMetrics & m) {
    nb::dict d;
    d["load"] = load_to_dict(m.load);
    d["prompt_tokens"] = m.prompt_tokens;
    d["prompt_seconds"] = m.prompt_seconds;
    d["prompt_tokens_cached"] = m.prompt_tokens_cached;
    d["generated_tokens"] = m.generated_tokens;
    d["generation_seconds"] = m.generation_seconds;
    d["decode_calls"] = m.decode_calls;
    d["draft_tokens"] = m.draft_tokens;
    d["draft_accepted"] = m.draft_accepted;
    d["prometheus"] = m.prometheus;
    d["decode_threads"] = m.decode_threads;
    d["decode_reason"] = llamaproc::decode_reason_name(m.decode_reason);
    return d;
}

inline std::map<std::string, uint64_t> counts_to_dict(const llamaproc::RequestCounts & c) {
    using O = llamaproc::RequestOutcome;
    std::map<std::string, uint64_t> d;
    d["ok"] = c.by_outcome[static_cast<int>(O::ok)];
    d["client_error"] = c.by_outcome[static_cast<int>(O::client_error)];
    d["server_error"] = c.by_outcome[static_cast<int>(O::server_error)];
    d["unavailable"] = c.by_outcome[static_cast<int>(O::unavailable)];
    d["stream_failed"] = c.by_outcome[static_cast<int>(O::stream_failed)];
    return d;
}

inline nb::object memory_to_dict(const llamaproc::InstanceMemory & e) {
    nb::dict d;
    d["model"] = e.model_bytes;
    d["context"] = e.context_bytes;
    d["compute"] = e.compute_bytes;
    d["prompt_cache_limit"] = e.prompt_cache_limit_bytes;
    d["expected"] = e.expected_bytes ? nb::cast(*e.expected_bytes) : nb::none();
    d["expected_measured"] = e.expected_measured;
    nb::list devices;
    for (const auto & dev : e.devices) {
        nb::dict x;
        x["name"] = dev.name;
        x["description"] = dev.description;
        x["pci_bus_id"] = dev.pci_bus_id;
        x["bytes"] = dev.bytes;
        if (auto status = llamaproc::device_status(dev.name)) {
            x["free"] = status->free_bytes;
            x["total"] = status->total_bytes;
        }
        devices.append(x);
    }
    d["devices"] = devices;
    return d;
}

}  // namespace
