#include "whisker/project/folds.h"

#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/folds.h"
#include "whisker/explain/duplicates.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::project {

namespace {

constexpr const char* kFoldFile = "fold.json";      // the folds a fold's learner trained on
constexpr const char* kRecipeFile = "recipe.json";  // where the fold's recipe run is

std::string plural(long n, const char* word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

void remove_checkpoint(const fs::path& folder, const std::string& name) {
    std::error_code ec;
    for (const char* ext : {".json", ".safetensors", ".optim", ".ema.safetensors", ".grads.safetensors"})
        fs::remove(folder / "models" / (name + ext), ec);
}

train::LearnerConfig config_for(const LearnerSpec& spec, const train::LearnerConfig& base) {
    train::LearnerConfig c = spec.config(base);
    c.weights_from_checkpoint = false;
    return c;
}

// The fold's recipe run: enough to skip a fold that is done, or to continue one that was
// interrupted after its last finished step.
struct RecipeProgress {
    std::string recipe;        // the recipe's JSON, as given
    int steps_done = 0;
    double found_lr = 0;       // what "found" stands for after those steps (0: not chosen yet)
    int fit_started = 0;       // a fit step (1-based) that began and has not finished
    int run = 0;               // the run that did the latest steps
    bool done = false;

    static std::optional<RecipeProgress> read(const fs::path& folder) {
        try {
            const json j = json::parse(read_file(folder / kRecipeFile));
            RecipeProgress p;
            p.recipe = j.at("recipe").get<std::string>();
            p.steps_done = j.value("steps_done", 0);
            p.found_lr = j.value("found_lr", 0.0);
            p.fit_started = j.value("fit_started", 0);
            p.run = j.value("run", 0);
            p.done = j.value("done", false);
            return p;
        } catch (const std::exception&) {
            return std::nullopt;   // missing or damaged: the recipe starts over
        }
    }
    void write(const fs::path& folder) const {
        write_file_atomically(folder / kRecipeFile, json{{"recipe", recipe}, {"steps_done", steps_done}, {"found_lr", found_lr},
                                                         {"fit_started", fit_started}, {"run", run}, {"done", done}}
                                                        .dump(1));
    }
};

// Whether the fold folder's learner belongs to these folds and this setup.
bool fold_learner_current(const fs::path& folder, const std::string& fingerprint, const LearnerSpec& spec, std::string* why) {
    std::error_code ec;
    if (!fs::exists(folder / "models" / "current.json", ec)) {
        if (why) *why = "";
        return false;
    }
    std::optional<LearnerSpec> had;
    try {
        had = LearnerSpec::read(folder);
    } catch (const UserError&) {
    }
    if (!had || !same_learner_setup(*had, spec)) {
        if (why)
            *why = !had                     ? "its learner.json is missing or damaged"
                   : had->arch != spec.arch ? fmt::format("it was a {}, the folds' learners are now {}s", had->arch, spec.arch)
                                            : "the project's learner changed its setup";
        return false;
    }
    try {
        const json j = json::parse(read_file(folder / kFoldFile));
        if (j.value("fingerprint", "") != fingerprint) {
            if (why) *why = "the folds were dealt again, or images were excluded, included or relabelled";
            return false;
        }
    } catch (const std::exception&) {
        if (why) *why = "its fold.json is missing";
        return false;
    }
    return true;
}

// The TTA passes of the recipe's last "predict" step of the valid split (0 without one).
int last_valid_tta(const std::string& recipe_json) {
    int tta = 0;
    try {
        for (const auto& step : json::parse(recipe_json))
            if (step.is_object() && step.value("step", "") == "predict" && step.value("split", "test") == "valid")
                tta = step.value("tta", 0);
    } catch (const json::exception&) {
    }
    return tta;
}

// An interrupted fit of a learner of `arch` waits in the folder's autosave.
bool autosave_interrupted(const fs::path& folder, const std::string& arch) {
    try {
        const json j = json::parse(read_file(folder / "models" / "autosave.json"));
        if (!j.contains("fit")) return false;
        const json& f = j["fit"];
        return j.value("arch", "") == arch && f.value("epoch", 0) < f.value("total_epochs", 0);
    } catch (const std::exception&) {
        return false;
    }
}

std::string model_of(const RunRecord& r) { return r.arch.empty() ? std::string("-") : fmt::format("{} {}px", r.arch, r.size); }

}  // namespace

fs::path folds_folder(const fs::path& project, int folds) { return project / "folds" / fmt::format("k{}", folds); }
fs::path fold_folder(const fs::path& project, int folds, int fold) { return folds_folder(project, folds) / fmt::format("fold-{}", fold); }
fs::path oof_path(const fs::path& project, int folds, int run) {
    return folds_folder(project, folds) / "oof" / (run_checkpoint_name(run) + ".csv");
}

bool same_learner_setup(const LearnerSpec& a, const LearnerSpec& b) {
    return a.arch == b.arch && a.pretrained == b.pretrained && a.seed == b.seed && a.augment == b.augment &&
           a.max_zoom == b.max_zoom && a.no_flip == b.no_flip && a.trivial_augment == b.trivial_augment &&
           a.random_erasing == b.random_erasing && a.val_resize == b.val_resize;
}

LearnerSpec folds_learner_spec(const fs::path& project, int folds, const LearnerSpec& project_spec, std::string* note) {
    const fs::path folder = folds_folder(project, folds);
    std::optional<LearnerSpec> had;
    try {
        had = LearnerSpec::read(folder);
    } catch (const UserError&) {
        // damaged: written again below
    }
    if (had && same_learner_setup(*had, project_spec)) {
        had->batch_size = project_spec.batch_size;   // memory, not what the weights learn
        return *had;
    }
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec) throw UserError("cannot create '" + folder.string() + "': " + ec.message());
    project_spec.write(folder);
    if (note && had)
        *note = fmt::format("the project's learner is now a {} at {} px ({} before): the {} folds' learners start over from it",
                            project_spec.arch, project_spec.size, had->arch, folds);
    return project_spec;
}

