// EmbeddedServer for Python. Every call that binds, loads, waits, queries the loop or joins
// threads runs without the GIL.
#include "bindings.h"

#include "convert.h"
#include "server/cpu_governor.h"
#include "server/draft_policy.h"
#include "server/embedded_server.h"
#include "server/web_ui.h"

#include "common.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

namespace {

using llamaproc::EmbeddedServer;

// Owns the server; if Python drops it without stop(), the threads are joined without the GIL
// (a native thread may be waiting for the GIL to log a line).
struct ServerHandle {
    std::unique_ptr<EmbeddedServer> server;

    ServerHandle(std::vector<std::string> args, bool use_env, uint64_t memory_limit, bool allow_unauthenticated_remote,
                 uint64_t max_request_bytes, int verbosity)
        : server(std::make_unique<EmbeddedServer>(llamaproc::ServerOptions{
              std::move(args), use_env, memory_limit, allow_unauthenticated_remote, max_request_bytes, verbosity})) {}

    ~ServerHandle() {
        if (server) {
            nb::gil_scoped_release release;
            server.reset();
        }
    }
};

}  // namespace

void init_server(nb::module_ & m) {
    using release = nb::call_guard<nb::gil_scoped_release>;
    nb::enum_<llamaproc::ServerState>(m, "NativeState", "The native server's state (llamaproc.ServerStatus maps it).")
        .value("created", llamaproc::ServerState::created)
        .value("starting", llamaproc::ServerState::starting)
        .value("ready", llamaproc::ServerState::ready)
        .value("stopping", llamaproc::ServerState::stopping)
        .value("stopped", llamaproc::ServerState::stopped)
        .value("failed", llamaproc::ServerState::failed);
    m.def("set_web_ui_dir", &llamaproc::set_web_ui_dir, nb::arg("path"),
          "The directory of the web pages that servers and pools started from now on serve at / "
          "(\"\" = none); the flags --no-webui and --path still decide per server.");
    m.def("physical_cores", &common_cpu_get_num_math, "Physical (performance) cores, as llama.cpp counts them.");
    m.def("default_threads", &llamaproc::default_threads,
          "Threads of an RPC worker whose flags set none: one per physical core but one.");
    m.def(
        "cpu_governor_status",
        [] {
            const auto s = llamaproc::CpuGovernor::process().status();
            nb::dict d;
            d["active"] = s.active;
            d["max_threads"] = s.max_threads;
            d["allowance"] = s.allowance;
            d["reserved_for_host"] = s.reserved_for_host;
            d["host_cpus"] = s.host_cpus;
            d["samples"] = s.samples;
            d["sample_seconds"] = s.sample_seconds;
            return d;
        },
        nb::sig("def cpu_governor_status() -> dict[str, typing.Any]"),
        "The CPU governor: the most threads a decode may use, what it may use now, the cores left to "
        "busy host threads, their smoothed CPU use, and the governor's own sampling count and CPU time.");
    nb::class_<ServerHandle>(m, "EmbeddedServer", "llama.cpp's HTTP server on native threads in this process.")
        .def(nb::init<std::vector<std::string>, bool, uint64_t, bool, uint64_t, int>(), nb::arg("args"),
             nb::arg("use_env") = false, nb::arg("memory_limit") = 0, nb::arg("allow_unauthenticated_remote") = false,
             nb::arg("max_request_bytes") = 32ull << 20, nb::arg("verbosity") = -1)
        .def("start", [](ServerHandle & h) { h.server->start(); }, release(),
             "Parse flags, check the model file, bind, start serving; the model loads in the background.")
        .def("wait_ready", [](ServerHandle & h, double timeout) { return h.server->wait_ready(timeout); }, release(),
             nb::arg("timeout"), "True once ready, False on timeout; raises if the model failed or the server stopped.")
        .def("restart_instance", [](ServerHandle & h) { h.server->restart_instance(); }, release(),
             "Replace the model instance with a fresh load of the same model, on the same port; returns at once.")
        .def("stop", [](ServerHandle & h) { h.server->stop(); }, release(),
             "End in-flight requests, join all native threads and free the model. Idempotent.")
        .def("wait_change", [](ServerHandle & h, uint64_t seen, double timeout) { return h.server->wait_change(seen, timeout); },
             release(), nb::arg("seen"), nb::arg("timeout"),
             "Block until the state changed since counter `seen` (or the timeout); returns the counter.")
        .def_prop_ro("state", [](ServerHandle & h) { return h.server->state(); })
        .def_prop_ro("port", [](ServerHandle & h) { return h.server->port(); })
        .def_prop_ro("host", [](ServerHandle & h) { return h.server->host(); })
        .def_prop_ro("load_progress", [](ServerHandle & h) { return h.server->load_progress(); })
        .def_prop_ro("abandoned_instances", [](ServerHandle & h) { return h.server->abandoned_instances(); })
        .def_prop_ro("failure",
                     [](ServerHandle & h) -> nb::object {
                         auto f = h.server->failure();
                         if (!f) {
                             return nb::none();
                         }
                         return nb::make_tuple(error_kind_name(f->kind), f->message);
                     },
                     "(error kind, message) of the model instance's failure, or None.")
        .def_prop_ro("memory",
                     [](ServerHandle & h) -> nb::object {
                         auto e = h.server->memory();
                         return e ? memory_to_dict(*e) : nb::none();
                     },
                     "Bytes the loaded model holds (model, context, compute, prompt_cache_limit); None before load.")
        .def_prop_ro("request_counts",
                     [](ServerHandle & h) { return counts_to_dict(h.server->request_counts()); },
                     "HTTP requests answered since start, by outcome.")
        .def("log_tail", [](ServerHandle & h, size_t n) { return h.server->log_tail(n); }, nb::arg("max_lines") = 40)
        .def("call",
             [](ServerHandle & h, const std::string & path, std::string body, bool post) {
                 return h.server->call(path, std::move(body), post);
             },
             nb::call_guard<nb::gil_scoped_release>(), nb::arg("path"), nb::arg("body"), nb::arg("post") = true,
             "POST (or GET) `path` with the JSON text `body` in-process; returns a DirectCall at once.")
        .def(
            "inject_fault",
            [](ServerHandle & h, const std::string & kind, int times, int param, int status, std::string body, int nth,
               std::string match) {
                auto spec = fault_spec(kind, times, param, status, std::move(body), nth, std::move(match));
                nb::gil_scoped_release r;
                h.server->inject_fault(spec);
            },
            nb::arg("kind"), nb::arg("times") = 1, nb::arg("param") = 0, nb::arg("status") = 0, nb::arg("body") = "",
            nb::arg("nth") = 1, nb::arg("match") = "",
            "Tests only: arm a fault (llamaproc.faults.Fault's fields; see that module for the kinds).")
        .def(
            "armed_faults",
            [](ServerHandle & h) {
                using llamaproc::FaultKind;
                std::vector<std::tuple<std::string, int, int>> out;
                for (FaultKind k : {FaultKind::loop_dies, FaultKind::assert_in_request, FaultKind::load_fails,
                                    FaultKind::slow_load, FaultKind::over_memory}) {
                    if (int n = h.server->faults().remaining(k); n > 0) {
                        out.emplace_back(llamaproc::fault_name(k), n, h.server->faults().param(k));
                    }
                }
                return out;
            },
            "Tests only: the faults still armed, as (kind, times left, param).")
        .def("clear_faults", [](ServerHandle & h) { h.server->faults().clear(); }, nb::call_guard<nb::gil_scoped_release>(),
             "Tests only: disarm every fault.")
        .def(
            "query_load",
            [](ServerHandle & h, double timeout) -> nb::object {
                std::optional<llamaproc::SlotLoad> load;
                {
                    nb::gil_scoped_release r;
                    load = h.server->query_load(timeout);
                }
                return load ? load_to_dict(*load) : nb::none();
            },
            nb::arg("timeout"), "Slot usage as the inference loop reports it; None when it did not answer in time.")
        .def(
            "query_metrics",
            [](ServerHandle & h, double timeout) -> nb::object {
                std::optional<llamaproc::LoopMetrics> m;
                {
                    nb::gil_scoped_release r;
                    m = h.server->query_metrics(timeout);
                }
                return m ? metrics_to_dict(*m) : nb::none();
            },
            nb::arg("timeout"), "Cumulative counters; None if the loop did not answer in time.");

    m.def("speculation_flags", &llamaproc::speculation_choice_flags,
          "The flags that choose a speculation type or a draft model (llamaproc's default then stays off).");

    // The speculation policy on its own (the servers run it on their loop threads): for tests
    // and for simulating its choices against recorded step costs.
    using llamaproc::AdaptiveDraftPolicy;
    nb::class_<AdaptiveDraftPolicy>(m, "DraftPolicy", "The adaptive draft-length policy of speculative decoding.")
        .def(nb::init<int>(), nb::arg("slots"))
        .def("begin", &AdaptiveDraftPolicy::begin, nb::arg("slot"), "A generation starts on the slot.")
        .def("draft_max", &AdaptiveDraftPolicy::draft_max, nb::arg("slot"), nb::arg("fit"), nb::arg("generating"),
             "The longest draft the slot may verify in this step (0: none).")
        .def("verified", &AdaptiveDraftPolicy::verified, nb::arg("slot"), nb::arg("drafted"), nb::arg("accepted"),
             "A draft was verified and `accepted` of its tokens kept.")
        .def("step_timed", &AdaptiveDraftPolicy::step_timed, nb::arg("tokens"), nb::arg("us"),
             "A step of one slot's `tokens` tokens took `us` microseconds.")
        .def("step_cost_us", &AdaptiveDraftPolicy::step_cost_us, nb::arg("tokens"))
        .def("acceptance", &AdaptiveDraftPolicy::acceptance, nb::arg("slot"));
}
