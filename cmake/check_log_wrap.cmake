# Fails the build if the --wrap of common_log_add() did not take (see CMakeLists.txt).
execute_process(COMMAND "${NM}" -D --undefined-only "${MODULE}"
                OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "llamaproc: cannot list the symbols of ${MODULE} with ${NM}")
endif()
if(undefined MATCHES "__real_[A-Za-z0-9_]+")
  message(FATAL_ERROR "llamaproc: the link left ${CMAKE_MATCH_0} undefined: a -Wl,--wrap in "
                      "CMakeLists.txt (common_log_add: server log lines; llama_decode: the decode gate) "
                      "found no such symbol in this llama.cpp. Update the symbol name in CMakeLists.txt.")
endif()