// ---- FoldLearner ----

FoldLearner::FoldLearner(const fs::path& project, const data::Dataset& dataset, int fold, const LearnerSpec& spec,
                         const train::LearnerConfig& base, bool fresh, const train::ProgressCallback& progress)
    : project_(project), fold_(fold), folds_(dataset.folds()), spec_(spec) {
    data::check_fold(dataset, fold);
    folder_ = fold_folder(project, folds_, fold);
    fingerprint_ = data::fold_fingerprint(dataset, fold);
    manifest_ = std::make_shared<const data::Dataset>(dataset);
    data::Dataset view = data::fold_view(dataset, fold);
    // The learner's project is the fold's folder: its images by absolute path.
    for (auto& im : view.images) im.path = fs::absolute(dataset.resolve(project, im)).lexically_normal().string();

    std::string why;
    const bool current = fold_learner_current(folder_, fingerprint_, spec, &why);
    is_new_ = fresh || !current;
    std::error_code ec;
    fs::create_directories(folder_ / "models", ec);
    if (ec) throw UserError("cannot create '" + (folder_ / "models").string() + "': " + ec.message());
    if (is_new_) {
        // The fold's learner and its recipe progress go; runs keep their checkpoints.
        remove_checkpoint(folder_, "current");
        remove_checkpoint(folder_, "autosave");
        fs::remove(folder_ / kRecipeFile, ec);
        note_ = fresh && current ? "a new learner (the recipe starts from the starting weights)"
                : why.empty()    ? "a new learner"
                                 : "a new learner: the fold's earlier one is out of date (" + why + ")";
        learner_ = std::make_unique<train::Learner>(folder_, std::move(view), config_for(spec, base), progress);
        persist();
    } else {
        LearnerSpec own = spec;
        try {
            if (auto s = LearnerSpec::read(folder_)) own.size = s->size;   // progressive resizing
        } catch (const UserError&) {
        }
        train::LearnerConfig c = config_for(own, base);
        c.batch_size = spec.batch_size;
        c.weights_from_checkpoint = true;
        learner_ = std::make_unique<train::Learner>(folder_, std::move(view), c, progress);
        learner_->load("current");
        note_ = "continues its learner";
    }
}

