// ModelPool for Python. Every call that binds, loads, waits, drains or joins threads runs
// without the GIL.
#include "bindings.h"

#include "convert.h"
#include "pool/model_pool.h"
#include "server/decode_gate.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>

namespace {

using llamaproc::ModelPool;
using Record = nb::typed<nb::dict, nb::str, nb::object>;  // dict[str, object] in the stub

// Owns the pool; if Python drops it without stop(), its threads are joined without the GIL.
struct PoolHandle {
    std::unique_ptr<ModelPool> pool;

    explicit PoolHandle(llamaproc::PoolOptions options) : pool(std::make_unique<ModelPool>(std::move(options))) {}
    ~PoolHandle() {
        if (pool) {
            nb::gil_scoped_release release;
            pool.reset();
        }
    }
};

llamaproc::PoolModelConfig model_config(const Record & d) {
    llamaproc::PoolModelConfig c;
    c.name = nb::cast<std::string>(d["name"]);
    c.args = nb::cast<std::vector<std::string>>(d["args"]);
    if (d.contains("aliases")) {
        c.aliases = nb::cast<std::vector<std::string>>(d["aliases"]);
    }
    if (d.contains("tags")) {
        c.tags = nb::cast<std::vector<std::string>>(d["tags"]);
    }
    if (d.contains("pinned")) {
        c.pinned = nb::cast<bool>(d["pinned"]);
    }
    if (d.contains("load_on_startup")) {
        c.load_on_startup = nb::cast<bool>(d["load_on_startup"]);
    }
    if (d.contains("stop_timeout")) {
        c.stop_timeout_s = nb::cast<double>(d["stop_timeout"]);
    }
    return c;
}

Record info_to_dict(const llamaproc::PoolModelInfo & i) {
    Record d;
    d["name"] = i.name;
    d["aliases"] = i.aliases;
    d["tags"] = i.tags;
    d["source"] = i.source;
    d["status"] = i.status;
    d["failed"] = i.failed;
    d["failure"] = i.failure.empty() ? nb::none() : nb::cast(std::make_tuple(std::string(error_kind_name(i.failure_kind)), i.failure));
    d["args"] = i.args;
    d["model_path"] = i.model_path;
    d["memory_estimate"] = i.memory_estimate;
    d["memory_measured"] = i.memory_measured;
    d["memory"] = i.memory ? memory_to_dict(*i.memory) : nb::none();
    d["last_used"] = i.last_used;
    d["active_requests"] = i.active_requests;
    d["pinned"] = i.pinned;
    d["load_progress"] = i.load_progress;
    d["loads"] = i.loads;
    return d;
}

}  // namespace

