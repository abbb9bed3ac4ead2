# Fails the build if the --wrap of common_log_add() did not take (see CMakeLists.txt).
execute_process(COMMAND "${NM}" -D --undefined-only "${MODULE}"
                OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "llamaproc: cannot list the symbols of ${MODULE} with ${NM}")
endif()
if(undefined MATCHES "__real_[A-Za-z0-9_]+")
  message(FATAL_ERROR "llamaproc: the link left ${CMAKE_MATCH_0} undefined: the -Wl,--wrap of "
                      "common_log_add() found no such symbol, so llama.cpp's server log lines would be "
                      "lost. Update the mangled name in CMakeLists.txt to this llama.cpp's common_log_add.")
endif()
