#pragma once
// Recipes: a whole training run as a JSON list of steps, shared by `whisker-cli run` and the
// workbench's "Run recipe". Steps:
//   {"step": "precompute", "on": true}     {"step": "unfreeze"}   {"step": "freeze"}
//   {"step": "bn_freeze", "on": true}
//   {"step": "lr_find", "start": 1e-5, "end": 10, "set_lr": true, "accumulate": 4}
//       the first sweep chooses the rate "found" stands for: its minimum/10 suggestion,
//       clamped to [1e-4, 0.1]; later sweeps are informative unless "set_lr" is true
//   {"step": "fit", "lr": "found" | 0.01 | ["found/100", "found/10", "found"], "cycles": 3,
//    "cycle_len": 1, "cycle_mult": 2, "optimizer": "sgd" | "adamw", "one_cycle": false, "wd": 0,
//    "mixup": 0, "cutmix": 0, "mix_switch_prob": 0.5, "mix_prob": 1, "ema": 0, "accumulate": 4}
//       (MixUp/CutMix need precompute off at that step: checked before the recipe runs)
//       "accumulate": the optimiser steps every N batches (FitOptions::accumulate); without
//       it fits and sweeps use the learner's (LearnerConfig::accumulate, --accumulate)
//   {"step": "size", "size": 299}           progressive resizing (Learner::set_size)
//   {"step": "predict", "split": "valid" | "test", "tta": 4, "out": "submission.csv", "clip": 0}
// The default recipe is the seed's 8 steps (fastai's Dogs vs. Cats lesson).
// A recipe puts the learner in the state a step needs: precompute on a learner whose body is
// unfrozen freezes it first (precompute trains the head only), as fastai's freeze() would.

#include "whisker/train/learner.h"

#include <atomic>
#include <functional>
#include <optional>
#include <string>

namespace whisker::train {

std::string default_recipe();
// The same 8 steps for a network trained from scratch (no pretrained weights): the seed's
// schedule is made for ImageNet features — a random body's precomputed activations teach the
// head little and its early layers need the full rate — so the frozen steps are one epoch
// each, and the last fit trains every layer group at one rate with AdamW (2e-3: the LR finder's
// minimum/10 rule is unreliable on a random network's curve, which it still shows) for
// 2+4+8 epochs of SGDR. On the sample competition (1,600 training images at 64 px) this reaches
// about 0.85 validation accuracy in about 2 minutes on 2 cores, where the seed's 8 steps end near chance.
std::string from_scratch_recipe();
// The recipe `whisker-cli run` and the workbench's "Run the recipe" use when given none:
// default_recipe(), or from_scratch_recipe() for a learner that did not start from pretrained weights.
std::string recipe_for(const Learner& learner);

// A step in words, with "found" resolved to `found_lr`: "fit 3 cycles of 1 epoch at 3.0e-3".
std::string describe_step(const std::string& step_json, double found_lr);

struct RecipeEvents {
    // `description` as describe_step gives it, `total` the number of steps.
    std::function<void(int number, int total, const std::string& description)> step_started;
    // A change the recipe made to the learner's state by itself ("froze the body: precompute
    // trains the head only").
    std::function<void(const std::string& note)> adjusted;
    std::function<void(const LrFindResult& result, double chosen_lr, bool chosen)> lr_found;
    std::function<void(const FitResult& result)> fit_done;
    std::function<void(const Predictions& predictions, data::Split split, const std::filesystem::path& written)> predicted;
    // Step `number` (1-based) is done; `found_lr` is the rate "found" stands for from now on
    // (0 while no sweep chose one). What a caller keeps to resume the recipe (RecipeOptions).
    std::function<void(int number, double found_lr)> step_done;
};

// Where a recipe starts, and what it leaves out. The defaults run every step from the first.
// Resuming an interrupted recipe: the learner holds the state after `steps_done` steps (a
// checkpoint the caller saved at step_done), `found_lr` is what step_done last reported, and
// when the interrupted step was a fit, `resume_fit_from` names the checkpoint holding its fit
// in progress (the learner's "autosave"): that step continues it (Learner::resume) instead of
// starting it over.
struct RecipeOptions {
    int steps_done = 0;
    double found_lr = 0;
    std::string resume_fit_from;
    // Non-empty: "predict" steps of the test split are skipped, and `adjusted` says this
    // (e.g. cross-validation folds, whose test predictions come from the ensemble of folds).
    std::string skip_test_predictions;
};

struct RecipeResult {
    std::vector<EpochRecord> epochs;   // all fits, in order
    bool stopped = false;
    std::string stop_reason;
    int steps_done = 0;
};

// Validates the whole recipe first (UserError naming the bad step), then runs it from
// options.steps_done on. RecipeResult::steps_done counts the steps done before as well.
RecipeResult run_recipe(Learner& learner, const std::string& recipe_json, const RecipeEvents& events = {},
                        const std::atomic<bool>* stop = nullptr, const RecipeOptions& options = {});
// The number of steps of a recipe, its kinds checked (UserError as run_recipe's).
int recipe_steps(const std::string& recipe_json);
// The kind of step `number` (1-based) of a valid recipe: "fit", "predict", …; "" out of range.
std::string recipe_step_kind(const std::string& recipe_json, int number);

}  // namespace whisker::train