FoldLearner::~FoldLearner() = default;

std::string FoldLearner::describe() const {
    const auto& l = *learner_;
    std::string s = fmt::format("fold {} of {}: {} at {} px, {}, {}", fold_, folds_, l.config().arch, l.config().size,
                                l.config().pretrained ? "pretrained" : "from scratch", plural(l.epochs_trained(), "epoch"));
    if (l.frozen_groups() >= l.num_groups() - 1) s += ", body frozen";
    else if (l.frozen_groups() == 0) s += ", body unfrozen";
    if (l.precompute()) s += ", precompute on";
    return s;
}

std::string FoldLearner::autosave_reference() const {
    return fmt::format("../folds/k{}/fold-{}/models/autosave", folds_, fold_);
}

bool FoldLearner::has_interrupted_fit() const { return autosave_interrupted(folder_, learner_->config().arch); }

void FoldLearner::persist() {
    train::Learner& l = *learner_;
    LearnerSpec s = spec_;
    s.size = l.config().size;
    s.batch_size = l.config().batch_size;
    l.save("current");
    if (!l.is_main_process()) return;
    s.write(folder_);
    write_file_atomically(folder_ / kFoldFile, json{{"folds", folds_}, {"fold", fold_}, {"fingerprint", fingerprint_}}.dump(1));
}

void FoldLearner::forget_recipe() {
    std::error_code ec;
    if (learner_->is_main_process()) fs::remove(folder_ / kRecipeFile, ec);
}

fs::path FoldLearner::write_oof(const train::Predictions& valid, int run) const {
    const fs::path file = oof_path(project_, folds_, run);
    if (learner_->is_main_process()) write_oof_csv(file, *manifest_, valid);
    return file;
}

// ---- dealing the folds ----

bool has_duplicate_fingerprints(const fs::path& project) {
    std::error_code ec;   // where explain/duplicates.cpp keeps them
    return fs::exists(project / "cache" / "duplicates" / "fingerprints.bin", ec);
}

std::string group_near_duplicates(const fs::path& project, const data::Dataset& dataset, data::FoldOptions& options, int threads,
                                  const ProgressFn& progress, const std::atomic<bool>* cancel) {
    explain::DuplicateOptions o;
    o.threads = threads;
    o.progress = progress;
    o.cancel = cancel;
    const auto report = explain::find_duplicates(project, dataset, o);
    std::size_t kept = 0, images = 0;
    for (const auto& g : report.groups) {
        std::size_t labelled = 0;
        for (std::size_t r : g.records)
            labelled += dataset.images[r].split != data::Split::Test && !dataset.images[r].labels.empty();
        if (labelled < 2) continue;
        options.groups.push_back(g.records);
        ++kept;
        images += labelled;
    }
    options.grouping = fmt::format("near-duplicate groups (similarity >= {:g})", o.threshold);
    return fmt::format("{} group{} of near-duplicates ({} labelled images) kept in one fold each", kept, kept == 1 ? "" : "s", images);
}

// ---- a fold's recipe ----

std::string default_folds_recipe(const LearnerSpec& project_spec) {
    return project_spec.pretrained ? train::default_recipe() : train::from_scratch_recipe();
}

