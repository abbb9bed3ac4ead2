// What loading a configuration will hold, before it is loaded.
//
//   estimate_memory()      llama.cpp's own no-alloc dry run of the model and of the context the
//                          server will create (only the GGUF header and metadata are read)
//   MeasuredMemory         what earlier loads of the same file with the same memory-relevant
//                          flags on this build and CPU really held: kept for the process and,
//                          when a file is set, on disk across processes
//   expected_memory()      the figure a load is judged by: the measurement where there is one,
//                          else the estimate, and which of the two it is
#pragma once

#include "common.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace llamaproc {

struct MemoryEstimate {
    uint64_t model_bytes = 0;    // weights, repacked copies (AMX, CPU "extra" buffers) included
    uint64_t context_bytes = 0;  // KV cache and other per-context state
    uint64_t compute_bytes = 0;  // compute buffers
    uint64_t total() const { return model_bytes + context_bytes + compute_bytes; }
};

// The dry run, with the output rows the server reserves (one per slot, more with speculation;
// a whole batch for embeddings) and every buffer counted: host, repacked and device ones; a
// mapped file counts whole beside the repacked copies (its pages are read in). Throws
// Error(model_load) when the model cannot be read.
MemoryEstimate estimate_memory(const common_params & params);

// Identifies a load for MeasuredMemory: the model file (path, size, modification time), the
// flags that change what it holds (context, batch, slots, cache types, offload, repack, mmap,
// embeddings, draft model, projector, adapters) and the build and backends that run it
// (llama.cpp's system info names the CPU variant and its repack support).
std::string memory_key(const common_params & params);

class MeasuredMemory {
public:
    // The process's store.
    static MeasuredMemory & process();

    // Where measurements persist ("" keeps them in this process only). A look-up reads the file
    // again when it changed since it was last read or written here; one that cannot be read or
    // written is ignored (a write failure is logged).
    void set_file(const std::string & path);
    std::string file() const;

    std::optional<uint64_t> find(const std::string & key);
    // Records what a load held (weights + context + compute, without the prompt cache).
    void record(const std::string & key, uint64_t held_bytes);
    // Forgets every measurement held in memory (the file is left as it is).
    void clear();

private:
    void read_file_locked();
    void write_file_locked();
    std::string file_stamp_locked() const;  // size and modification time; "" if there is none

    struct Row {
        uint64_t bytes = 0;
        long long when = 0;  // unix seconds of the measurement
    };
    mutable std::mutex mutex_;
    std::string file_;
    std::string read_stamp_;           // file_stamp_locked() when the file was last read or written
    std::map<std::string, Row> held_;  // by key digest
};

// What a load is judged by before it happens.
struct ExpectedMemory {
    std::string key;                   // memory_key() of the load: where its measurements go
    MemoryEstimate estimate;           // the dry run
    std::optional<uint64_t> measured;  // an earlier load of the same key held this much
    uint64_t need() const { return measured ? *measured : estimate.total(); }
    bool is_measured() const { return measured.has_value(); }
    // "123 bytes (1.0 MiB; measured when this file was last loaded with these flags)" or
    // "... (estimated: weights ..., context ..., compute ...)"
    std::string describe() const;
};

// Throws like estimate_memory().
ExpectedMemory expected_memory(const common_params & params);

// "1234 bytes (1.2 MiB)"
std::string mib_text(uint64_t bytes);

// A single server's memory_limit (0: none), checked before its model loads:
// expected_memory(params), or Error(resource) when that is over the limit.
ExpectedMemory expected_within_limit(const common_params & params, uint64_t memory_limit);
// The prompt cache's cap in bytes beside a model needing `need`: with an explicit --cache-ram,
// what it asks (Error(resource) when model + cache are over the limit, Error(config) for -1 with
// a limit); else `default_cap`, and under a limit no more than what `need` leaves.
uint64_t prompt_cache_cap(const common_params & params, bool cache_ram_explicit, uint64_t memory_limit, uint64_t need,
                          uint64_t default_cap);

}  // namespace llamaproc
