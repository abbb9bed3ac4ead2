// One init function per binding area; module.cpp only calls them.
#pragma once

#include <nanobind/nanobind.h>

namespace nb = nanobind;

void init_errors(nb::module_ & m);
void init_logging(nb::module_ & m);
void init_server(nb::module_ & m);
void init_info(nb::module_ & m);
void init_quant_types(nb::module_ & m);
void init_model_file(nb::module_ & m);
void init_memory(nb::module_ & m);
void init_direct(nb::module_ & m);
void init_pool(nb::module_ & m);
void init_rpc(nb::module_ & m);
