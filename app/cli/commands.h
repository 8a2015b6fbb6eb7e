#pragma once
// The subcommands of whisker-cli, one registration function per area.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace whisker::project {
class RunRecorder;
enum class RunKind;
}  // namespace whisker::project
namespace whisker::train {
class Learner;
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

}  // namespace whisker::cli
