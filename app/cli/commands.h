#pragma once
// The subcommands of whisker-cli, one registration function per area.

#include <CLI/CLI.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace whisker::project {
class RunRecorder;
enum class RunKind;
class Session;
class FoldLearner;
}  // namespace whisker::project
namespace whisker::train {
class Learner;
class Callback;
struct RecipeEvents;
}  // namespace whisker::train

namespace whisker::cli {

struct GlobalOptions {
    bool quiet = false;
    bool json = false;
    int threads = 0;
    std::vector<std::string> args;   // argv[1…], for starting worker processes (--nproc)
};

// Ends whisker-cli with this exit code and no message (a worker whose rank 0 reports the error).
struct QuietExit {
    int code = 1;
};

void add_data_commands(CLI::App& app, GlobalOptions& global);
void add_bench_commands(CLI::App& app, GlobalOptions& global);
void add_model_commands(CLI::App& app, GlobalOptions& global);
void add_kaggle_commands(CLI::App& app, GlobalOptions& global);
void add_train_commands(CLI::App& app, GlobalOptions& global);
void add_train_bench(CLI::App& bench, GlobalOptions& global);
void add_explain_commands(CLI::App& app, GlobalOptions& global);
void add_run_commands(CLI::App& app, GlobalOptions& global);   // runs, ensemble (commands_runs.cpp)

// Records a command's job as a run of the project (whisker/project/runs.h): attaches a
// RunRecorder to the learner and begins a run of `kind` with the command line; the caller
// tells it what the job asks and produces, and calls end(). Silent on ranks > 0.
std::shared_ptr<project::RunRecorder> record_run(train::Learner& learner, const std::string& project,
                                                 project::RunKind kind, const GlobalOptions& global);

// Cross-validation on the folds of `data prepare --folds K` / `data folds` (commands_cv.cpp):
// `whisker-cli cv PROJECT`; `fit --fold I` and `run --fold I | --folds` train each fold's own
// learner (whisker/project/folds.h).
void add_cv_command(CLI::App& app, GlobalOptions& global);
class TerminalProgress;
// Before anything is opened: UserError unless the project's dataset has fold `fold` (-1: any
// folds at all), and for data-parallel training (one process per fold job).
void check_fold_option(const std::string& project, int fold, bool data_parallel);
// Fold `fold`'s learner, with the setup of the project's learner; says how it was opened.
std::unique_ptr<project::FoldLearner> open_fold_learner(project::Session& session, int fold, TerminalProgress* bar, bool quiet);
// After a fit of a fold (`fit --fold`): keeps its learner and, when the fit ran to its end,
// predicts the fold into the run's out-of-fold predictions; prints its score and what the
// cross-validation still lacks.
void finish_fold_fit(project::Session& session, project::FoldLearner& fold, project::RunRecorder& run, bool fit_stopped,
                     bool quiet);
// `run --folds` / `run --fold I`: the recipe on each fold in turn (resumable), printed with the
// command's events and epoch table, then the cross-validation summary. UserError when stopped.
void run_fold_recipes(project::Session& session, const std::string& recipe, const train::RecipeEvents& events,
                      std::shared_ptr<train::Callback> printer, TerminalProgress* bar, const std::vector<int>& folds,
                      const GlobalOptions& global, const std::atomic<bool>* stop);

}  // namespace whisker::cli
