#pragma once
// The subcommands of whisker-cli, one registration function per area.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

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

}  // namespace whisker::cli
