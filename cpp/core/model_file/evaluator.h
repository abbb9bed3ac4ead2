// Model evaluation for quality measurements: the full next-token distribution at every
// position of a token sequence, computed by llama.cpp (no sampling, no server).
#pragma once

#include "native_log.h"
#include "process_state.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct llama_model;
struct llama_context;

namespace llamaproc {

struct EvaluatorOptions {
    std::string model_path;
    int context_size = 512;  // longest sequence one logprobs() call takes
    int threads = 0;         // 0 = llama.cpp's default
    int gpu_layers = 0;
};

// Thread-safe: calls on one Evaluator take turns (they share one llama_context).
class Evaluator {
public:
    // Throws Error(model_load) when the model cannot be loaded.
    explicit Evaluator(const EvaluatorOptions & options);
    ~Evaluator();
    Evaluator(const Evaluator &) = delete;
    Evaluator & operator=(const Evaluator &) = delete;

    int n_vocab() const;
    int context_size() const { return n_ctx_; }
    std::vector<int32_t> tokenize(const std::string & text, bool add_special) const;

    // out[i * n_vocab + v] = log P(token v at position i+1 | tokens[0..i]) for i < n. The
    // sequence is evaluated from an empty cache, so equal inputs give equal outputs.
    // Throws Error(config) for a sequence longer than the context or an out-of-range token,
    // Error(resource) when llama.cpp finds no room in its cache, Error(internal) when it fails.
    void logprobs(const int32_t * tokens, size_t n, float * out);

private:
    ProcessRuntime runtime_;
    std::shared_ptr<LogTail> tail_ = std::make_shared<LogTail>(40);
    llama_model * model_ = nullptr;
    llama_context * ctx_ = nullptr;
    int n_ctx_ = 0;
    int n_batch_ = 0;
    mutable std::mutex mutex_;  // serialises tokenize() and logprobs() on ctx_
};

}  // namespace llamaproc
