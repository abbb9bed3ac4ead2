// Process-wide llama.cpp state shared by every embedded server: the backend, the stream
// session manager, the log hooks. Initialised by the first server, released by the last.
#pragma once

namespace llamaproc {

class ProcessRuntime {
public:
    // Hold one of these for as long as a server uses llama.cpp.
    ProcessRuntime();
    ~ProcessRuntime();
    ProcessRuntime(const ProcessRuntime &) = delete;
    ProcessRuntime & operator=(const ProcessRuntime &) = delete;

    static int users();
};

}  // namespace llamaproc
