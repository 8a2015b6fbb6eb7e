#include "whisker/train/recipe.h"

#include "whisker/common/errors.h"
#include "whisker/train/training_options.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

using nlohmann::json;

namespace whisker::train {

std::string default_recipe() {
    return R"([
  {"step": "precompute", "on": true},
  {"step": "lr_find"},
  {"step": "fit", "lr": "found", "cycles": 1},
  {"step": "precompute", "on": false},
  {"step": "fit", "lr": "found", "cycles": 3, "cycle_len": 1},
  {"step": "unfreeze"},
  {"step": "lr_find"},
  {"step": "fit", "lr": ["found/100", "found/10", "found"], "cycles": 3, "cycle_len": 1, "cycle_mult": 2},
  {"step": "predict", "split": "valid", "tta": 4},
  {"step": "predict", "split": "test", "tta": 4, "out": "submission.csv"}
])";
}

std::string from_scratch_recipe() {
    return R"([
  {"step": "precompute", "on": true},
  {"step": "lr_find"},
  {"step": "fit", "lr": "found", "cycles": 1},
  {"step": "precompute", "on": false},
  {"step": "fit", "lr": "found", "cycles": 1, "cycle_len": 1},
  {"step": "unfreeze"},
  {"step": "lr_find"},
  {"step": "fit", "lr": 0.002, "cycles": 3, "cycle_len": 2, "cycle_mult": 2, "optimizer": "adamw"},
  {"step": "predict", "split": "valid", "tta": 4},
  {"step": "predict", "split": "test", "tta": 4, "out": "submission.csv"}
])";
}

std::string recipe_for(const Learner& learner) {
    return learner.config().pretrained ? default_recipe() : from_scratch_recipe();
}

