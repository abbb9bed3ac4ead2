#include "server/draft_policy.h"

#include "server/instance_params.h"

#include <algorithm>
#include <cstdlib>

namespace llamaproc {

namespace {

constexpr double SINGLE_WEIGHT = 0.1;    // EMA weight of a new plain-step sample
constexpr double MARGINAL_WEIGHT = 0.25; // EMA weight of a new verification-step sample
constexpr double PRIOR_MARGINAL = 0.5;   // marginal cost of a drafted token, x c(1), before any was timed
constexpr int MIN_SINGLE_SAMPLES = 2;    // plain steps timed before the first draft

double blend(double old_value, double sample, double weight, int samples) {
    return samples == 0 ? sample : old_value + weight * (sample - old_value);
}

}  // namespace

AdaptiveDraftPolicy::AdaptiveDraftPolicy(int n_slots, DraftPolicyOptions options)
    : options_(options), slots_(static_cast<size_t>(std::max(0, n_slots))) {
    for (int i = 0; i < n_slots; ++i) {
        begin(i);
    }
}

void AdaptiveDraftPolicy::begin(int slot_id) {
    if (slot_id < 0 || static_cast<size_t>(slot_id) >= slots_.size()) {
        return;
    }
    Slot & s = slots_[static_cast<size_t>(slot_id)];
    s = Slot{};
    s.accepted = options_.prior_accepted;
    s.cut = options_.prior_cut;
    s.wait = options_.first_cooldown;
}

int AdaptiveDraftPolicy::size_class(int n_tokens) {
    int c = 0;
    for (int n = n_tokens / 2; n > 1 && c < N_CLASSES - 1; n /= 2) {
        ++c;
    }
    return c;
}

double AdaptiveDraftPolicy::step_cost_us(int n_tokens) const {
    if (single_samples_ == 0) {
        return 0.0;
    }
    if (n_tokens <= 1) {
        return single_us_;
    }
    const int want = size_class(n_tokens);
    double marginal = PRIOR_MARGINAL * single_us_;
    // the class's own estimate, else the nearest class that has one
    for (int distance = 0; distance < N_CLASSES; ++distance) {
        const int lower = want - distance;
        const int upper = want + distance;
        if (lower >= 0 && marginal_samples_[lower] > 0) {
            marginal = marginal_us_[lower];
            break;
        }
        if (upper < N_CLASSES && marginal_samples_[upper] > 0) {
            marginal = marginal_us_[upper];
            break;
        }
    }
    return single_us_ + (n_tokens - 1) * marginal;
}

double AdaptiveDraftPolicy::acceptance(int slot_id) const {
    if (slot_id < 0 || static_cast<size_t>(slot_id) >= slots_.size()) {
        return 0.0;
    }
    const Slot & s = slots_[static_cast<size_t>(slot_id)];
    return s.accepted / (s.accepted + s.cut);
}

int AdaptiveDraftPolicy::best_draft(const Slot & slot, int fit) const {
    const double p = slot.accepted / (slot.accepted + slot.cut);
    const double plain_rate = 1.0 / single_us_;
    double expected = 1.0;  // E(k): the sampled token, plus each drafted token's chance to be kept
    double p_k = 1.0;
    double best_rate = plain_rate * options_.margin;
    int best = 0;
    for (int k = 1; k <= std::min(fit, options_.max_draft); ++k) {
        p_k *= p;
        expected += p_k;
        const double rate = expected / step_cost_us(k + 1);
        if (rate > best_rate) {
            best_rate = rate;
            best = k;
        }
    }
    return best;
}

int AdaptiveDraftPolicy::draft_max(int slot_id, int fit, int n_generating) {
    if (slot_id < 0 || static_cast<size_t>(slot_id) >= slots_.size() || fit <= 0) {
        return 0;
    }
    if (n_generating > 1 || single_samples_ < MIN_SINGLE_SAMPLES) {
        return 0;  // the batch is already shared, or the cost of a step is not known yet
    }
    Slot & s = slots_[static_cast<size_t>(slot_id)];
    if (const int k = best_draft(s, fit); k > 0) {
        s.cooldown = -1;
        s.wait = options_.first_cooldown;
        return k;
    }
    if (s.cooldown < 0) {
        s.cooldown = s.wait;  // drafting stopped paying: wait, then probe
    }
    if (s.cooldown > 0) {
        --s.cooldown;
        return 0;
    }
    // the wait is over: one short probe draft, and the wait before the next one doubles
    s.cooldown = -1;
    s.wait = std::min(options_.max_cooldown, 2 * s.wait);
    return std::min(fit, options_.probe_draft);
}

void AdaptiveDraftPolicy::verified(int slot_id, int n_drafted, int n_accepted) {
    if (slot_id < 0 || static_cast<size_t>(slot_id) >= slots_.size() || n_drafted <= 0) {
        return;
    }
    Slot & s = slots_[static_cast<size_t>(slot_id)];
    s.accepted = s.accepted * options_.decay + std::clamp(n_accepted, 0, n_drafted);
    s.cut = s.cut * options_.decay + (n_accepted < n_drafted ? 1.0 : 0.0);
}

void AdaptiveDraftPolicy::step_timed(int n_tokens, int64_t t_us) {
    if (n_tokens <= 0 || t_us <= 0) {
        return;
    }
    const double t = static_cast<double>(t_us);
    if (n_tokens == 1) {
        single_us_ = blend(single_us_, t, SINGLE_WEIGHT, single_samples_);
        ++single_samples_;
        return;
    }
    if (single_samples_ == 0) {
        return;
    }
    const int c = size_class(n_tokens);
    const double marginal = std::max(0.0, (t - single_us_) / (n_tokens - 1));
    marginal_us_[c] = blend(marginal_us_[c], marginal, MARGINAL_WEIGHT, marginal_samples_[c]);
    ++marginal_samples_[c];
}

const std::vector<std::string> & speculation_choice_flags() {
    static const std::vector<std::string> flags = {"--spec-type", "--spec-default", "--spec-draft-model", "-md",
                                                   "--model-draft", "--spec-draft-hf", "-hfd", "-hfrd",
                                                   "--hf-repo-draft"};
    return flags;
}

void default_speculation(common_params & params, const std::vector<std::string> & args, bool use_env) {
    for (const std::string & flag : speculation_choice_flags()) {
        if (flag_given(args, {flag.c_str()})) {
            return;
        }
    }
    if (use_env && (std::getenv("LLAMA_ARG_SPEC_TYPE") || std::getenv("LLAMA_ARG_SPEC_DRAFT_MODEL") ||
                    std::getenv("LLAMA_ARG_SPEC_DRAFT_HF_REPO"))) {
        return;
    }
    params.speculative.types = {COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE};
    if (!flag_given(args, {"--spec-ngram-simple-size-n"})) {
        params.speculative.ngram_simple.size_n = 4;
    }
    if (!flag_given(args, {"--spec-ngram-simple-size-m"})) {
        params.speculative.ngram_simple.size_m = 16;
    }
}

std::shared_ptr<server_draft_policy> make_draft_policy(const common_params & params) {
    const auto & types = params.speculative.types;
    const bool from_context = !types.empty() && std::all_of(types.begin(), types.end(), [](common_speculative_type t) {
        return t == COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE || t == COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K ||
               t == COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K4V || t == COMMON_SPECULATIVE_TYPE_NGRAM_MOD ||
               t == COMMON_SPECULATIVE_TYPE_NGRAM_CACHE;
    });
    if (!from_context) {
        return nullptr;
    }
    return std::make_shared<AdaptiveDraftPolicy>(params.n_parallel);
}

}  // namespace llamaproc
