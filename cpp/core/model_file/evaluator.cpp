#include "model_file/evaluator.h"

#include "errors.h"
#include "model_file/gguf_file.h"

#include "llama.h"

#include <algorithm>
#include <cmath>

namespace llamaproc {

namespace {

// llama_decode()'s return codes (llama.h) as errors that say what to do about them.
Error decode_error(int rc, size_t start, size_t count, int n_ctx, std::vector<std::string> log_tail) {
    const std::string batch = "tokens " + std::to_string(start) + ".." + std::to_string(start + count - 1);
    switch (rc) {
        case 1:
            return Error(ErrorKind::resource,
                         "llama_decode found no free KV cache slot for " + batch + " in a context of " +
                             std::to_string(n_ctx) + ". Hint: raise context_size or evaluate a shorter sequence.",
                         std::move(log_tail));
        case 2:
            return Error(ErrorKind::internal, "llama_decode was aborted while evaluating " + batch,
                         std::move(log_tail));
        default:
            return Error(ErrorKind::internal,
                         std::string(rc < 0 ? "llama_decode failed" : "llama_decode returned an unexpected status") +
                             " (code " + std::to_string(rc) + ") while evaluating " + batch,
                         std::move(log_tail));
    }
}

}  // namespace

Evaluator::Evaluator(const EvaluatorOptions & options) {
    check_gguf_file(options.model_path);
    if (options.context_size < 2) {
        throw Error(ErrorKind::config, "context_size must be at least 2");
    }
    ThreadLogScope scope(tail_);
    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = options.gpu_layers;
    model_ = llama_model_load_from_file(options.model_path.c_str(), mparams);
    if (model_ == nullptr) {
        throw Error(ErrorKind::model_load, "failed to load model '" + options.model_path + "'", tail_->lines());
    }
    n_ctx_ = options.context_size;
    n_batch_ = std::min(n_ctx_, 512);
    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = static_cast<uint32_t>(n_ctx_);
    cparams.n_batch = static_cast<uint32_t>(n_batch_);
    cparams.n_ubatch = static_cast<uint32_t>(n_batch_);
    cparams.n_seq_max = 1;
    if (options.threads > 0) {
        cparams.n_threads = options.threads;
        cparams.n_threads_batch = options.threads;
    }
    ctx_ = llama_init_from_model(model_, cparams);
    if (ctx_ == nullptr) {
        llama_model_free(model_);
        model_ = nullptr;
        throw Error(ErrorKind::resource, "cannot create a context of " + std::to_string(n_ctx_) + " tokens for '" +
                                             options.model_path + "'", tail_->lines());
    }
}

Evaluator::~Evaluator() {
    if (ctx_) {
        llama_free(ctx_);
    }
    if (model_) {
        llama_model_free(model_);
    }
}

int Evaluator::n_vocab() const {
    return llama_vocab_n_tokens(llama_model_get_vocab(model_));
}

std::vector<int32_t> Evaluator::tokenize(const std::string & text, bool add_special) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const llama_vocab * vocab = llama_model_get_vocab(model_);
    std::vector<llama_token> tokens(text.size() + 8);
    int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), add_special, /*parse_special=*/false);
    if (n < 0) {
        tokens.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), add_special, false);
    }
    tokens.resize(static_cast<size_t>(std::max(n, 0)));
    return std::vector<int32_t>(tokens.begin(), tokens.end());
}

void Evaluator::logprobs(const int32_t * tokens, size_t n, float * out) {
    const int vocab = n_vocab();
    if (n == 0) {
        return;
    }
    if (n > static_cast<size_t>(n_ctx_)) {
        throw Error(ErrorKind::config, "sequence of " + std::to_string(n) + " tokens is longer than the context (" +
                                           std::to_string(n_ctx_) + "); raise context_size or split it");
    }
    for (size_t i = 0; i < n; ++i) {
        if (tokens[i] < 0 || tokens[i] >= vocab) {
            throw Error(ErrorKind::config, "token id " + std::to_string(tokens[i]) + " at position " +
                                               std::to_string(i) + " is outside the vocabulary (0.." +
                                               std::to_string(vocab - 1) + ")");
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ThreadLogScope scope(tail_);
    llama_memory_clear(llama_get_memory(ctx_), true);
    struct BatchOwner {
        llama_batch batch;
        ~BatchOwner() { llama_batch_free(batch); }
    } owner{llama_batch_init(n_batch_, 0, 1)};
    llama_batch & batch = owner.batch;
    for (size_t start = 0; start < n; start += static_cast<size_t>(n_batch_)) {
        const size_t count = std::min(n - start, static_cast<size_t>(n_batch_));
        batch.n_tokens = static_cast<int32_t>(count);
        for (size_t j = 0; j < count; ++j) {
            batch.token[j] = tokens[start + j];
            batch.pos[j] = static_cast<llama_pos>(start + j);
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = 0;
            batch.logits[j] = 1;
        }
        const int rc = llama_decode(ctx_, batch);
        if (rc != 0) {
            throw decode_error(rc, start, count, n_ctx_, tail_->lines());
        }
        for (size_t j = 0; j < count; ++j) {
            const float * logits = llama_get_logits_ith(ctx_, static_cast<int32_t>(j));
            float * row = out + (start + j) * static_cast<size_t>(vocab);
            const float max_logit = *std::max_element(logits, logits + vocab);
            double sum = 0.0;
            for (int v = 0; v < vocab; ++v) {
                sum += std::exp(static_cast<double>(logits[v] - max_logit));
            }
            const float log_norm = max_logit + static_cast<float>(std::log(sum));
            for (int v = 0; v < vocab; ++v) {
                row[v] = logits[v] - log_norm;
            }
        }
    }
}

}  // namespace llamaproc
