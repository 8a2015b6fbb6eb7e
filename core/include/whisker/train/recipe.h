#pragma once
// Recipes: a whole training run as a JSON list of steps, shared by `whisker-cli run` and the
// workbench's "Run recipe". Steps:
//   {"step": "precompute", "on": true}     {"step": "unfreeze"}   {"step": "freeze"}
//   {"step": "bn_freeze", "on": true}
//   {"step": "lr_find", "start": 1e-5, "end": 10, "set_lr": true}
//       the first sweep chooses the rate "found" stands for: its minimum/10 suggestion,
//       clamped to [1e-4, 0.1]; later sweeps are informative unless "set_lr" is true
//   {"step": "fit", "lr": "found" | 0.01 | ["found/100", "found/10", "found"], "cycles": 3,
//    "cycle_len": 1, "cycle_mult": 2, "optimizer": "sgd" | "adamw", "one_cycle": false, "wd": 0}
//   {"step": "predict", "split": "valid" | "test", "tta": 4, "out": "submission.csv", "clip": 0}
// The default recipe is the seed's 8 steps (fastai's Dogs vs. Cats lesson).

#include "whisker/train/learner.h"

#include <atomic>
#include <functional>
#include <optional>
#include <string>

namespace whisker::train {

std::string default_recipe();

struct RecipeEvents {
    std::function<void(int number, const std::string& step_json)> step_started;
    std::function<void(const LrFindResult& result, double chosen_lr, bool chosen)> lr_found;
    std::function<void(const FitResult& result)> fit_done;
    std::function<void(const Predictions& predictions, data::Split split, const std::filesystem::path& written)> predicted;
};

struct RecipeResult {
    std::vector<EpochRecord> epochs;   // all fits, in order
    bool stopped = false;
    std::string stop_reason;
    int steps_done = 0;
};

// Validates the whole recipe first (UserError naming the bad step), then runs it.
RecipeResult run_recipe(Learner& learner, const std::string& recipe_json, const RecipeEvents& events = {},
                        const std::atomic<bool>* stop = nullptr);

}  // namespace whisker::train