void init_pool(nb::module_ & m) {
    using release = nb::call_guard<nb::gil_scoped_release>;
    m.def(
        "decode_gate_stats",
        [] {
            const auto s = llamaproc::decode_gate_stats();
            Record d;
            d["cpus"] = s.cpus;
            d["active"] = s.active;
            d["decodes"] = s.decodes;
            d["waited"] = s.waited;
            d["wait_seconds"] = s.wait_seconds;
            return d;
        },
        "The decode gate of model pools: its thread budget, and how many decodes passed and waited.");
    nb::class_<llamaproc::EventQueue>(m, "PoolEvents", "A subscription to a model pool's status events.")
        .def("pop", [](llamaproc::EventQueue & q, double timeout) { return q.pop(timeout); }, release(),
             nb::arg("timeout"), "The next event as JSON text, or None after `timeout` s (or once the pool stopped).")
        .def_prop_ro("closed", &llamaproc::EventQueue::closed, "True once the pool stopped and every event was read.");

    nb::class_<PoolHandle>(m, "ModelPool", "Several llama.cpp models behind one HTTP port, in this process.")
        .def(
            "__init__",
            [](PoolHandle * self, std::vector<std::string> router_args, bool use_env, std::vector<Record> models,
               uint64_t memory_budget, double idle_unload_s, std::string default_model, bool allow_unauthenticated_remote,
               uint64_t max_request_bytes, bool decode_gate, bool read_cache, int verbosity) {
                llamaproc::PoolOptions o;
                o.router_args = std::move(router_args);
                o.use_env = use_env;
                for (const auto & d : models) {
                    o.models.push_back(model_config(d));
                }
                o.memory_budget = memory_budget;
                o.idle_unload_s = idle_unload_s;
                o.default_model = std::move(default_model);
                o.allow_unauthenticated_remote = allow_unauthenticated_remote;
                o.max_request_bytes = max_request_bytes;
                o.decode_gate = decode_gate;
                o.read_cache = read_cache;
                o.verbosity = verbosity;
                new (self) PoolHandle(std::move(o));
            },
            nb::arg("router_args"), nb::arg("use_env") = false, nb::arg("models") = std::vector<Record>{},
            nb::arg("memory_budget") = 0, nb::arg("idle_unload_s") = 0.0, nb::arg("default_model") = "",
            nb::arg("allow_unauthenticated_remote") = false, nb::arg("max_request_bytes") = 32ull << 20,
            nb::arg("decode_gate") = true, nb::arg("read_cache") = false, nb::arg("verbosity") = -1)
        .def("start", [](PoolHandle & h) { h.pool->start(); }, release(),
             "Read the model sources, bind, and start loading the load-on-startup models.")
        .def("stop", [](PoolHandle & h) { h.pool->stop(); }, release(),
             "End in-flight requests, free every model and join every native thread. Idempotent.")
        .def_prop_ro("running", [](PoolHandle & h) { return h.pool->running(); })
        .def_prop_ro("port", [](PoolHandle & h) { return h.pool->port(); })
        .def_prop_ro("host", [](PoolHandle & h) { return h.pool->host(); })
        .def_prop_ro("max_loaded", [](PoolHandle & h) { return h.pool->max_loaded(); })
        .def_prop_ro("autoload", [](PoolHandle & h) { return h.pool->autoload(); })
        .def_prop_ro("memory_budget", [](PoolHandle & h) { return h.pool->memory_budget(); })
        .def_prop_ro("reserved_bytes", [](PoolHandle & h) { return h.pool->reserved_bytes(); })
        .def_prop_ro("instances_alive", [](PoolHandle & h) { return h.pool->instances_alive(); })
        .def(
            "models",
            [](PoolHandle & h) {
                std::vector<llamaproc::PoolModelInfo> infos;
                {
                    nb::gil_scoped_release r;
                    infos = h.pool->models();
                }
                std::vector<Record> out;
                for (const auto & i : infos) {
                    out.push_back(info_to_dict(i));
                }
                return out;
            },
            "Every model: name, aliases, status, failure, memory estimate, last use, requests in flight, ...")
        .def("load", [](PoolHandle & h, const std::string & name, double timeout) { h.pool->load(name, timeout); },
             release(), nb::arg("name"), nb::arg("timeout"))
        .def(
            "unload",
            [](PoolHandle & h, const std::string & name, double drain_timeout, bool wait) {
                return h.pool->unload(name, drain_timeout, wait);
            },
            release(), nb::arg("name"), nb::arg("drain_timeout"), nb::arg("wait") = true)
        .def("add", [](PoolHandle & h, Record model) {
                 auto c = model_config(model);
                 nb::gil_scoped_release r;
                 h.pool->add(std::move(c));
             }, nb::arg("model"))
        .def("remove", [](PoolHandle & h, const std::string & name, double drain_timeout) { h.pool->remove(name, drain_timeout); },
             release(), nb::arg("name"), nb::arg("drain_timeout"))
        .def(
            "swap",
            [](PoolHandle & h, const std::string & name, std::vector<std::string> args, const std::string & mode, double timeout) {
                llamaproc::SwapReport r;
                {
                    nb::gil_scoped_release rel;
                    r = h.pool->swap(name, std::move(args), mode, timeout);
                }
                Record d;
                d["mode"] = r.mode;
                d["load_s"] = r.load_s;
                d["drain_s"] = r.drain_s;
                d["finished_on_old"] = r.finished_on_old;
                return d;
            },
            nb::arg("name"), nb::arg("args"), nb::arg("mode") = "auto", nb::arg("timeout") = 600.0)
        .def("subscribe", [](PoolHandle & h) { return h.pool->subscribe(); }, "A new subscription to status events.")
        .def(
            "reload_sources",
            [](PoolHandle & h) {
                llamaproc::ReloadReport r;
                {
                    nb::gil_scoped_release rel;
                    r = h.pool->reload_sources();
                }
                return std::make_tuple(r.added, r.removed, r.changed);
            },
            "Read --models-dir and --models-preset again: (added, removed, changed) model names.")
        .def(
            "query_metrics",
            [](PoolHandle & h, const std::string & name, double timeout) -> nb::object {
                std::optional<llamaproc::LoopMetrics> m;
                {
                    nb::gil_scoped_release r;
                    m = h.pool->query_metrics(name, timeout);
                }
                return m ? metrics_to_dict(*m) : nb::none();
            },
            nb::arg("name"), nb::arg("timeout"))
        .def_prop_ro("request_counts", [](PoolHandle & h) { return counts_to_dict(h.pool->request_counts()); })
        .def("log_tail", [](PoolHandle & h, size_t n) { return h.pool->log_tail(n); }, nb::arg("max_lines") = 40)
        .def(
            "call",
            [](PoolHandle & h, const std::string & path, std::string body, bool post) {
                return h.pool->call(path, std::move(body), post);
            },
            release(), nb::arg("path"), nb::arg("body"), nb::arg("post") = true,
            "POST (or GET) `path` in-process, routed by the body's \"model\" (waits for a load); returns a DirectCall.")
        .def(
            "inject_fault",
            [](PoolHandle & h, const std::string & name, const std::string & kind, int times, int param, int status,
               std::string body, int nth, std::string match) {
                auto spec = fault_spec(kind, times, param, status, std::move(body), nth, std::move(match));
                nb::gil_scoped_release r;
                h.pool->inject_fault(name, spec);
            },
            nb::arg("name"), nb::arg("kind"), nb::arg("times") = 1, nb::arg("param") = 0, nb::arg("status") = 0,
            nb::arg("body") = "", nb::arg("nth") = 1, nb::arg("match") = "",
            "Tests only: arm a fault for one model (model faults on it; request faults at the front and on its "
            "direct calls).")
        .def("clear_faults", [](PoolHandle & h) { h.pool->clear_faults(); }, release(),
             "Tests only: disarm every fault of the pool and its models.");
}
