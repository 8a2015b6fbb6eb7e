// whisker-cli cv PROJECT, and the fold jobs of `fit --fold I` and `run --fold I | --folds`
// (declared in commands.h): cross-validation on the folds `data prepare --folds K` dealt.
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/errors.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"
#include "whisker/project/folds.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"
#include "whisker/train/distributed.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

std::string metric(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "-"; }

train::ProgressCallback progress_of(TerminalProgress* bar) {
    return [bar](const std::string& stage, long done, long total) {
        bar->update({stage, static_cast<std::uint64_t>(std::max(0L, done)), static_cast<std::uint64_t>(std::max(0L, total))});
    };
}

std::string fold_list(const std::vector<int>& folds) {
    std::string s;
    for (int f : folds) s += (s.empty() ? "" : ", ") + std::to_string(f);
    return s;
}

void print_cv(const fs::path& project, const data::Dataset& d, const project::CrossValidationSummary& s) {
    fmt::print("Cross-validation: {}\n", data::describe_folds(d));
    fmt::print("  {:>4}  {:>7}  {:>5}  {:<16}  {:>8}  {:>8}\n", "fold", "images", "run", "model", "accuracy", "log_loss");
    std::vector<std::string> models;
    for (const auto& f : s.per_fold) {
        if (f.run) {
            fmt::print("  {:>4}  {:>7}  {:>5}  {:<16}  {:>8}  {:>8}\n", f.fold, f.images, fmt::format("#{}", f.run), f.model,
                       metric(f.accuracy), metric(f.log_loss));
            if (std::find(models.begin(), models.end(), f.model) == models.end()) models.push_back(f.model);
        } else {
            fmt::print("  {:>4}  {:>7}  {:>5}  {}\n", f.fold, f.images, "-", f.missing);
        }
    }
    if (s.oof) {
        fmt::print("Out of fold: {} images, accuracy {:.4f}, log loss {:.4f}\n", s.oof->records.size(), s.oof->accuracy(),
                   s.oof->log_loss());
        if (models.size() > 1)
        {
            std::string m;
            for (const auto& x : models) m += (m.empty() ? "" : ", ") + x;
            fmt::print("note: the folds' runs are of different models ({}): train the odd ones again for a fair score\n", m);
        }
        fmt::print("Predict the test set with the {} fold models: whisker-cli ensemble {} --folds --out submission.csv\n", s.folds,
                   project.string());
    } else {
        const auto missing = s.missing_folds();
        fmt::print("Out of fold: not yet, fold{} {} {} no finished run (whisker-cli run {} --folds trains what is missing)\n",
                   missing.size() == 1 ? "" : "s", fold_list(missing), missing.size() == 1 ? "has" : "have", project.string());
    }
}

}  // namespace

void add_cv_command(CLI::App& app, GlobalOptions& global) {
    static std::string project, oof_out;
    static bool json_out = false;
    auto* cmd = app.add_subcommand("cv",
                                   "Cross-validation: each fold's newest finished run and score, and the out-of-fold score over "
                                   "every labelled image once all folds have one");
    cmd->add_option("PROJECT", project, "Project folder (with folds: data prepare --folds K)")->required();
    cmd->add_option("--oof", oof_out, "Write the out-of-fold predictions as CSV (path, fold, label, p_<class>…)");
    cmd->add_flag("--json", json_out, "The summary as JSON");
    cmd->callback([&global] {
        const auto d = data::Dataset::load(project);
        const auto s = project::cross_validation_summary(project, d);
        if (!oof_out.empty()) {
            if (!s.oof)
                throw UserError("fold" + std::string(s.missing_folds().size() == 1 ? " " : "s ") + fold_list(s.missing_folds()) +
                                    " have no finished run: there are no out-of-fold predictions of every image yet",
                                "train them: whisker-cli run " + project + " --folds");
            project::write_oof_csv(oof_out, d, *s.oof);
        }
        if (json_out || global.json) {
            nlohmann::json per = nlohmann::json::array();
            auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
            for (const auto& f : s.per_fold)
                per.push_back({{"fold", f.fold}, {"images", f.images}, {"run", f.run}, {"model", f.model},
                               {"accuracy", num(f.accuracy)}, {"log_loss", num(f.log_loss)}, {"missing", f.missing}});
            nlohmann::json j{{"folds", s.folds}, {"complete", s.complete()}, {"per_fold", per}, {"missing", s.missing_folds()}};
            if (s.oof) {
                j["images"] = s.oof->records.size();
                j["accuracy"] = s.oof->accuracy();
                j["log_loss"] = s.oof->log_loss();
            }
            fmt::print("{}\n", j.dump(1));
            return;
        }
        print_cv(project, d, s);
        if (!oof_out.empty()) fmt::print("Wrote the out-of-fold predictions to {}\n", oof_out);
    });
}