FoldRecipeState fold_recipe_state(const fs::path& project, const data::Dataset& dataset, const LearnerSpec& spec,
                                  const std::string& recipe_json, int fold) {
    data::check_fold(dataset, fold);
    FoldRecipeState s;
    s.steps = train::recipe_steps(recipe_json);
    const fs::path folder = fold_folder(project, dataset.folds(), fold);
    const auto had = RecipeProgress::read(folder);
    if (!had || had->recipe != recipe_json || !fold_learner_current(folder, data::fold_fingerprint(dataset, fold), spec, nullptr))
        return s;   // a new learner starts the recipe
    s.run = had->run;
    s.steps_done = had->steps_done;
    s.done = had->done;
    s.interrupted = !had->done && (had->steps_done > 0 || had->fit_started > 0);
    s.in_fit = s.interrupted && had->fit_started == had->steps_done + 1 &&
               train::recipe_step_kind(recipe_json, had->fit_started) == "fit" && autosave_interrupted(folder, spec.arch);
    return s;
}

FoldRecipeResult run_fold_recipes(const fs::path& project, const data::Dataset& dataset, const LearnerSpec& spec,
                                  const train::LearnerConfig& base, const FoldRecipeOptions& options,
                                  const FoldRecipeEvents& events, const std::atomic<bool>* stop,
                                  const train::ProgressCallback& progress) {
    const int k = dataset.folds();
    data::check_fold(dataset, 0);
    const int steps = train::recipe_steps(options.recipe_json);   // a bad recipe fails before anything runs
    std::vector<int> folds = options.folds;
    if (folds.empty())
        for (int f = 0; f < k; ++f) folds.push_back(f);
    for (int f : folds) data::check_fold(dataset, f);

    FoldRecipeResult result;
    for (int fold : folds) {
        if (stop && stop->load()) {
            result.stopped = true;
            result.stop_reason = "stopped by the user";
            result.stopped_fold = fold;
            break;
        }
        const fs::path folder = fold_folder(project, k, fold);
        const auto state = fold_recipe_state(project, dataset, spec, options.recipe_json, fold);
        if (state.done) {
            result.skipped.push_back(fold);
            if (events.fold_started)
                events.fold_started(fold, k, fmt::format("done in run #{} with this recipe", state.run), true);
            continue;
        }
        const bool resume = state.interrupted;
        const auto had = resume ? RecipeProgress::read(folder) : std::nullopt;
        FoldLearner fl(project, dataset, fold, spec, base, /*fresh=*/!resume, progress);
        train::Learner& learner = fl.learner();
        auto recorder = std::make_shared<RunRecorder>(project, options.program);
        learner.add_callback(recorder);
        if (events.learner_ready) events.learner_ready(learner);
        recorder->begin(RunKind::Recipe, learner, options.command);
        recorder->set_fold(fold, k, fl.autosave_reference());

        RecipeProgress prog;
        prog.recipe = options.recipe_json;
        train::RecipeOptions ro;
        ro.skip_test_predictions = "skipped in a fold run: the folds' ensemble predicts the test set (whisker-cli ensemble "
                                   "PROJECT --folds)";
        std::string note = fl.note();
        if (resume) {
            prog = *had;
            ro.steps_done = had->steps_done;
            ro.found_lr = had->found_lr;
            note = fmt::format("resumes after step {} of {}", had->steps_done, steps);
            if (had->run) note += fmt::format(" (run #{} was interrupted)", had->run);
            if (state.in_fit && fl.has_interrupted_fit()) {
                ro.resume_fit_from = "autosave";
                recorder->expect_resume(fl.autosave_reference());
                note += ", continuing its interrupted fit";
            }
        }
        prog.done = false;
        prog.run = recorder->number();
        if (learner.is_main_process()) prog.write(folder);
        if (events.fold_started) events.fold_started(fold, k, note, false);

        std::optional<train::Predictions> last_valid;
        std::string last_valid_state;
        train::RecipeEvents ev = events.recipe;
        ev.step_started = [&, inner = events.recipe.step_started](int n, int total, const std::string& what) {
            if (train::recipe_step_kind(options.recipe_json, n) == "fit") {
                prog.fit_started = n;
                if (learner.is_main_process()) prog.write(folder);
            }
            if (inner) inner(n, total, what);
        };
        ev.step_done = [&, inner = events.recipe.step_done](int n, double found) {
            fl.persist();   // the state after step n: what a resume starts from
            prog.steps_done = n;
            prog.found_lr = found;
            prog.fit_started = 0;
            if (learner.is_main_process()) prog.write(folder);
            if (inner) inner(n, found);
        };
        ev.predicted = [&, inner = events.recipe.predicted](const train::Predictions& p, data::Split split, const fs::path& written) {
            if (split == data::Split::Valid) {
                last_valid = p;
                last_valid_state = learner.state_id();
            }
            if (inner) inner(p, split, written);
        };

        train::RecipeResult r;
        try {
            r = train::run_recipe(learner, options.recipe_json, recorder->recipe_events(options.recipe_json, ev), stop, ro);
        } catch (const Cancelled&) {
            r.stopped = true;
            r.stop_reason = "stopped by the user";
        } catch (const std::exception& e) {
            recorder->end(e.what());
            throw;
        }
        if (r.stopped) {
            // "current" keeps the state after the last finished step, the autosave the fit.
            recorder->end_stopped(r.stop_reason);
            result.stopped = true;
            result.stop_reason = r.stop_reason;
            result.stopped_fold = fold;
            break;
        }
        // The out-of-fold predictions of the final weights.
        train::Predictions oof;
        if (last_valid && last_valid_state == learner.state_id()) {
            oof = *last_valid;
        } else {
            const int tta = last_valid_tta(options.recipe_json);
            try {
                oof = learner.predict(data::Split::Valid, tta, train::TtaMix::Mean, stop);
            } catch (const Cancelled&) {
                recorder->end_stopped("stopped by the user");
                result.stopped = true;
                result.stop_reason = "stopped by the user";
                result.stopped_fold = fold;
                break;
            }
            recorder->add_prediction(oof, data::Split::Valid, tta, train::TtaMix::Mean);
        }
        const int run = recorder->number();
        recorder->set_oof(fl.write_oof(oof, run));
        fl.persist();
        prog.done = true;
        prog.run = run;
        if (learner.is_main_process()) {
            prog.write(folder);
            // The fold's precomputed activations are of no more use to the recipe; they can be large.
            std::error_code ec;
            fs::remove_all(folder / "cache" / "precompute", ec);
        }
        recorder->end();
        learner.remove_callback(recorder.get());
        result.done.push_back(fold);
        if (events.fold_done) events.fold_done(fold, run, oof);
    }
    return result;
}

