// RpcWorker for Python. start() and stop() bind, wait and join threads without the GIL.
#include "bindings.h"

#include "rpc/rpc_devices.h"
#include "rpc/rpc_worker.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>

void init_rpc(nb::module_ & m) {
    using release = nb::call_guard<nb::gil_scoped_release>;
    using llamaproc::RpcWorker;
    m.def("rpc_supported", &llamaproc::rpc_supported, "True if this build has ggml's RPC backend.");
    nb::class_<RpcWorker>(m, "RpcWorker", "ggml's RPC server on a native thread of this process.")
        .def(
            "__init__",
            [](RpcWorker * self, std::string host, int port, int threads, std::string cache_dir, bool allow_remote) {
                new (self) RpcWorker(llamaproc::RpcWorkerOptions{std::move(host), port, threads, std::move(cache_dir),
                                                                 allow_remote});
            },
            nb::arg("host"), nb::arg("port"), nb::arg("threads") = 0, nb::arg("cache_dir") = "",
            nb::arg("allow_remote") = false)
        .def("start", &RpcWorker::start, release(), "Returns once the worker accepts connections.")
        .def("stop", &RpcWorker::stop, release(), "Stops the worker and joins its thread (idempotent).")
        .def_prop_ro("running", &RpcWorker::running)
        .def_prop_ro("endpoint", &RpcWorker::endpoint)
        .def_prop_ro("connections", &RpcWorker::connections)
        .def_prop_ro("failure", &RpcWorker::failure)
        .def_prop_ro("devices", &RpcWorker::device_description);
}
