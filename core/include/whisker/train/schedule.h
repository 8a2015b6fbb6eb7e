#pragma once
// Learning-rate schedules, as multipliers of the base learning rates, one value per batch.
// Pure arithmetic (no LibTorch), exactly fastai's:
//   SGDR (fastai 0.7 CosAnneal): a cycle spans nb = batches_per_epoch * cycle_len batches;
//     while the fit's batch index is below nb/20 the multiplier is 1/100 (warm-up); otherwise
//     (cos(pi * i / nb) + 1) / 2 with i the batch index within the cycle; when a cycle ends,
//     i restarts at 0 and nb *= cycle_mult.
//   lr_find: start * (end/start)^(i/nb) (exponential) or start + (end-start) * i/nb (linear).
//   one-cycle (fastai v2): cosine from lr_max/div to lr_max over pct_start of the steps, then
//     cosine down to lr_max/div_final; momentum 0.95 -> 0.85 -> 0.95.

#include <vector>

namespace whisker::train {

// fastai's sum_geom: epochs of n_cycle cycles of cycle_len epochs growing by cycle_mult.
int sgdr_epochs(double cycle_len, int cycle_mult, int n_cycle);

// One multiplier per batch of the whole fit.
std::vector<double> sgdr_multipliers(int batches_per_epoch, double cycle_len, int cycle_mult, int n_cycle);

// The learning rate of each batch of an lr_find sweep over `batches` batches.
std::vector<double> lr_find_rates(double start_lr, double end_lr, int batches, bool linear);

struct OneCycle {
    double div = 25.0;
    double div_final = 1e5;
    double pct_start = 0.25;
    double mom_max = 0.95, mom_min = 0.85;
};
// Learning-rate multipliers (of lr_max) and momenta for `steps` batches.
std::vector<double> one_cycle_multipliers(int steps, const OneCycle& oc = {});
std::vector<double> one_cycle_momenta(int steps, const OneCycle& oc = {});

// Suggestions from an lr_find curve (learning rates and smoothed losses, already trimmed).
// Non-finite losses are ignored; a spike before the minimum does not fool them.
struct LrSuggestions {
    double minimum = 0;   // the rate at the lowest loss, divided by 10
    double steepest = 0;  // the rate where the loss falls fastest (d loss / d log lr)
    double valley = 0;    // fastai v2's default: inside the longest falling stretch
    bool valid = false;
};
LrSuggestions suggest_learning_rates(const std::vector<double>& lrs, const std::vector<double>& losses);

}  // namespace whisker::train