// ---- out-of-fold predictions ----

train::Predictions predictions_from_probabilities(const data::Dataset& dataset, std::vector<std::size_t> records,
                                                  const at::Tensor& probs, int passes) {
    train::Predictions p;
    p.records = std::move(records);
    p.probs = probs.to(at::kFloat).contiguous();
    p.passes = passes;
    const at::Tensor pred = p.probs.numel() ? p.probs.argmax(1) : at::empty({0}, at::kLong);
    const at::Tensor probs64 = p.probs.to(at::kDouble).contiguous();
    const auto classes = probs64.dim() == 2 ? probs64.size(1) : 0;
    const double* pp = probs64.numel() ? probs64.data_ptr<double>() : nullptr;
    for (std::size_t i = 0; i < p.records.size(); ++i) {
        const auto& im = dataset.images.at(p.records[i]);
        p.predicted.push_back(static_cast<int>(pred[static_cast<long>(i)].item<std::int64_t>()));
        const int actual = im.labels.empty() ? -1 : im.labels[0];
        p.actual.push_back(actual);
        p.losses.push_back(actual < 0 ? std::nan("")
                                      : -std::log(std::clamp(pp[static_cast<long>(i) * classes + actual], 1e-15, 1.0)));
    }
    return p;
}

train::Predictions concat_predictions(const std::vector<const train::Predictions*>& parts) {
    train::Predictions out;
    std::vector<at::Tensor> probs;
    for (const auto* p : parts) {
        out.records.insert(out.records.end(), p->records.begin(), p->records.end());
        out.predicted.insert(out.predicted.end(), p->predicted.begin(), p->predicted.end());
        out.actual.insert(out.actual.end(), p->actual.begin(), p->actual.end());
        out.losses.insert(out.losses.end(), p->losses.begin(), p->losses.end());
        if (p->probs.defined() && p->probs.numel()) probs.push_back(p->probs.to(at::kCPU, at::kFloat));
        out.passes = std::max(out.passes, p->passes);
    }
    out.probs = probs.empty() ? at::empty({0, 0}, at::kFloat) : at::cat(probs, 0);
    return out;
}

