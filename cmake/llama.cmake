# Locate the llama.cpp source, configure it for embedding, and define llamaproc::server:
# ggml + llama + llama-common + mtmd + server-context + server-http.cpp, all static.

set(LLAMAPROC_LLAMA_CPP_DIR "${CMAKE_CURRENT_SOURCE_DIR}/vendor/llama.cpp"
    CACHE PATH "llama.cpp source tree to build against (default: the pinned vendor/llama.cpp)")
if(DEFINED ENV{LLAMAPROC_LLAMA_CPP_DIR} AND NOT "$ENV{LLAMAPROC_LLAMA_CPP_DIR}" STREQUAL "")
  set(LLAMAPROC_LLAMA_CPP_DIR "$ENV{LLAMAPROC_LLAMA_CPP_DIR}" CACHE PATH "" FORCE)
endif()
get_filename_component(LLAMAPROC_LLAMA_CPP_DIR "${LLAMAPROC_LLAMA_CPP_DIR}" ABSOLUTE)

if(NOT EXISTS "${LLAMAPROC_LLAMA_CPP_DIR}/tools/server/server-context.h")
  message(FATAL_ERROR "llama.cpp source not found in ${LLAMAPROC_LLAMA_CPP_DIR}: "
                      "run `python scripts/fetch_llama_cpp.py` (or set LLAMAPROC_LLAMA_CPP_DIR to a checkout)")
endif()

set(LLAMAPROC_LLAMA_CPP_COMMIT "unknown")
if(EXISTS "${LLAMAPROC_LLAMA_CPP_DIR}/.llamaproc-source")
  file(STRINGS "${LLAMAPROC_LLAMA_CPP_DIR}/.llamaproc-source" _stamp REGEX "^commit=")
  string(REPLACE "commit=" "" LLAMAPROC_LLAMA_CPP_COMMIT "${_stamp}")
  message(STATUS "llamaproc: using the pinned llama.cpp ${LLAMAPROC_LLAMA_CPP_COMMIT} in ${LLAMAPROC_LLAMA_CPP_DIR}")
else()
  find_package(Git QUIET)
  if(GIT_FOUND)
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=9 HEAD
                    WORKING_DIRECTORY "${LLAMAPROC_LLAMA_CPP_DIR}"
                    OUTPUT_VARIABLE _head OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_head)
      set(LLAMAPROC_LLAMA_CPP_COMMIT "${_head}")
    endif()
  endif()
  message(STATUS "llamaproc: using a user-provided llama.cpp (${LLAMAPROC_LLAMA_CPP_COMMIT}) in ${LLAMAPROC_LLAMA_CPP_DIR}")
endif()
# llama.cpp's build-info would otherwise ask git, which answers for *our* repository.
set(LLAMA_BUILD_COMMIT "${LLAMAPROC_LLAMA_CPP_COMMIT}" CACHE STRING "" FORCE)
set(LLAMA_BUILD_NUMBER 0 CACHE STRING "")

# What an embedded server needs, and nothing a process-level tool needs. Structural
# switches are forced; tunables are cache defaults a user can override with -D.
set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
foreach(_off LLAMA_BUILD_TESTS LLAMA_BUILD_TOOLS LLAMA_BUILD_EXAMPLES LLAMA_BUILD_SERVER
             LLAMA_BUILD_APP LLAMA_BUILD_UI LLAMA_USE_PREBUILT_UI LLAMA_TOOLS_INSTALL
             LLAMA_TESTS_INSTALL GGML_BUILD_TESTS GGML_BUILD_EXAMPLES LLAMA_BUILD_MTMD)
  set(${_off} OFF CACHE BOOL "forced off by llamaproc" FORCE)
endforeach()
set(LLAMA_BUILD_COMMON ON CACHE BOOL "" FORCE)
set(LLAMA_OPENSSL OFF CACHE BOOL "llamaproc: models are local paths, no HTTPS downloads")
set(LLAMA_ALL_WARNINGS OFF CACHE BOOL "")
# The server loop runs on a thread that is not the process's main thread: with OpenMP that
# decodes ~6x slower on small machines (docs/architecture.md); ggml's own pool does not.
set(GGML_OPENMP OFF CACHE BOOL "llamaproc: ggml thread pool instead of OpenMP")
set(GGML_NATIVE ON CACHE BOOL "")
# llama-server's --rpc and `python -m llamaproc rpc-worker` (cpp/core/rpc/): one small backend
set(GGML_RPC ON CACHE BOOL "llamaproc: RPC workers and --rpc")