void check_fold_option(const std::string& project, int fold, bool data_parallel) {
    if (data_parallel || train::distributed_env_from_environment())
        throw UserError("cross-validation folds train in one process each", "leave --nproc out with --fold/--folds");
    const auto d = data::Dataset::load(project);
    data::check_fold(d, std::max(fold, 0));
}

std::unique_ptr<project::FoldLearner> open_fold_learner(project::Session& session, int fold, TerminalProgress* bar, bool quiet) {
    const auto& d = session.dataset();
    if (!session.spec()) throw UserError("this project has no learner yet", "create one: whisker-cli fit " + session.project().string() + " --arch resnet34");
    std::string note;
    const auto spec = project::folds_learner_spec(session.project(), d.folds(), *session.spec(), &note);
    if (!quiet && !note.empty()) fmt::print(stderr, "note: {}\n", note);
    auto f = std::make_unique<project::FoldLearner>(session.project(), d, fold, spec, session.learner().config(), false,
                                                    progress_of(bar));
    if (!quiet)
        fmt::print(stderr, "Fold {} of {}: trains on {} images, validates on {}; {} ({})\n", fold, d.folds(),
                   f->view().count(data::Split::Train), f->view().count(data::Split::Valid), f->describe(), f->note());
    return f;
}

void finish_fold_fit(project::Session& session, project::FoldLearner& fold, project::RunRecorder& run, bool fit_stopped, bool quiet) {
    fold.persist();
    fold.forget_recipe();
    const std::string project = session.project().string();
    if (fit_stopped) {
        if (!quiet)
            fmt::print(stderr, "the fold's model is saved; continue the interrupted fit with: whisker-cli fit {} --fold {} --resume\n",
                       project, fold.fold());
        return;
    }
    const auto p = fold.learner().predict(data::Split::Valid);
    run.add_prediction(p, data::Split::Valid, 0, train::TtaMix::Mean);
    run.set_oof(fold.write_oof(p, run.number()));
    const int number = run.number();
    run.end();   // finished: the summary below counts it
    if (quiet) return;
    fmt::print("Fold {} of {} (run #{}): {} images out of fold, accuracy {:.4f}, log loss {:.4f}\n", fold.fold(), fold.folds(),
               number, p.records.size(), p.accuracy(), p.log_loss());
    const auto s = project::cross_validation_summary(session.project(), session.dataset());
    if (s.oof)
        fmt::print("Out of fold, all {} folds: accuracy {:.4f}, log loss {:.4f} (whisker-cli cv {})\n", s.folds, s.oof->accuracy(),
                   s.oof->log_loss(), project);
    else
        fmt::print("Cross-validation: fold{} {} still without a finished run\n", s.missing_folds().size() == 1 ? "" : "s",
                   fold_list(s.missing_folds()));
}

void run_fold_recipes(project::Session& session, const std::string& recipe, const train::RecipeEvents& events,
                      std::shared_ptr<train::Callback> printer, TerminalProgress* bar, const std::vector<int>& folds,
                      const GlobalOptions& global, const std::atomic<bool>* stop) {
    const auto& d = session.dataset();
    if (!session.spec()) throw UserError("this project has no learner yet");
    std::string note;
    const auto spec = project::folds_learner_spec(session.project(), d.folds(), *session.spec(), &note);
    if (!global.quiet && !note.empty()) fmt::print("note: {}\n", note);
    project::FoldRecipeEvents ev;
    ev.recipe = events;
    ev.recipe.fit_done = nullptr;   // the project's own learner is left as it is
    ev.fold_started = [&](int fold, int k, const std::string& what, bool skipped) {
        bar->finish();
        if (!global.quiet) fmt::print("=== Fold {} of {}{}: {}\n", fold, k, skipped ? " skipped" : "", what);
    };
    ev.learner_ready = [&](train::Learner& l) { l.add_callback(printer); };
    ev.fold_done = [&](int fold, int run, const train::Predictions& oof) {
        bar->finish();
        if (!global.quiet)
            fmt::print("Fold {} done (run #{}): {} images out of fold, accuracy {:.4f}, log loss {:.4f}\n", fold, run, oof.records.size(),
                       oof.accuracy(), oof.log_loss());
    };
    project::FoldRecipeOptions o;
    o.recipe_json = recipe;
    o.folds = folds;
    o.command = "whisker-cli";
    for (const auto& a : global.args) o.command += " " + a;
    const auto r = project::run_fold_recipes(session.project(), d, spec, session.learner().config(), o, ev, stop, progress_of(bar));
    bar->finish();
    if (!global.quiet) {
        fmt::print("\n");
        print_cv(session.project(), d, project::cross_validation_summary(session.project(), d));
    }
    if (r.stopped)
        throw UserError(fmt::format("the cross-validation stopped in fold {}: {}", r.stopped_fold, r.stop_reason),
                        "run the same command again: it continues where it stopped");
}

}  // namespace whisker::cli
