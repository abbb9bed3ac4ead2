# -DLLAMAPROC_BACKENDS=auto: the GPU backends are chosen at configure time by llamaproc's own
# machine detection (src/llamaproc/build: standard library only, runs before anything is built),
# exactly as `python -m llamaproc build-config` would choose them. A backend define given
# explicitly (-DGGML_CUDA=OFF, ...) wins over the choice. Empty (the default): the GGML_*
# defines decide, as for llama.cpp itself.
set(LLAMAPROC_BACKENDS "" CACHE STRING "auto: let llamaproc's machine detection choose the GPU backends")
if(LLAMAPROC_BACKENDS STREQUAL "auto")
  if(NOT Python_EXECUTABLE)
    find_package(Python 3.10 REQUIRED COMPONENTS Interpreter)
  endif()
  # -S: no site-packages (an installed llamaproc must not stand in for this source tree)
  execute_process(COMMAND "${Python_EXECUTABLE}" -S -m llamaproc.build --cmake-auto
                  WORKING_DIRECTORY "${LLAMAPROC_SOURCE_DIR}/src"
                  OUTPUT_VARIABLE _llamaproc_auto ERROR_VARIABLE _llamaproc_why RESULT_VARIABLE _llamaproc_rc)
  if(NOT _llamaproc_rc EQUAL 0)
    message(FATAL_ERROR "llamaproc: LLAMAPROC_BACKENDS=auto: machine detection failed:\n${_llamaproc_why}")
  endif()
  string(REPLACE "\n" ";" _llamaproc_why "${_llamaproc_why}")
  foreach(_line IN LISTS _llamaproc_why)
    if(_line)
      message(STATUS "llamaproc auto: ${_line}")
    endif()
  endforeach()
  string(REPLACE "\n" ";" _llamaproc_auto "${_llamaproc_auto}")
  foreach(_line IN LISTS _llamaproc_auto)
    if(_line MATCHES "^([A-Z_]+)=(.*)$")
      set(_name "${CMAKE_MATCH_1}")
      string(REPLACE "," ";" _value "${CMAKE_MATCH_2}")
      if(DEFINED CACHE{${_name}})
        message(STATUS "llamaproc auto: ${_name}=${${_name}} as given (auto would choose ${_value})")
      else()
        set(${_name} "${_value}" CACHE STRING "chosen by LLAMAPROC_BACKENDS=auto")
        message(STATUS "llamaproc auto: ${_name}=${_value}")
      endif()
    endif()
  endforeach()
elseif(NOT LLAMAPROC_BACKENDS STREQUAL "")
  message(FATAL_ERROR "llamaproc: LLAMAPROC_BACKENDS must be 'auto' or empty, got '${LLAMAPROC_BACKENDS}'; "
                      "choose backends one by one with -DGGML_CUDA=ON, -DGGML_VULKAN=ON, ...")
endif()