# -DLLAMAPROC_PORTABLE=ON: one wheel for any CPU of its architecture. ggml builds its CPU
# backend once per instruction-set level (GGML_CPU_ALL_VARIANTS) as loadable modules
# (GGML_BACKEND_DL, which needs ggml as shared libraries); _core loads the best one for the CPU
# it runs on (cpp/core/runtime_backends.h). llama, common and the server stay static.
option(LLAMAPROC_PORTABLE "CPU backend per instruction-set level, the best chosen at run time" OFF)
if(LLAMAPROC_PORTABLE)
  set(GGML_NATIVE OFF CACHE BOOL "" FORCE)
  set(GGML_BACKEND_DL ON CACHE BOOL "" FORCE)
  set(GGML_CPU_ALL_VARIANTS ON CACHE BOOL "" FORCE)
  # RPC (cpp/core/rpc/) calls ggml's RPC functions directly, which a module does not export
  set(GGML_RPC OFF CACHE BOOL "llamaproc: the portable build has no RPC" FORCE)
  set(BUILD_SHARED_LIBS ON)  # a normal variable: ggml's scope only, the cache says OFF elsewhere
  set(CMAKE_LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/bin")
  set(CMAKE_RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/bin")
  set(GGML_BUILD_NUMBER ${LLAMA_BUILD_NUMBER})
  set(GGML_BUILD_COMMIT ${LLAMA_BUILD_COMMIT})
  add_subdirectory("${LLAMAPROC_LLAMA_CPP_DIR}/ggml" "${CMAKE_BINARY_DIR}/llama.cpp/ggml" EXCLUDE_FROM_ALL)
  unset(BUILD_SHARED_LIBS)
  set(LLAMAPROC_GGML_MODULES ggml ggml-base)
  foreach(_backend IN LISTS GGML_AVAILABLE_BACKENDS)  # a cache list: may name targets of an earlier configure
    if(TARGET ${_backend})
      list(APPEND LLAMAPROC_GGML_MODULES ${_backend})
    endif()
  endforeach()
  foreach(_lib IN LISTS LLAMAPROC_GGML_MODULES)
    set_target_properties(${_lib} PROPERTIES INSTALL_RPATH "$ORIGIN" BUILD_WITH_INSTALL_RPATH ON)
  endforeach()
  # one file per library: a wheel cannot hold the libggml.so -> .so.0 -> .so.0.25.3 links (they
  # would be three copies)
  set_property(TARGET ggml ggml-base PROPERTY VERSION)
  set_property(TARGET ggml ggml-base PROPERTY SOVERSION)
  message(STATUS "llamaproc: portable build, backend modules loaded at run time: ${LLAMAPROC_GGML_MODULES}")
else()
  set(GGML_BACKEND_DL OFF CACHE BOOL "" FORCE)
  set(GGML_CPU_ALL_VARIANTS OFF CACHE BOOL "" FORCE)
endif()
add_subdirectory("${LLAMAPROC_LLAMA_CPP_DIR}" "${CMAKE_BINARY_DIR}/llama.cpp" EXCLUDE_FROM_ALL)
add_subdirectory("${CMAKE_CURRENT_LIST_DIR}/llama-server" "${CMAKE_BINARY_DIR}/llama-server" EXCLUDE_FROM_ALL)
include("${CMAKE_CURRENT_LIST_DIR}/amx_fix.cmake")

# -march=native turns AVX512-FP16 on where the CPU has it (Sapphire Rapids and later); ggml then
# does its F16 vector arithmetic (attention over the F16 KV cache) in half precision. On this
# project's machine that decoded SmolLM2 about 30 % slower than ggml's FP32 paths, which its own
# CPU variants use (docs/benchmarks.md). Native builds keep it off unless asked for.
option(LLAMAPROC_AVX512FP16 "native builds: let ggml's F16 vector code use AVX512-FP16 arithmetic" OFF)
if(GGML_NATIVE AND NOT LLAMAPROC_AVX512FP16 AND TARGET ggml-cpu AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  include(CheckCCompilerFlag)
  check_c_compiler_flag(-mno-avx512fp16 LLAMAPROC_CC_HAS_NO_AVX512FP16)
  if(LLAMAPROC_CC_HAS_NO_AVX512FP16)
    target_compile_options(ggml-cpu PRIVATE -mno-avx512fp16)  # after ggml's -march=native
  endif()
endif()

# patches/ (applied by scripts/fetch_llama_cpp.py to the pinned source): a user-provided
# checkout may lack them; say what that costs instead of failing.
file(STRINGS "${LLAMAPROC_LLAMA_CPP_DIR}/tools/server/server-context.cpp" _llamaproc_patch_0001 REGEX "caller_progress_cb")
if(NOT _llamaproc_patch_0001)
  message(WARNING "llamaproc: ${LLAMAPROC_LLAMA_CPP_DIR} lacks patches/0001-server-load-progress-callback.patch: "
                  "start(progress=...) will not report load progress and stop() will not cancel a load in progress "
                  "(apply it with `patch -p1 < patches/0001-...` in that checkout)")
endif()
file(STRINGS "${LLAMAPROC_LLAMA_CPP_DIR}/ggml/include/ggml-rpc.h" _llamaproc_patch_0005 REGEX "ggml_backend_rpc_thread_saw_failure")
if(_llamaproc_patch_0005)
  set(LLAMAPROC_RPC_FAILURE_PATCH ON)
elseif(GGML_RPC)
  set(LLAMAPROC_RPC_FAILURE_PATCH OFF)
  message(WARNING "llamaproc: ${LLAMAPROC_LLAMA_CPP_DIR} lacks patches/0005-rpc-connection-failure-fails-its-server.patch: "
                  "an RPC worker that goes away under a server (--rpc) aborts the whole process")
endif()
