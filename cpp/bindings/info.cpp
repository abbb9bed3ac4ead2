// Build and machine facts for `python -m llamaproc info`.
#include "bindings.h"

#include "argv_parser.h"
#include "runtime_backends.h"
#include "system_info.h"

#include "log.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

void init_info(nb::module_ & m) {
    m.def(
        "system_info",
        [] {
            llamaproc::SystemInfo info;
            {
                nb::gil_scoped_release release;
                info = llamaproc::system_info();
            }
            nb::dict out;
            out["llama_cpp_commit"] = info.llama_cpp_commit;
            nb::list backends;
            for (const auto & b : info.backends) {
                nb::dict features;
                for (const auto & [k, v] : b.features) {
                    features[k.c_str()] = v;
                }
                nb::dict backend;
                backend["name"] = b.name;
                backend["features"] = features;
                backends.append(backend);
            }
            out["backends"] = backends;
            const auto & rt = llamaproc::load_runtime_backends();
            if (rt.dynamic) {
                nb::dict cpu;
                cpu["name"] = rt.cpu_variant;
                cpu["path"] = rt.cpu_variant_path;
                cpu["forced"] = rt.forced;
                cpu["problem"] = rt.problem.empty() ? nb::none() : nb::cast(rt.problem);
                nb::dict scores;
                for (const auto & [name, score] : rt.cpu_variants) {
                    scores[name.c_str()] = score;
                }
                cpu["available"] = scores;
                cpu["modules"] = rt.loaded;
                out["cpu_variant"] = cpu;
            } else {
                out["cpu_variant"] = nb::none();  // the CPU backend is linked in, built for one level
            }
            nb::list devices;
            for (const auto & d : info.devices) {
                nb::dict dev;
                dev["name"] = d.name;
                dev["description"] = d.description;
                dev["type"] = d.type;
                dev["memory_free"] = d.memory_free;
                dev["memory_total"] = d.memory_total;
                devices.append(dev);
            }
            out["devices"] = devices;
            out["summary"] = info.summary;
            return out;
        },
        nb::sig("def system_info() -> dict[str, typing.Any]"),
        "Backends compiled in, their CPU features, and the devices found.");
    m.def("server_flags_help", &llamaproc::server_flags_help, "Help text of llama-server's flags.");
    m.def(
        "validate_server_args",
        [](const std::vector<std::string> & args, bool use_env) { (void) llamaproc::parse_server_args(args, use_env); },
        nb::arg("args"), nb::arg("use_env") = false, nb::call_guard<nb::gil_scoped_release>(),
        "Parse llama-server flags the way start() will; raises ConfigError naming the bad flag "
        "(--rpc connects to its workers: without the GIL).");
    m.def("_server_flag_values", &llamaproc::server_flag_values,
          "How many values each llama-server flag spelling takes (0, 1 or 2).");
    m.def(
        "_native_log_verbosity", [] { return common_log_get_verbosity_thold(); },
        "llama.cpp's process-wide log threshold (common_log_verbosity_thold); read-only, for tests.");
}