namespace {

const char* kKnownSteps[] = {"precompute", "unfreeze", "freeze", "bn_freeze", "lr_find", "fit", "predict", "size"};

// A fit or lr_find step's "accumulate": batches per optimiser step (0 when not given: the
// learner's). UserError unless it is a whole number from 1 to 4096.
int accumulate_of(const json& step) {
    if (!step.contains("accumulate")) return 0;
    const json& v = step["accumulate"];
    if (!v.is_number_integer() || v.get<long>() < 1 || v.get<long>() > 4096)
        throw UserError("\"accumulate\" is the number of batches per optimiser step (a whole number from 1 to 4096), not " + v.dump());
    return v.get<int>();
}

// A fit step's training options (MixUp/CutMix, weight EMA, gradient accumulation) into `o`;
// UserError for a key that is not a number.
void training_options_of(const json& step, FitOptions& o) {
    auto number = [&step](const char* key, double& out) {
        if (!step.contains(key)) return;
        if (!step[key].is_number()) throw UserError(std::string("\"") + key + "\" must be a number, not " + step[key].dump());
        out = step[key].get<double>();
    };
    number("mixup", o.mixup_alpha);
    number("cutmix", o.cutmix_alpha);
    number("mix_switch_prob", o.mix_switch_prob);
    number("mix_prob", o.mix_prob);
    number("ema", o.ema_decay);
    number("label_smoothing", o.label_smoothing);
    o.accumulate = accumulate_of(step);
}

// The image size of a "size" step; UserError unless it is a whole number of at least 32.
int size_of(const json& step) {
    if (!step.contains("size") || !step["size"].is_number_integer() || step["size"].get<long>() < 32 ||
        step["size"].get<long>() > 100000)
        throw UserError("a size step needs \"size\": the new image size in pixels (a whole number of at least 32), not " +
                        (step.contains("size") ? step["size"].dump() : std::string("nothing")));
    return step["size"].get<int>();
}

double rate_of(const json& v, double found) {
    if (v.is_number()) return v.get<double>();
    if (!v.is_string()) throw UserError("a learning rate must be a number or \"found[/N]\", not " + v.dump());
    const std::string text = v.get<std::string>();
    if (text == "found") return found;
    if (text.rfind("found/", 0) == 0) {
        try {
            return found / std::stod(text.substr(6));
        } catch (const std::exception&) {
        }
    }
    throw UserError("learning rate '" + text + "': use a number, \"found\" or \"found/N\"");
}

std::string rate_text(double lr) { return fmt::format("{:.1e}", lr); }

std::string rates_of(const json& lr, double found) {
    if (!lr.is_array()) return rate_text(rate_of(lr, found));
    std::string out;
    for (const auto& v : lr) out += (out.empty() ? "" : ", ") + rate_text(rate_of(v, found));
    return "differential rates " + out;
}

std::string plural(double n, const char* word) {
    return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

std::string describe_step(const std::string& step_json, double found) {
    json step;
    try {
        step = json::parse(step_json);
    } catch (const json::exception&) {
        return step_json;
    }
    const std::string kind = step.is_object() ? step.value("step", "") : "";
    if (kind == "precompute") return step.value("on", true) ? "precompute activations (train the head on cached features)"
                                                            : "precompute off (train on augmented images)";
    if (kind == "unfreeze") return "unfreeze the whole network";
    if (kind == "freeze") return "freeze the body (train the head only)";
    if (kind == "bn_freeze") return step.value("on", true) ? "freeze BatchNorm statistics" : "let BatchNorm statistics update";
    if (kind == "lr_find") {
        std::string what = fmt::format("find a learning rate (sweep {:.0e} to {:g})", step.value("start", 1e-5), step.value("end", 10.0));
        const json accumulate = step.value("accumulate", json(1));
        if (accumulate.is_number_integer() && accumulate.get<long>() > 1)
            what += fmt::format(" with a step every {} batches", accumulate.get<long>());
        return what;
    }
    if (kind == "fit") {
        std::string rates;
        try {
            rates = rates_of(step.value("lr", json("found")), found);
        } catch (const UserError&) {
            rates = step.value("lr", json("found")).dump();
        }
        const int cycles = step.value("cycles", 1);
        const double len = step.value("cycle_len", 0.0);
        const int mult = step.value("cycle_mult", 1);
        std::string what;
        if (step.value("one_cycle", false)) what = fmt::format("fit one cycle of {}", plural(cycles, "epoch"));
        else if (len > 0) what = fmt::format("fit {} of {}", plural(cycles, "cycle"), plural(len, "epoch"));
        else what = fmt::format("fit {} at a constant", plural(cycles, "epoch"));
        if (len > 0 && mult > 1) what += fmt::format(" (each cycle {}x longer)", mult);
        what += (len > 0 || step.value("one_cycle", false) ? " at " : " rate of ") + rates;
        const bool adamw = step.value("optimizer", "sgd") == "adamw";
        if (adamw) what += " with AdamW";
        FitOptions extra;
        try {
            training_options_of(step, extra);
        } catch (const UserError&) {
        }
        if (const std::string options = describe_training_options(extra); !options.empty())
            what += (adamw ? ", " : " with ") + options;
        return what;
    }
    if (kind == "size") return "change the image size to " + (step.contains("size") ? step["size"].dump() : std::string("?")) + " px";
    if (kind == "predict") {
        const std::string split = step.value("split", "test");
        const int tta = step.value("tta", 0);
        std::string what = "predict the " + split + " set" + (tta ? fmt::format(" with TTA ({} augmented pass{})", tta, tta == 1 ? "" : "es") : "");
        if (split == "test") what += ", write " + step.value("out", std::string("submission.csv"));
        return what;
    }
    return step.dump();
}

namespace {

// The recipe's steps, each of a known kind; UserError otherwise.
json parse_recipe(const std::string& recipe_json) {
    json recipe;
    try {
        recipe = json::parse(recipe_json);
    } catch (const json::exception& e) {
        throw UserError(std::string("the recipe is not valid JSON: ") + e.what());
    }
    if (!recipe.is_array() || recipe.empty()) throw UserError("a recipe is a non-empty JSON list of steps");
    for (std::size_t i = 0; i < recipe.size(); ++i) {
        const std::string kind = recipe[i].is_object() ? recipe[i].value("step", "") : "";
        if (std::find(std::begin(kKnownSteps), std::end(kKnownSteps), kind) == std::end(kKnownSteps))
            throw UserError("recipe step " + std::to_string(i + 1) + " (" + recipe[i].dump() + ") is not a known step",
                            "steps: precompute, unfreeze, freeze, bn_freeze, lr_find, fit, predict, size");
    }
    return recipe;
}

}  // namespace

int recipe_steps(const std::string& recipe_json) { return static_cast<int>(parse_recipe(recipe_json).size()); }

std::string recipe_step_kind(const std::string& recipe_json, int number) {
    const json recipe = parse_recipe(recipe_json);
    if (number < 1 || number > static_cast<int>(recipe.size())) return "";
    return recipe[static_cast<std::size_t>(number - 1)].value("step", "");
}

RecipeResult run_recipe(Learner& learner, const std::string& recipe_json, const RecipeEvents& ev,
                        const std::atomic<bool>* stop, const RecipeOptions& options) {
    const json recipe = parse_recipe(recipe_json);
    const int first = options.steps_done;
    if (first < 0 || first > static_cast<int>(recipe.size()))
        throw std::invalid_argument("run_recipe: steps_done " + std::to_string(first) + " out of range");
    // The steps' own values, checked before anything runs, following precompute through the
    // recipe from where it starts: MixUp/CutMix need images.
    bool precompute = learner.precompute();
    for (std::size_t i = 0; i < recipe.size(); ++i) {
        const json& step = recipe[i];
        const std::string kind = step.value("step", "");
        const std::string where = "recipe step " + std::to_string(i + 1) + " (" + step.dump() + "): ";
        const bool ahead = static_cast<int>(i) >= first;
        try {
            if (kind == "precompute") precompute = step.value("on", true);
            else if (kind == "unfreeze") precompute = false;
            else if (kind == "size") size_of(step);
            else if (kind == "lr_find") accumulate_of(step);
            else if (kind == "fit") {
                FitOptions o;
                training_options_of(step, o);
                check_training_options(o);
                if (ahead && precompute && mix_options(o).enabled())
                    throw UserError("MixUp/CutMix mix images, and precompute is on at this step",
                                    "add {\"step\": \"precompute\", \"on\": false} before it");
            }
        } catch (const UserError& e) {
            throw UserError(where + e.what(), e.hint());
        } catch (const json::exception& e) {
            throw UserError(where + e.what());
        }
    }

    RecipeResult result;
    double found = options.found_lr > 0 ? options.found_lr : 1e-2;
    bool found_set = options.found_lr > 0;
    int n = first;
    result.steps_done = first;
    for (std::size_t index = static_cast<std::size_t>(first); index < recipe.size(); ++index) {
        const json& step = recipe[index];
        if (stop && stop->load()) {
            result.stopped = true;
            result.stop_reason = "stopped by the user";
            break;
        }
        ++n;
        const bool resuming_fit = n == first + 1 && !options.resume_fit_from.empty() && step.value("step", "") == "fit";
        if (ev.step_started)
            ev.step_started(n, static_cast<int>(recipe.size()),
                            describe_step(step.dump(), found) + (resuming_fit ? " (continuing the interrupted fit)" : ""));
        const std::string kind = step.value("step", "");
        if (kind == "precompute") {
            const bool on = step.value("on", true);
            if (on && learner.frozen_groups() < learner.num_groups() - 1) {
                learner.freeze();
                if (ev.adjusted) ev.adjusted("froze the body first: precompute trains the head only");
            }
            learner.set_precompute(on);
        }
        else if (kind == "unfreeze") learner.unfreeze();
        else if (kind == "freeze") learner.freeze();
        else if (kind == "bn_freeze") learner.bn_freeze(step.value("on", true));
        else if (kind == "size") learner.set_size(size_of(step));
        else if (kind == "lr_find") {
            const auto r = learner.lr_find(step.value("start", 1e-5), step.value("end", 10.0), false, stop, accumulate_of(step));
            const bool choose = step.value("set_lr", !found_set);
            if (choose) {
                found_set = true;
                if (r.suggestions.valid) found = std::clamp(r.suggestions.minimum, 1e-4, 1e-1);
            }
            if (ev.lr_found) ev.lr_found(r, found, choose);
        } else if (kind == "fit") {
            FitOptions o;
            o.lrs.clear();
            const json lr = step.value("lr", json("found"));
            if (lr.is_array())
                for (const auto& v : lr) o.lrs.push_back(rate_of(v, found));
            else
                o.lrs = {rate_of(lr, found)};
            o.n_cycle = step.value("cycles", 1);
            o.cycle_len = step.value("cycle_len", 0.0);
            o.cycle_mult = step.value("cycle_mult", 1);
            o.optimizer = step.value("optimizer", "sgd") == "adamw" ? OptimizerKind::AdamW : OptimizerKind::SGD;
            o.one_cycle = step.value("one_cycle", false);
            if (step.contains("wd")) o.wds = {step["wd"].get<double>()};
            training_options_of(step, o);
            const FitResult r = resuming_fit ? learner.resume(options.resume_fit_from, stop) : learner.fit(o, stop);
            result.epochs.insert(result.epochs.end(), r.epochs.begin(), r.epochs.end());
            if (ev.fit_done) ev.fit_done(r);
            if (r.stopped) {
                result.stopped = true;
                result.stop_reason = r.stop_reason;
                result.steps_done = n - 1;
                return result;
            }
        } else if (kind == "predict") {
            const auto split = data::parse_split(step.value("split", "test"));
            if (!split || *split == data::Split::Train) throw UserError("predict steps take split test or valid");
            if (*split == data::Split::Test && !options.skip_test_predictions.empty()) {
                if (ev.adjusted) ev.adjusted(options.skip_test_predictions);
                result.steps_done = n;
                if (ev.step_done) ev.step_done(n, found_set ? found : 0.0);
                continue;
            }
            if (learner.dataset().count(*split) == 0) {
                result.steps_done = n;
                if (ev.step_done) ev.step_done(n, found_set ? found : 0.0);
                continue;
            }
            const auto p = learner.predict(*split, step.value("tta", 0), TtaMix::Mean, stop);
            std::filesystem::path written;
            if (*split == data::Split::Test) {
                written = learner.project() / step.value("out", "submission.csv");
                if (learner.is_main_process()) write_submission(written, learner.dataset(), p, step.value("clip", 0.0));
            }
            if (ev.predicted) ev.predicted(p, *split, written);
        }
        // A sweep or prediction cut short by the stop flag is not done: a resume repeats it.
        // (A fit says itself whether it stopped, above.)
        if (kind != "fit" && stop && stop->load()) {
            result.stopped = true;
            result.stop_reason = "stopped by the user";
            return result;
        }
        result.steps_done = n;
        if (ev.step_done) ev.step_done(n, found_set ? found : 0.0);
    }
    return result;
}

}  // namespace whisker::train
