// How long a draft each generating slot may verify in a decode step, chosen by what drafting
// has earned so far. llamaproc turns n-gram speculation (drafts copied from the context, no
// draft model) on by default; this policy is what keeps it from costing speed where the answer
// does not repeat its input.
//
// A draft of k tokens is verified in one decode step of k + 1 tokens. That step costs c(k + 1),
// and yields 1 + (the accepted prefix of the draft) tokens. With a per-token acceptance
// probability p, the expected yield is E(k) = 1 + p + p^2 + ... + p^k, so drafting pays when
// E(k) / c(k + 1) beats plain decoding's 1 / c(1). The policy learns both sides as it goes:
//   - c(n) from the server's own steps: c(1) from plain decode steps, and the marginal cost of
//     each further token from verification steps, per power-of-two size class. On a CPU with a
//     small model a step of 16 tokens costs about 10x one token (compute-bound, drafts must be
//     almost all accepted to pay); with weights that make decoding memory-bound it costs 2-5x.
//   - p per slot and request, from its verified drafts (accepted tokens against drafts cut
//     short), decayed so recent drafts count most, starting from an optimistic prior.
// It drafts the k that maximises E(k) / c(k + 1) when that beats plain decoding by a margin,
// and nothing otherwise. A slot that stopped drafting probes again with a short draft after a
// cool-down that doubles each time the probe fails, so a request whose output starts copying
// its input late still gets there. While several slots generate, nothing is drafted: their
// tokens already fill the batch (llama.cpp's own measurements lose speed there).
//
// Every call comes from the server's loop thread; nothing here is locked.
#pragma once

#include "server-context.h"

#include "common.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llamaproc {

struct DraftPolicyOptions {
    int max_draft = 16;            // the longest draft ever chosen (more gained nothing measurable)
    double margin = 1.05;          // drafting must beat plain decoding by this factor
    double prior_accepted = 4.0;   // prior pseudo-counts of the acceptance estimate (p = 0.8)
    double prior_cut = 1.0;
    double decay = 0.9;            // weight of older drafts in the acceptance estimate
    int first_cooldown = 16;       // plain steps before a probe draft; doubles per failed probe
    int max_cooldown = 256;
    int probe_draft = 2;           // length of a probe draft
};

class AdaptiveDraftPolicy : public server_draft_policy {
public:
    AdaptiveDraftPolicy(int n_slots, DraftPolicyOptions options = {});

    void begin(int slot_id) override;
    int draft_max(int slot_id, int fit, int n_generating) override;
    void verified(int slot_id, int n_drafted, int n_accepted) override;
    void step_timed(int n_tokens, int64_t t_us) override;

    // The estimated time of a decode step of n tokens (microseconds; 0 before any step was timed).
    double step_cost_us(int n_tokens) const;
    // The slot's current estimate of the per-token acceptance probability.
    double acceptance(int slot_id) const;

private:
    struct Slot {
        double accepted = 0.0;  // decayed accepted draft tokens (+ prior)
        double cut = 0.0;       // decayed drafts that were not accepted to their end (+ prior)
        int cooldown = -1;      // plain steps left before a probe draft (-1: not waiting)
        int wait = 0;           // the next cool-down; doubles after each probe
    };
    // size classes of verification steps: [2,3], [4,7], [8,15], [16,31], [32,63], [64,...)
    static constexpr int N_CLASSES = 6;
    static int size_class(int n_tokens);
    int best_draft(const Slot & slot, int fit) const;

    DraftPolicyOptions options_;
    std::vector<Slot> slots_;
    double single_us_ = 0.0;   // EMA of a plain (1-token) step
    int single_samples_ = 0;
    std::array<double, N_CLASSES> marginal_us_{};  // EMA of (c(n) - c(1)) / (n - 1) per class
    std::array<int, N_CLASSES> marginal_samples_{};
};

// The flags that choose a speculation type or a draft model: given any, llamaproc's default is
// not applied (and ServerConfig/ModelSpec refuse them with speculation=False).
const std::vector<std::string> & speculation_choice_flags();

// llamaproc's speculation defaults for flags that choose none (`args`, and with use_env the
// environment): n-gram drafts (ngram-simple, 4-token lookup, drafts of up to 16 tokens).
// Flags that name a --spec-type (`--spec-type none` turns it off), --spec-default or a draft
// model keep llama-server's meaning; --spec-ngram-simple-size-n/-m keep their values.
void default_speculation(common_params & params, const std::vector<std::string> & args, bool use_env);

// The policy for a server with these parameters: adaptive for drafts taken from the context
// (every --spec-type an n-gram type), none (llama.cpp's fixed lengths) for draft models.
std::shared_ptr<server_draft_policy> make_draft_policy(const common_params & params);

}  // namespace llamaproc
