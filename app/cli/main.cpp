// whisker-cli: every step of the Whisker workflow, headless.
#include "commands.h"
#include "whisker/common/allocator.h"
#include "terminal_progress.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/sample/sample_competition.h"
#include "whisker/train/distributed.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace {

void add_sample_command(CLI::App& app, whisker::cli::GlobalOptions& global) {
    auto* cmd = app.add_subcommand("sample", "Write the built-in sample competition (synthetic Dogs vs. Cats Redux)");
    static std::string dir;
    static whisker::sample::SampleOptions opts;
    cmd->add_option("DIR", dir, "Folder to write train.zip, test.zip and sample_submission.csv into")->required();
    cmd->add_option("--train", opts.train_images, "Number of training images (half cats, half dogs)")
        ->capture_default_str()->check(CLI::Range(2, 1000000));
    cmd->add_option("--test", opts.test_images, "Number of test images")->capture_default_str()->check(CLI::Range(0, 1000000));
    cmd->add_option("--seed", opts.seed, "Random seed; the same seed gives the same bytes")->capture_default_str();
    cmd->callback([&global] {
        whisker::cli::TerminalProgress bar(!global.quiet && isatty(2));
        opts.threads = global.threads;
        opts.progress = bar.callback();
        whisker::sample::write_sample_competition(dir, opts);
        bar.finish();
        if (!global.quiet)
            fmt::print("Wrote the sample competition to {}: train.zip ({} images), test.zip ({} images), "
                       "sample_submission.csv\n",
                       dir, opts.train_images, opts.test_images);
    });
}

void add_device_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("device", "Show the compute device Whisker will use, and the LibTorch it was built with");
    cmd->callback([] {
        fmt::print("{}\n", whisker::detect_compute_device().describe());
        fmt::print("Built with {}\n", WHISKER_LIBTORCH_SUMMARY);   // the version, CUDA or not, where from
    });
}

}  // namespace

int main(int argc, char** argv) {
    whisker::keep_tensor_memory_for_reuse();   // before anything allocates (common/allocator.h)
    CLI::App app{"whisker-cli: train image classifiers by transfer learning, from a Kaggle download to a submission"};
    app.set_version_flag("--version", std::string("whisker-cli ") + WHISKER_VERSION);
    app.require_subcommand(1);
    app.fallthrough();  // global options (--threads, -q, --json) may also follow the subcommand
    whisker::cli::GlobalOptions global;
    global.args.assign(argv + 1, argv + argc);
    app.add_flag("-q,--quiet", global.quiet, "Print only results and errors");
    app.add_flag("--json-log", global.json, "Training commands print one JSON object per epoch (for scripts)");
    app.add_option("--threads", global.threads, "Worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
    add_sample_command(app, global);
    whisker::cli::add_data_commands(app, global);
    whisker::cli::add_bench_commands(app, global);
    whisker::cli::add_model_commands(app, global);
    whisker::cli::add_kaggle_commands(app, global);
    whisker::cli::add_train_commands(app, global);
    whisker::cli::add_explain_commands(app, global);
    whisker::cli::add_run_commands(app, global);
    add_device_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const whisker::cli::QuietExit& e) {
        return e.code;
    } catch (const whisker::Cancelled&) {
        std::fprintf(stderr, "\nstopped\n");
        return 130;
    } catch (const whisker::train::PeerFailure& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        if (!e.hint().empty()) std::fprintf(stderr, "hint: %s\n", e.hint().c_str());
        return whisker::train::kPeerFailureExitCode;
    } catch (const whisker::UserError& e) {
        // A worker of a data-parallel group (torchrun, SLURM or --nproc) says which one it is
        // (unless the message does).
        std::optional<whisker::train::DistributedEnv> group;
        try {
            group = whisker::train::distributed_env_from_environment();
        } catch (const std::exception&) {   // inconsistent variables: the error itself may say so
        }
        const std::string what = e.what();
        if (group && what.rfind("rank ", 0) != 0)
            std::fprintf(stderr, "error: rank %d of %d: %s\n", group->rank, group->world_size, what.c_str());
        else
            std::fprintf(stderr, "error: %s\n", what.c_str());
        if (!e.hint().empty()) std::fprintf(stderr, "hint: %s\n", e.hint().c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    }
    return 0;
}
