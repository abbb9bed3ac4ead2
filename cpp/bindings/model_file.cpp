// Model files: GGUF inspection, quantization, evaluation (log-probabilities as numpy arrays).
#include "bindings.h"

#include "errors.h"
#include "model_file/evaluator.h"
#include "model_file/gguf_file.h"
#include "model_file/quantize.h"

#include "llama.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

namespace {

nb::object scalar_to_python(const llamaproc::GgufScalar & value) {
    return std::visit([](const auto & v) -> nb::object { return nb::cast(v); }, value);
}

nb::dict read_header(const std::string & path) {
    llamaproc::GgufHeader header;
    {
        nb::gil_scoped_release release;
        header = llamaproc::read_gguf_header(path);
    }
    nb::dict metadata;
    for (const auto & [key, value] : header.metadata) {
        metadata[key.c_str()] = scalar_to_python(value);
    }
    nb::dict arrays;
    for (const auto & [key, n] : header.array_lengths) {
        arrays[key.c_str()] = n;
    }
    nb::list tensors;
    for (const auto & t : header.tensors) {
        tensors.append(nb::make_tuple(t.name, t.type, t.n_elements, t.n_bytes));
    }
    nb::dict out;
    out["version"] = header.version;
    out["file_size"] = header.file_size;
    out["metadata"] = metadata;
    out["array_lengths"] = arrays;
    out["tensors"] = tensors;
    return out;
}

// progress(done, total, tensor) -> False to cancel (anything else goes on)
using ProgressCallback = nb::typed<nb::callable, nb::object(int, int, std::string)>;

void quantize(const std::string & source, const std::string & destination, llama_ftype ftype, int threads,
              bool allow_requantize, const std::string & imatrix, const std::optional<ProgressCallback> & progress) {
    llamaproc::QuantizeOptions options{source, destination, static_cast<int>(ftype), threads, allow_requantize,
                                       imatrix};
    llamaproc::QuantizeProgress report = [&progress](int done, int total, const std::string & tensor) {
        nb::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) {  // Ctrl-C while quantizing
            throw nb::python_error();
        }
        if (progress) {
            nb::object keep_going = (*progress)(done, total, tensor);
            if (!keep_going.is_none() && !nb::cast<bool>(keep_going)) {
                throw llamaproc::Error(llamaproc::ErrorKind::internal, "quantization cancelled by the progress callback");
            }
        }
    };
    nb::gil_scoped_release release;
    llamaproc::quantize_model(options, report);
}

using LogprobArray = nb::ndarray<nb::numpy, float, nb::ndim<2>>;

LogprobArray evaluate(llamaproc::Evaluator & ev, nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig> tokens) {
    const size_t n = tokens.shape(0);
    const size_t vocab = static_cast<size_t>(ev.n_vocab());
    auto * data = new float[n * vocab];
    nb::capsule owner(data, [](void * p) noexcept { delete[] static_cast<float *>(p); });
    {
        nb::gil_scoped_release release;
        ev.logprobs(tokens.data(), n, data);
    }
    return LogprobArray(data, {n, vocab}, owner);
}

}  // namespace

void init_model_file(nb::module_ & m) {
    m.def("read_gguf_header", &read_header, nb::arg("path"), nb::sig("def read_gguf_header(path: str) -> dict[str, typing.Any]"),
          "GGUF header of `path`: version, scalar metadata, array lengths, and the tensor table as "
          "(name, type, n_elements, n_bytes). No weights are read.");
    m.def("quantize", &quantize, nb::arg("source"), nb::arg("destination"), nb::arg("ftype"), nb::arg("threads"),
          nb::arg("allow_requantize"), nb::arg("imatrix"), nb::arg("progress").none(),
          "llama.cpp's quantizer; progress(done, total, tensor) after each tensor may return False to cancel.");
    nb::class_<llamaproc::Evaluator>(m, "Evaluator", "A model and context for log-probability evaluation.")
        .def(
            "__init__",
            [](llamaproc::Evaluator * self, const std::string & path, int context_size, int threads, int gpu_layers) {
                nb::gil_scoped_release release;
                new (self) llamaproc::Evaluator(llamaproc::EvaluatorOptions{path, context_size, threads, gpu_layers});
            },
            nb::arg("model_path"), nb::arg("context_size") = 512, nb::arg("threads") = 0, nb::arg("gpu_layers") = 0)
        .def_prop_ro("n_vocab", &llamaproc::Evaluator::n_vocab)
        .def_prop_ro("context_size", &llamaproc::Evaluator::context_size)
        .def("tokenize", &llamaproc::Evaluator::tokenize, nb::arg("text"), nb::arg("add_special") = true,
             nb::call_guard<nb::gil_scoped_release>())
        .def("logprobs", &evaluate, nb::arg("tokens"),
             "Array (n, n_vocab): log-softmax of the next-token logits after each token.");
}
