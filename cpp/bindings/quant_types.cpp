// QuantType: llama.cpp's model file types (llama_ftype) as a Python enum, listed from the
// llama.h this module was built against (see quant_types() in cpp/core/quantize.h).
#include "bindings.h"

#include "errors.h"
#include "model_file/quantize.h"

#include "llama.h"

#include <nanobind/stl/string.h>

namespace {

llama_ftype parse(nb::handle value) {
    if (PyObject_IsInstance(value.ptr(), nb::type<llama_ftype>().ptr()) == 1) {
        return nb::cast<llama_ftype>(value);
    }
    const llamaproc::QuantType * found = nullptr;
    if (PyLong_Check(value.ptr()) && !PyBool_Check(value.ptr())) {
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
        found = overflow == 0 ? llamaproc::find_quant_type(v) : nullptr;
    } else if (PyUnicode_Check(value.ptr())) {
        found = llamaproc::find_quant_type(nb::cast<std::string>(value));
    }
    if (found == nullptr) {
        throw llamaproc::Error(llamaproc::ErrorKind::config,
                               "unknown quantization type " + nb::cast<std::string>(nb::repr(value)) +
                                   "; valid: " + llamaproc::quant_type_names());
    }
    return static_cast<llama_ftype>(found->value);
}

}  // namespace

void init_quant_types(nb::module_ & m) {
    nb::enum_<llama_ftype> type(m, "QuantType",
                                "llama.cpp's model file types (llama_ftype), named as users know them: the\n"
                                "enumerator without its LLAMA_FTYPE_MOSTLY_ prefix (LLAMA_FTYPE_ALL_F32 is F32).\n\n"
                                "The members are those of the llama.cpp this module was built against.\n"
                                "``QuantType.parse(\"q4_k_m\")`` accepts any case and the ``MOSTLY_`` prefix.");
    for (const auto & t : llamaproc::quant_types()) {
        type.value(t.name, static_cast<llama_ftype>(t.value), t.description);
    }
    type.def_static("parse", &parse, nb::arg("value").none(),
                    nb::sig("def parse(value: str | QuantType | int) -> QuantType"),
                    "The type named by ``value`` (case-insensitive) or with that value; ConfigError lists the "
                    "valid names.");
    type.def_prop_ro(
        "needs_imatrix", [](llama_ftype t) { return llamaproc::needs_imatrix(static_cast<int>(t)); },
        "The very low-bit types that llama.cpp refuses to make without an importance matrix.");
}