void write_oof_csv(const fs::path& file, const data::Dataset& dataset, const train::Predictions& oof) {
    std::string out = "path,fold,label";
    for (const auto& c : dataset.classes) out += "," + csv_escape("p_" + c);
    out += "\n";
    const at::Tensor probs = oof.probs.to(at::kCPU, at::kFloat).contiguous();
    const auto classes = static_cast<std::size_t>(dataset.classes.size());
    if (probs.dim() != 2 || static_cast<std::size_t>(probs.size(1)) != classes || static_cast<std::size_t>(probs.size(0)) != oof.records.size())
        throw std::invalid_argument("write_oof_csv: predictions do not match the dataset's classes");
    const float* p = probs.data_ptr<float>();
    for (std::size_t r = 0; r < oof.records.size(); ++r) {
        const auto& im = dataset.images.at(oof.records[r]);
        std::string label;
        for (int l : im.labels) label += (label.empty() ? "" : " ") + dataset.classes[static_cast<std::size_t>(l)];
        out += csv_escape(im.path) + "," + std::to_string(im.fold) + "," + csv_escape(label);
        for (std::size_t c = 0; c < classes; ++c) out += fmt::format(",{:.9g}", p[r * classes + c]);
        out += "\n";
    }
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    write_file_atomically(file, out);
}

std::optional<train::Predictions> read_oof(const fs::path& project, const data::Dataset& dataset, const RunRecord& run,
                                           std::string* why) {
    auto fail = [why](const std::string& reason) -> std::optional<train::Predictions> {
        if (why) *why = reason;
        return std::nullopt;
    };
    if (run.folds <= 0) return fail(fmt::format("run #{} is not a cross-validation fold run", run.number));
    if (run.folds != dataset.folds()) return fail(fmt::format("run #{} belongs to {} folds, the dataset has {}", run.number, run.folds, dataset.folds()));
    if (run.oof.empty()) return fail(fmt::format("run #{} has no out-of-fold predictions (it did not finish its fold)", run.number));
    const fs::path file = resolve_path(run.oof, project);
    std::vector<CsvRow> rows;
    try {
        rows = parse_csv(read_file(file));
    } catch (const UserError& e) {
        return fail(fmt::format("run #{}'s out-of-fold predictions cannot be read ({})", run.number, e.what()));
    }
    const std::size_t classes = dataset.classes.size();
    if (rows.empty() || rows[0].size() != 3 + classes) return fail(fmt::format("{} has other classes than the dataset", file.string()));
    for (std::size_t c = 0; c < classes; ++c)
        if (rows[0][3 + c] != "p_" + dataset.classes[c]) return fail(fmt::format("{} has other classes than the dataset", file.string()));
    std::map<std::string, std::size_t> row_of;
    for (std::size_t r = 1; r < rows.size(); ++r)
        if (rows[r].size() == 3 + classes) row_of[rows[r][0]] = r;
    const auto members = data::fold_members(dataset);
    const auto& want = members.at(static_cast<std::size_t>(run.fold));
    std::vector<float> probs;
    probs.reserve(want.size() * classes);
    std::size_t absent = 0;
    for (std::size_t i : want) {
        const auto it = row_of.find(dataset.images[i].path);
        if (it == row_of.end()) {
            ++absent;
            continue;
        }
        for (std::size_t c = 0; c < classes; ++c) {
            try {
                probs.push_back(std::stof(rows[it->second][3 + c]));
            } catch (const std::exception&) {
                return fail(fmt::format("{} line {}: not a probability", file.string(), it->second + 1));
            }
        }
    }
    if (absent)
        return fail(fmt::format("run #{} did not validate {} of fold {}'s {} images as they are now (the folds were dealt again "
                                "or images were added or included again)",
                                run.number, absent, run.fold, want.size()));
    const at::Tensor t = at::from_blob(probs.data(), {static_cast<long>(want.size()), static_cast<long>(classes)}, at::kFloat).clone();
    int passes = 1;
    for (const auto& p : run.predictions)
        if (p.split == "valid") passes = p.tta + 1;
    return predictions_from_probabilities(dataset, want, t, passes);
}

