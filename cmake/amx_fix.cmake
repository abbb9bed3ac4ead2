# gcc < 13 miscompiles ggml's AMX tile configuration (see ggml_amx_tilecfg_fix.h): the first
# multi-row matmul on an AMX CPU dies with SIGILL. Force-include the corrected intrinsic
# into that one source file; AMX stays on.
if(TARGET ggml-cpu AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  set(_mmq "${LLAMAPROC_LLAMA_CPP_DIR}/ggml/src/ggml-cpu/amx/mmq.cpp")
  if(EXISTS "${_mmq}")
    message(STATUS "llamaproc: gcc ${CMAKE_CXX_COMPILER_VERSION}: applying the AMX tile-config fix to ggml-cpu")
    set_property(SOURCE "${_mmq}" TARGET_DIRECTORY ggml-cpu APPEND PROPERTY
                 COMPILE_OPTIONS -include "${CMAKE_CURRENT_LIST_DIR}/ggml_amx_tilecfg_fix.h")
  endif()
endif()
