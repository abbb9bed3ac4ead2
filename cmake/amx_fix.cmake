# gcc < 13 miscompiles ggml's AMX tile configuration (see ggml_amx_tilecfg_fix.h): the first
# multi-row matmul on an AMX CPU dies with SIGILL. Force-include the corrected intrinsic
# into that one source file; AMX stays on.
# A portable build compiles mmq.cpp once per CPU variant (ggml-cpu-<variant> targets, all in
# ggml/src): the fix goes to each; it only acts where AMX is enabled (sapphirerapids).
set(_amx_targets "")
if(TARGET ggml-cpu)
  list(APPEND _amx_targets ggml-cpu)
endif()
foreach(_backend IN LISTS GGML_AVAILABLE_BACKENDS)
  if(_backend MATCHES "^ggml-cpu-" AND TARGET ${_backend})
    list(APPEND _amx_targets ${_backend})
  endif()
endforeach()
if(_amx_targets AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  set(_mmq "${LLAMAPROC_LLAMA_CPP_DIR}/ggml/src/ggml-cpu/amx/mmq.cpp")
  if(EXISTS "${_mmq}")
    message(STATUS "llamaproc: gcc ${CMAKE_CXX_COMPILER_VERSION}: applying the AMX tile-config fix to ${_amx_targets}")
    set(_dirs_done "")
    foreach(_target IN LISTS _amx_targets)
      get_target_property(_dir ${_target} SOURCE_DIR)  # source properties are per directory
      if(NOT _dir IN_LIST _dirs_done)
        list(APPEND _dirs_done "${_dir}")
        set_property(SOURCE "${_mmq}" TARGET_DIRECTORY ${_target} APPEND PROPERTY
                     COMPILE_OPTIONS -include "${CMAKE_CURRENT_LIST_DIR}/ggml_amx_tilecfg_fix.h")
      endif()
    endforeach()
  endif()
endif()