std::vector<int> CrossValidationSummary::missing_folds() const {
    std::vector<int> out;
    for (const auto& f : per_fold)
        if (!f.run) out.push_back(f.fold);
    return out;
}

CrossValidationSummary cross_validation_summary(const fs::path& project, const data::Dataset& dataset) {
    if (dataset.folds() <= 0) data::check_fold(dataset, 0);   // says what to do
    CrossValidationSummary s;
    s.folds = dataset.folds();
    const auto members = data::fold_members(dataset);
    const auto runs = list_runs(project);
    std::vector<train::Predictions> parts;
    for (int f = 0; f < s.folds; ++f) {
        FoldScore score;
        score.fold = f;
        score.images = members[static_cast<std::size_t>(f)].size();
        score.accuracy = score.log_loss = std::nan("");
        std::string first_reason;
        for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
            if (it->folds != s.folds || it->fold != f || it->status != "finished" || it->oof.empty()) continue;
            std::string why;
            auto p = read_oof(project, dataset, *it, &why);
            if (!p) {
                if (first_reason.empty()) first_reason = why;
                if (!score.stale_run) score.stale_run = it->number;
                continue;
            }
            score.run = it->number;
            score.model = model_of(*it);
            score.accuracy = p->accuracy();
            score.log_loss = p->log_loss();
            parts.push_back(std::move(*p));
            break;
        }
        if (!score.run)
            score.missing = (first_reason.empty() ? std::string("no finished run") : first_reason) +
                            fmt::format(": train it with whisker-cli run {} --fold {} (or fit {} --fold {})", project.string(), f,
                                        project.string(), f);
        s.per_fold.push_back(std::move(score));
    }
    if (parts.size() == static_cast<std::size_t>(s.folds)) {
        std::vector<const train::Predictions*> ptrs;
        for (const auto& p : parts) ptrs.push_back(&p);
        s.oof = concat_predictions(ptrs);
    }
    return s;
}

std::vector<int> fold_ensemble_runs(const fs::path& project, const data::Dataset& dataset) {
    const auto cv = cross_validation_summary(project, dataset);
    const auto missing = cv.missing_folds();
    if (!missing.empty()) {
        std::string list;
        for (int f : missing) list += (list.empty() ? "" : ", ") + std::to_string(f);
        throw UserError(fmt::format("fold{} {} of the {} folds {} no finished run", missing.size() == 1 ? "" : "s", list, cv.folds,
                                    missing.size() == 1 ? "has" : "have"),
                        "train them first: whisker-cli run " + project.string() +
                            " --folds, or \"Train all folds\" in the workbench's Cross-validation dialog (Runs page)");
    }
    std::vector<int> runs;
    for (const auto& f : cv.per_fold) runs.push_back(f.run);
    return runs;
}

}  // namespace whisker::project
