// whisker-cli lr-find | fit | predict | save | load | run | bench train
//
// Every command works on a project folder and continues where the last one left off, the way
// the notebook's `learn` object does: the learner's configuration lives in PROJECT/learner.json
// and its state (weights, freezing, precompute) in the checkpoint "current".
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/dataset.h"
#include "whisker/common/local_time.h"
#include "whisker/models/arch_stats.h"
#include "whisker/models/weights.h"
#include "whisker/project/folds.h"
#include "whisker/project/project_lock.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"
#include "whisker/train/distributed.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"
#include "whisker/train/training_options.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::cli {

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop = true; }

struct LearnerArgs {
    std::string project;
    std::string arch;
    int size = 0, batch_size = 0;
    bool pretrained_flag = false, no_pretrained_flag = false;
    std::optional<bool> pretrained() const {
        if (no_pretrained_flag) return false;
        if (pretrained_flag) return true;
        return std::nullopt;
    }
    bool new_learner = false;
    std::uint64_t seed = 42;
    std::string aug;                    // --aug, empty when not given
    std::optional<double> max_zoom;
    bool no_flip = false;
    bool trivial_augment = false;       // --trivial-augment
    std::optional<double> random_erasing;   // --random-erasing P
    std::optional<double> val_resize;       // --val-resize R
    std::string precision = "auto";         // --precision
    std::string precompute_dtype = "auto";  // --precompute-dtype
};

// The augmentation named by --aug; UserError for an unknown name.
data::AugmentPreset parse_aug(const std::string& name) {
    if (const auto p = data::parse_augment_preset(name)) return *p;
    std::string names;
    for (data::AugmentPreset p : data::augment_presets())
        names += (names.empty() ? "" : ", ") + std::string(data::augment_preset_name(p));
    throw UserError("unknown augmentation '" + name + "'", "use one of " + names + " (fastai 0.7's presets; see docs/training.md)");
}

// --max-zoom, checked: RandomScale zooms by U(1, Z).
double checked_max_zoom(double z) {
    if (!(z >= 1.0) || !std::isfinite(z))
        throw UserError(fmt::format("--max-zoom {}: the largest zoom must be a number of at least 1", z),
                        "use 1 for no zoom, or e.g. 1.1 (fastai's lesson value)");
    return z;
}

void add_learner_options(CLI::App* cmd, LearnerArgs& a) {
    cmd->add_option("PROJECT", a.project, "Project folder (prepared with 'data prepare')")->required();
    cmd->add_option("--arch", a.arch, "Architecture, when the learner is created (default resnet34)");
    cmd->add_option("--size", a.size, "Image size, when the learner is created (default: the architecture's, e.g. 224 for resnet34, 300 "
                    "for efficientnet_b3; see weights list)");
    cmd->add_option("--bs", a.batch_size, "Batch size, when the learner is created (default 64)");
    auto* pre = cmd->add_flag("--pretrained", a.pretrained_flag, "Start from ImageNet weights (the default)");
    cmd->add_flag("--no-pretrained", a.no_pretrained_flag, "Start from scratch (torchvision's random initialisation)")->excludes(pre);
    cmd->add_flag("--new-learner", a.new_learner, "Replace the project's learner with a new one");
    cmd->add_option("--seed", a.seed, "Seed, when the learner is created")->capture_default_str();
    cmd->add_option("--aug", a.aug,
                    "Training augmentation, when the learner is created: side-on (default), top-down, basic or none "
                    "(fastai 0.7's transforms_side_on, transforms_top_down, transforms_basic, no aug_tfms)");
    cmd->add_option("--max-zoom", a.max_zoom,
                    "Largest random zoom, when the learner is created (default 1.1; with --aug none 1; 1 = no zoom)");
    cmd->add_flag("--no-flip", a.no_flip,
                  "Leave out the flips, when the learner is created (side-on's horizontal flip; top-down keeps its "
                  "four quarter turns)");
    cmd->add_flag("--trivial-augment", a.trivial_augment,
                  "Add TrivialAugmentWide on top of the augmentation, when the learner is created (torchvision's "
                  "ops and magnitudes, on the crop before normalisation)");
    cmd->add_option("--random-erasing", a.random_erasing,
                    "Add RandomErasing with probability P, when the learner is created (torchvision's scale "
                    "0.02-0.33, ratio 0.3-3.3, value 0 after normalisation; 0 = off)")
        ->option_text("P");
    cmd->add_option("--precision", a.precision,
                    "Arithmetic of the forward passes: auto (bf16 on CPUs with bf16 instructions and recent GPUs, "
                    "fp16 on older GPUs, else fp32), fp32, bf16, fp16 (GPU)")
        ->capture_default_str();
    cmd->add_option("--precompute-dtype", a.precompute_dtype,
                    "Storage of precomputed activations: auto (bf16/fp16 under that precision, else fp32), fp32, "
                    "fp16 or bf16 (half the size; the head still trains in fp32)")
        ->capture_default_str();
    cmd->add_option("--val-resize", a.val_resize,
                    "Validation/test view, when the learner is created: scale the shorter side to R x size, then "
                    "centre-crop size (default: the weights' own, e.g. 236/224 for convnext_tiny; 1 for "
                    "ResNet/VGG/DenseNet as fastai 0.7)")
        ->option_text("R");
}

// Data-parallel training: --nproc starts local workers; under torchrun/SLURM the process joins
// the group its environment describes.
struct DistArgs {
    int nproc = 1;
    double timeout_s = 300;
    std::string backend;
    // How a batch is computed (fit, run, lr-find): BatchNorm over the global batch, and
    // gradient accumulation (the learner's default for fits and sweeps).
    bool sync_bn = false;
    int accumulate = 1;
};

void add_batch_options(CLI::App* cmd, DistArgs& d) {
    cmd->add_flag("--sync-bn", d.sync_bn,
                  "Data-parallel: BatchNorm statistics over the global batch (PyTorch's SyncBatchNorm) instead of "
                  "each process's share; no effect in one process");
    cmd->add_option("--accumulate", d.accumulate,
                    "Gradient accumulation: the optimiser steps every N batches, so --bs 16 --accumulate 4 trains like "
                    "a batch of 64 in a quarter of the memory (the schedule counts steps; BatchNorm sees each batch of "
                    "16; a resumed fit keeps its own)")
        ->option_text("N")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
}

void add_dist_options(CLI::App* cmd, DistArgs& d) {
    cmd->add_option("--nproc", d.nproc,
                    "Train data-parallel in N local processes (one per GPU; on a CPU they share the cores); "
                    "--bs stays the global batch")
        ->check(CLI::Range(1, 256));
    cmd->add_option("--dist-timeout", d.timeout_s,
                    "Distributed: seconds a process waits for the others before it stops with an error")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--backend", d.backend, "Distributed: gloo or nccl (default: nccl on GPUs, gloo on CPUs)");
}

// With --nproc N outside a group: starts the N workers (this same command line) and waits.
// Returns true when this process was only the launcher.
// The launcher holds the project's lock for `action` (none when empty); its workers inherit it.
bool launch_workers_if_asked(const DistArgs& d, const GlobalOptions& g, const std::string& project, const std::string& action) {
    if (d.nproc <= 1 || train::distributed_env_from_environment()) return false;
    project::ProjectLock lock;
    if (!action.empty()) lock = project::ProjectLock::acquire(project, action);
    if (const int gpus = train::local_gpu_count(); gpus > 0 && d.nproc > gpus && d.backend != "gloo")
        throw UserError(fmt::format("--nproc {} asks for more processes than this machine has GPUs ({})", d.nproc, gpus),
                        fmt::format("use --nproc {} (one process per GPU)", gpus));
    train::LocalLaunchOptions o;
    o.args = g.args;
    o.nproc = d.nproc;
    o.stop = &g_stop;
    if (!g.quiet) fmt::print(stderr, "Starting {} worker processes on 127.0.0.1\n", d.nproc);
    const auto r = train::launch_local_workers(o);
    if (r.exit_code != 0)
        throw UserError(r.message + (r.failed_rank >= 0 && r.signal == 0 ? " (its error is above)" : ""),
                        "the first error above says why; a worker that ran out of memory needs a smaller --bs or fewer --nproc");
    return true;
}

std::shared_ptr<train::Distributed> join_group(const DistArgs* d) {
    if (!d || !train::distributed_env_from_environment()) return nullptr;
    train::DistributedOptions o;
    o.timeout = std::chrono::milliseconds(static_cast<long long>(d->timeout_s * 1000));
    o.backend = d->backend;
    return train::Distributed::from_environment(o);
}

// Terminal output of a fit: a progress bar per epoch and fastai's epoch table.
struct TablePrinter : train::Callback {
    TerminalProgress* bar;
    bool json_lines;
    bool header_printed = false;
    bool header_ema = false;
    // With JSON lines, batches too (at most ~5 a second), for programs that plot them live
    // (the workbench's multi-process fit reads these).
    std::chrono::steady_clock::time_point last_batch{};
    void after_batch(train::Learner&, const train::BatchRecord& b) override {
        if (!json_lines) return;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_batch < std::chrono::milliseconds(200)) return;
        last_batch = now;
        fmt::print("{}\n", json{{"event", "batch"}, {"iteration", b.iteration}, {"epoch", b.epoch}, {"loss", b.loss},
                                {"smooth_loss", b.smooth_loss}, {"lr", b.lr}}
                               .dump());
        std::fflush(stdout);
    }
    void after_epoch(train::Learner&, const train::EpochRecord& r) override {
        bar->finish();
        if (json_lines) {
            json line{{"event", "epoch"}, {"epoch", r.epoch}, {"trn_loss", r.trn_loss}, {"val_loss", r.val_loss},
                      {"accuracy", r.accuracy}, {"log_loss", r.log_loss}, {"seconds", r.seconds}};
            if (r.has_ema) {
                line["ema_val_loss"] = r.ema_val_loss;
                line["ema_accuracy"] = r.ema_accuracy;
                line["ema_log_loss"] = r.ema_log_loss;
            }
            fmt::print("{}\n", line.dump());
        } else {
            // A new table when the columns change (a fit with a weight EMA after one without).
            if (!header_printed || header_ema != r.has_ema) fmt::print("{}", train::epoch_table_header(r.has_ema));
            header_printed = true;
            header_ema = r.has_ema;
            fmt::print("{}", train::epoch_table_row(r, r.has_ema));
        }
        std::fflush(stdout);
    }
};

// A command's hold on the project: its lock (rank 0 or a process on its own), the project's
// session (dataset, learner, training log) and the terminal's progress bar.
struct Session {
    fs::path project;
    project::ProjectLock lock;
    std::unique_ptr<project::Session> state;
    train::Learner* learner = nullptr;
    data::Dataset dataset;
    train::LearnerConfig config;
    std::unique_ptr<TerminalProgress> bar;
};

// The project's lock for `action`, unless this process is a data-parallel rank other than 0
// (rank 0 writes, the others only read). Before anything is read, so that nobody reads a
// state another program is in the middle of writing.
project::ProjectLock lock_project(const std::string& project, const std::string& action, const DistArgs* dist) {
    const auto env = dist ? train::distributed_env_from_environment() : std::nullopt;
    if (env && env->rank != 0) return {};
    return project::ProjectLock::acquire(project, action);
}

Session open_session(const LearnerArgs& a, const GlobalOptions& g, bool fall_back_to_scratch, const std::string& action,
                     const DistArgs* dist = nullptr) {
    Session s;
    // In a group every rank opens the same session; rank 0 alone prints and writes.
    const auto dist_env = dist ? train::distributed_env_from_environment() : std::nullopt;
    const bool main_rank = !dist_env || dist_env->rank == 0;
    if (!main_rank) std::fflush(stdout), std::freopen("/dev/null", "w", stdout);
    const bool quiet = g.quiet || !main_rank;
    s.project = a.project;
    // Bad values are refused before anything is locked or read.
    const bool aug_given = !a.aug.empty();
    const data::AugmentPreset aug = aug_given ? parse_aug(a.aug) : data::AugmentPreset::SideOn;
    if (a.max_zoom) checked_max_zoom(*a.max_zoom);
    if (a.val_resize && !(*a.val_resize >= 1.0 && *a.val_resize <= 4.0))
        throw UserError(fmt::format("--val-resize {}: the ratio must be between 1 and 4", *a.val_resize),
                        "use 1 to crop the whole shorter side, or e.g. 1.14 for torchvision's 256/224");
    if (a.random_erasing && !(*a.random_erasing >= 0.0 && *a.random_erasing <= 1.0))
        throw UserError(fmt::format("--random-erasing {}: the probability must be between 0 and 1", *a.random_erasing),
                        "use e.g. 0.25 (torchvision's classification recipes), or 0 for none");
    // An empty action reads only; creating a learner writes all the same.
    const bool read_only = action.empty() && project::LearnerSpec::read(s.project) && !a.new_learner;
    if (!read_only) s.lock = lock_project(a.project, action.empty() ? "create learner" : action, dist);
    s.dataset = data::Dataset::load(s.project);
    const auto spec = project::LearnerSpec::read(s.project);
    const bool exists = spec && !a.new_learner;
    project::LearnerSpec want;
    if (exists) {
        want = *spec;
        auto differs = [&](bool given, const std::string& what) {
            if (given)
                throw UserError("the project's learner already has its " + what,
                                "leave --" + what + " out, or start over with --new-learner");
        };
        differs(!a.arch.empty() && a.arch != want.arch, "arch");
        differs(a.size && a.size != want.size, "size");
        // The batch size is not part of what the weights learnt: --bs changes it (below).
        // The augmentation is the learner's too (its weights were trained with it).
        const std::string has = data::describe_augmentation(want.augment, want.max_zoom, want.no_flip,
                                                            want.trivial_augment, want.random_erasing);
        auto aug_differs = [&](bool given, const std::string& flag) {
            if (given)
                throw UserError("the project's learner already has its augmentation (" + has + ")",
                                "leave --" + flag + " out, or start over with --new-learner");
        };
        aug_differs(aug_given && aug != want.augment, "aug");
        aug_differs(a.max_zoom && *a.max_zoom != want.max_zoom, "max-zoom");
        aug_differs(a.no_flip && !want.no_flip, "no-flip");
        aug_differs(a.trivial_augment && !want.trivial_augment, "trivial-augment");
        aug_differs(a.random_erasing && *a.random_erasing != want.random_erasing, "random-erasing");
        differs(a.val_resize && *a.val_resize != want.val_resize, "val-resize");
    } else {
        want.arch = a.arch.empty() ? "resnet34" : a.arch;
        // Each architecture's default: the image size its pretrained weights were made for.
        want.size = a.size ? a.size : models::arch_info(models::parse_arch(want.arch)).default_size();
        want.batch_size = a.batch_size ? a.batch_size : 64;
        want.pretrained = a.pretrained().value_or(true);
        want.seed = a.seed;
        want.augment = aug;
        want.max_zoom = a.max_zoom.value_or(data::default_max_zoom(want.augment));
        want.no_flip = a.no_flip;
        want.trivial_augment = a.trivial_augment;
        want.random_erasing = a.random_erasing.value_or(0.0);
        want.val_resize = a.val_resize.value_or(0.0);
    }
    if (dist_env && want.pretrained && !exists &&
        models::weights_state(models::parse_arch(want.arch)) != models::WeightsState::Cached) {
        // One download at a time on this machine: the first process gets the file, the others
        // then find it in the cache. Before joining the group, so that no collective's timeout
        // runs during a long download.
        const fs::path dir = models::torch_hub_checkpoints_dir();
        std::error_code ec;
        fs::create_directories(dir, ec);
        const int fd = ::open((dir / ".whisker-download.lock").c_str(), O_CREAT | O_RDWR, 0644);
        if (fd >= 0) ::flock(fd, LOCK_EX);
        try {
            DownloadOptions dl;
            dl.max_attempts = 2;
            models::ensure_pretrained_weights(models::parse_arch(want.arch), dl);
        } catch (const UserError& e) {
            if (fd >= 0) ::close(fd);
            if (!fall_back_to_scratch) throw;
            if (main_rank)
                fmt::print(stderr, "note: no pretrained {} weights available ({}); training from scratch instead\n",
                           want.arch, e.what());
            want.pretrained = false;
        }
        if (fd >= 0) ::close(fd);
    }
    const auto group = join_group(dist);
    s.bar = std::make_unique<TerminalProgress>(!quiet && isatty(2));
    TerminalProgress* bar = s.bar.get();
    auto progress = [bar](const std::string& stage, long done, long total) {
        bar->update({stage, static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(total)});
    };
    if (!dist_env && want.pretrained && fall_back_to_scratch && !exists &&
        models::weights_state(models::parse_arch(want.arch)) != models::WeightsState::Cached) {
        try {
            DownloadOptions dl;
            dl.max_attempts = 2;
            dl.progress = [bar](const Progress& p) { bar->update(p); };
            models::ensure_pretrained_weights(models::parse_arch(want.arch), dl);
        } catch (const UserError& e) {
            bar->finish();
            fmt::print(stderr, "note: no pretrained {} weights available ({}); training from scratch instead\n",
                       want.arch, e.what());
            want.pretrained = false;
        }
    }
    if (group) want.pretrained = !group->any(!want.pretrained);   // the same model on every rank
    project::SessionOptions so;
    so.base.threads = g.threads;
    so.base.distributed = group;
    so.base.precision = train::parse_precision(a.precision);
    so.base.precompute_dtype = train::parse_precompute_dtype(a.precompute_dtype);
    if (dist) {
        so.base.sync_batch_norm = dist->sync_bn;
        so.base.accumulate = dist->accumulate;
    }
    train::resolve_precision(so.base.precision, detect_compute_device().cuda);   // fp16 on a CPU: say so first
    so.progress = progress;
    // With --new-learner the old one is opened too, to keep its trained weights.
    s.state = std::make_unique<project::Session>(s.project, so);
    if (exists) {
        if (!s.state->has_learner()) throw UserError(s.state->learner_error().empty() ? "cannot open the project's learner"
                                                                                     : s.state->learner_error());
        if (!quiet) fmt::print(stderr, "Learner: {}\n", s.state->describe_learner());
        if (a.batch_size && a.batch_size != s.state->learner().config().batch_size) {
            if (read_only) throw UserError("--bs changes the learner's batch size, which this command does not do",
                                           "give --bs to fit, lr-find or run");
            const int before = s.state->learner().config().batch_size;
            s.state->set_batch_size(a.batch_size);
            if (!quiet) fmt::print(stderr, "Batch size: {} -> {} (kept in the learner)\n", before, a.batch_size);
        }
    } else {
        const std::string kept = s.state->new_learner(want);
        if (!quiet) {
            if (!kept.empty()) fmt::print(stderr, "The previous learner's weights are kept as checkpoint '{}' (whisker-cli load {} {})\n",
                                          kept, s.project.string(), kept);
            const project::LearnerSpec defaults;
            const bool default_aug =
                want.augment == defaults.augment && want.max_zoom == defaults.max_zoom && want.no_flip == defaults.no_flip &&
                !want.trivial_augment && want.random_erasing == 0.0;
            fmt::print("New learner: {} at {} px, batch {}, {}{}; {}\n", want.arch, want.size, want.batch_size,
                       want.pretrained ? "ImageNet weights" : "from scratch",
                       default_aug ? "" : ", " + data::describe_augmentation(want.augment, want.max_zoom, want.no_flip,
                                                                              want.trivial_augment, want.random_erasing),
                       detect_compute_device().describe());
        }
    }
    s.learner = &s.state->learner();
    s.learner->set_progress(progress);
    if (!quiet)
        fmt::print(stderr, "Precision: {}\n", train::describe_precision(so.base.precision, detect_compute_device().cuda));
    if (!quiet && dist && dist->accumulate > 1)
        fmt::print(stderr, "Gradient accumulation: a step every {} batches of {} (like a batch of {})\n", dist->accumulate,
                   want.batch_size, dist->accumulate * want.batch_size);
    if (!quiet && dist && dist->sync_bn && !group)
        fmt::print(stderr, "note: --sync-bn has no effect in one process (its BatchNorm sees the whole batch already)\n");
    s.config = s.learner->config();
    if (group) {
        if (!quiet)
            fmt::print("Data-parallel: {} processes ({}, {}), {} images per process per batch{}\n", group->world_size(),
                       group->backend(), group->env().source, want.batch_size / group->world_size(),
                       dist->sync_bn ? ", BatchNorm synchronised" : "");
        group->barrier();   // nobody writes before every rank has read the project's state
    }
    return s;
}

std::vector<double> parse_lrs(const std::vector<std::string>& in) {
    std::vector<double> out;
    for (const auto& s : in) {
        std::size_t start = 0;
        while (start <= s.size()) {
            const auto comma = s.find(',', start);
            const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            if (!part.empty()) {
                try {
                    out.push_back(std::stod(part));
                } catch (const std::exception&) {
                    throw UserError("'" + part + "' is not a learning rate");
                }
            }
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
    return out;
}

void report_load_failures(const train::Learner& l) {
    const auto& f = l.load_failures();
    if (f.empty()) return;
    fmt::print(stderr, "warning: {} image{} could not be read and {} left out:\n", f.size(), f.size() == 1 ? "" : "s",
               f.size() == 1 ? "was" : "were");
    for (std::size_t i = 0; i < f.size() && i < 10; ++i) fmt::print(stderr, "  {}: {}\n", f[i].path, f[i].reason);
}

void print_fit_end(const train::FitResult& r, const std::string& project, bool quiet) {
    if (r.stopped && !quiet) {
        fmt::print(stderr, "fit stopped: {}\n", r.stop_reason);
        fmt::print(stderr, "the model is saved; continue the interrupted fit with: whisker-cli fit {} --resume\n", project);
    }
}

struct StepArgs {
    std::vector<std::string> lrs;
    int cycles = 1;
    double cycle_len = 0;
    int cycle_mult = 1;
    std::vector<double> wds;
    bool precompute_on = false, precompute_off = false, bn_freeze_on = false, bn_freeze_off = false;
    bool unfreeze = false, freeze = false, adamw = false, one_cycle = false, resume = false;
    std::optional<int> freeze_to;
};

void apply_state_flags(train::Learner& l, const StepArgs& s) {
    if (s.freeze) l.freeze();
    if (s.freeze_to) l.freeze_to(*s.freeze_to);
    if (s.unfreeze) l.unfreeze();
    if (s.bn_freeze_on) l.bn_freeze(true);
    if (s.bn_freeze_off) l.bn_freeze(false);
    if (s.precompute_on) l.set_precompute(true);
    if (s.precompute_off) l.set_precompute(false);
}

void add_state_flags(CLI::App* cmd, StepArgs& s) {
    auto* pre = cmd->add_flag("--precompute", s.precompute_on, "Train the head on cached body activations");
    cmd->add_flag("--no-precompute", s.precompute_off, "Train on images again")->excludes(pre);
    cmd->add_flag("--unfreeze", s.unfreeze, "Unfreeze all layer groups first");
    cmd->add_flag("--freeze", s.freeze, "Freeze the body first (head only)");
    cmd->add_option("--freeze-to", s.freeze_to, "Freeze the layer groups before N");
    auto* bnf = cmd->add_flag("--bn-freeze", s.bn_freeze_on, "Keep every BatchNorm's statistics fixed");
    cmd->add_flag("--no-bn-freeze", s.bn_freeze_off, "Let BatchNorm statistics of unfrozen groups update again")->excludes(bnf);
}

train::LrFindResult run_lr_find(project::Session& session, double start, double end, bool linear, bool quiet) {
    const auto r = session.lr_find(start, end, linear, &g_stop);
    if (!quiet) {
        fmt::print("lr_find: {} batches{}\n", r.lrs.size(), r.stopped_early ? " (stopped: the loss exploded)" : "");
        const std::size_t step = std::max<std::size_t>(1, r.plot_lrs.size() / 12);
        for (std::size_t i = 0; i < r.plot_lrs.size(); i += step) fmt::print("  lr {:10.3e}  loss {:.4f}\n", r.plot_lrs[i], r.plot_losses[i]);
        if (r.suggestions.valid)
            fmt::print("suggestions: minimum/10 {:.2e}, steepest {:.2e}, valley {:.2e}\n", r.suggestions.minimum,
                       r.suggestions.steepest, r.suggestions.valley);
        else
            fmt::print("suggestions: none (too few points; use more data or a smaller batch size)\n");
    }
    return r;
}

}  // namespace

void add_train_commands(CLI::App& app, GlobalOptions& global) {
    std::signal(SIGINT, on_sigint);

    // ---- lr-find ----
    static LearnerArgs lf;
    static StepArgs lf_state;
    static double lf_start = 1e-5, lf_end = 10;
    static bool lf_linear = false;
    static std::string lf_csv;
    auto* lrf = app.add_subcommand("lr-find", "Sweep the learning rate over one epoch and suggest one (leaves the model as it was)");
    add_learner_options(lrf, lf);
    add_state_flags(lrf, lf_state);
    lrf->add_option("--start", lf_start, "Start learning rate")->capture_default_str();
    lrf->add_option("--end", lf_end, "End learning rate")->capture_default_str();
    lrf->add_flag("--linear", lf_linear, "Linear instead of exponential sweep");
    lrf->add_option("--csv", lf_csv, "Write the curve (lr, smoothed loss) to this CSV");
    static DistArgs lf_dist;
    add_dist_options(lrf, lf_dist);
    add_batch_options(lrf, lf_dist);
    lrf->callback([&global] {
        if (launch_workers_if_asked(lf_dist, global, lf.project, "lr-find")) return;
        Session s = open_session(lf, global, false, "lr-find", &lf_dist);
        apply_state_flags(*s.learner, lf_state);
        const auto runs = record_run(*s.learner, lf.project, project::RunKind::LrFind, global);   // runs.h
        const auto r = run_lr_find(*s.state, lf_start, lf_end, lf_linear, global.quiet);
        runs->add_lr_find(r);
        if (!lf_csv.empty() && s.learner->is_main_process()) {
            std::string out = "lr,loss\n";
            for (std::size_t i = 0; i < r.lrs.size(); ++i) out += fmt::format("{:.6e},{:.6f}\n", r.lrs[i], r.losses[i]);
            write_file_atomically(lf_csv, out);
        }
        s.state->persist();
        runs->end();
    });

    // ---- fit ----
    static LearnerArgs fa;
    static StepArgs fs_args;
    static bool fit_json = false;
    auto* fit = app.add_subcommand("fit", "Train: SGDR with restarts, differential learning rates, freezing, precompute");
    add_learner_options(fit, fa);
    add_state_flags(fit, fs_args);
    fit->add_option("--lr", fs_args.lrs, "Learning rate: one, or one per layer group (comma-separated or repeated)");
    fit->add_option("--cycles", fs_args.cycles, "Number of cycles (epochs without --cycle-len)")->capture_default_str();
    fit->add_option("--cycle-len", fs_args.cycle_len, "Epochs per cycle: cosine annealing with restarts (SGDR)");
    fit->add_option("--cycle-mult", fs_args.cycle_mult, "Each cycle this many times longer")->capture_default_str();
    fit->add_option("--wd", fs_args.wds, "Weight decay: one, or one per layer group");
    fit->add_flag("--adamw", fs_args.adamw, "AdamW instead of SGD with momentum");
    fit->add_flag("--one-cycle", fs_args.one_cycle, "fastai v2's one-cycle schedule (--cycles epochs, --lr is the maximum)");
    static train::FitOptions fit_extra;   // MixUp/CutMix and EMA (docs/training.md)
    fit->add_option("--mixup", fit_extra.mixup_alpha, "MixUp: mix each training batch with λ ~ Beta(α, α) (e.g. 0.2; 0 = off)");
    fit->add_option("--cutmix", fit_extra.cutmix_alpha,
                    "CutMix: paste a box of area (1-λ) from another image of the batch, λ ~ Beta(α, α) (e.g. 1; 0 = off)");
    fit->add_option("--mix-switch-prob", fit_extra.mix_switch_prob,
                    "With --mixup and --cutmix: the probability that a mixed batch uses CutMix")
        ->capture_default_str();
    fit->add_option("--mix-prob", fit_extra.mix_prob, "The probability that a batch is mixed at all")->capture_default_str();
    fit->add_option("--label-smoothing", fit_extra.label_smoothing,
                    "Label smoothing ε of the training loss (e.g. 0.1; 0 = off; single-label datasets)");
    fit->add_option("--ema", fit_extra.ema_decay,
                    "Keep an exponential moving average of the weights with this decay (e.g. 0.999), validated each "
                    "epoch and saved beside the weights (predict --ema uses it)");
    fit->add_flag("--resume", fs_args.resume, "Continue the fit that was interrupted (autosave)");
    fit->add_flag("--json", fit_json, "One JSON line per epoch instead of the table");
    static bool fit_snapshots = false;
    fit->add_flag("--snapshots", fit_snapshots,
                  "Snapshot ensemble: keep a checkpoint at the end of each SGDR cycle (snapshot-RUN-CYCLE; needs --cycle-len)");
    static DistArgs fit_dist;
    add_dist_options(fit, fit_dist);
    add_batch_options(fit, fit_dist);
    static std::optional<int> fit_fold;
    fit->add_option("--fold", fit_fold,
                    "Cross-validation: train fold I's own learner (the other folds are its training data, fold I its "
                    "validation; see data prepare --folds), leaving the project's learner alone")
        ->option_text("I");
    fit->callback([&global] {
        train::check_training_options(fit_extra);   // bad values before anything starts
        if (fit_fold) check_fold_option(fa.project, *fit_fold, fit_dist.nproc > 1);   // commands_data.cpp
        if (launch_workers_if_asked(fit_dist, global, fa.project, "fit")) return;
        Session s = open_session(fa, global, false, "fit", &fit_dist);
        const bool quiet = global.quiet || !s.learner->is_main_process();
        // Cross-validation: the fold's own learner trains instead of the project's.
        const auto fold = fit_fold ? open_fold_learner(*s.state, *fit_fold, s.bar.get(), quiet) : nullptr;
        train::Learner& learner = fold ? fold->learner() : *s.learner;
        auto printer = std::make_shared<TablePrinter>();
        printer->bar = s.bar.get();
        printer->json_lines = fit_json || global.json;
        learner.add_callback(printer);
        if (fit_snapshots && (fs_args.resume || !(fs_args.cycle_len > 0) || fs_args.one_cycle))
            throw UserError("--snapshots keeps a checkpoint per SGDR cycle: it needs --cycle-len (and no --one-cycle or --resume)");
        const auto runs = record_run(learner, fa.project, project::RunKind::Fit, global);   // runs.h
        if (fold) runs->set_fold(fold->fold(), fold->folds(), fold->autosave_reference());
        train::FitResult r;
        if (fs_args.resume) {
            if (fold && !fold->has_interrupted_fit())
                throw UserError(fmt::format("fold {}'s learner has no interrupted fit to continue", fold->fold()), "start a new fit");
            runs->expect_resume(fold ? fold->autosave_reference() : "autosave");
            if (const auto own = learner.interrupted_fit_precision("autosave"); own && *own != learner.precision() && !quiet)
                fmt::print(stderr, "note: the interrupted fit ran in {}; it continues in {} (not {}) so it resumes exactly\n",
                           train::precision_name(*own), train::precision_name(*own), train::precision_name(learner.precision()));
            r = learner.resume("autosave", &g_stop);
        } else {
            apply_state_flags(learner, fs_args);
            train::FitOptions o;
            o.lrs = parse_lrs(fs_args.lrs);
            if (o.lrs.empty()) o.lrs = {1e-2};
            o.n_cycle = fs_args.cycles;
            o.cycle_len = fs_args.cycle_len;
            o.cycle_mult = fs_args.cycle_mult;
            o.wds = fs_args.wds;
            o.optimizer = fs_args.adamw ? train::OptimizerKind::AdamW : train::OptimizerKind::SGD;
            o.one_cycle = fs_args.one_cycle;
            o.mixup_alpha = fit_extra.mixup_alpha;
            o.cutmix_alpha = fit_extra.cutmix_alpha;
            o.mix_switch_prob = fit_extra.mix_switch_prob;
            o.mix_prob = fit_extra.mix_prob;
            o.ema_decay = fit_extra.ema_decay;
            o.label_smoothing = fit_extra.label_smoothing;
            if (const std::string extra = train::describe_training_options(o); !extra.empty() && !quiet)
                fmt::print(stderr, "Training with {}\n", extra);
            runs->expect_fit(o, fit_snapshots);
            r = learner.fit(o, &g_stop);
        }
        s.bar->finish();
        if (fold) finish_fold_fit(*s.state, *fold, *runs, r.stopped, quiet);   // its out-of-fold predictions
        else s.state->persist();
        runs->end();
        if (!quiet) report_load_failures(learner);
        if (!fold) print_fit_end(r, fa.project, quiet);
        if (r.stopped && r.stop_reason.find("NaN") != std::string::npos) {
            if (!s.learner->is_main_process()) throw QuietExit{1};   // rank 0 says why
            throw UserError(r.stop_reason);
        }
    });

    // ---- predict ----
    static LearnerArgs pa;
    static std::string p_split = "test", p_out, p_mistakes;
    static int p_tta = 0;
    static bool p_beta = false, p_labels = false, p_ema = false;
    static double p_clip = 0;
    auto* pred = app.add_subcommand("predict", "Predict the test set (writes the submission) or the valid set (prints the evaluation)");
    add_learner_options(pred, pa);
    pred->add_option("--split", p_split, "test or valid")->capture_default_str();
    pred->add_option("--tta", p_tta, "Test-time augmentation: this many augmented passes besides the plain one");
    pred->add_flag("--beta", p_beta, "Mix TTA as fastai v2 (0.75 augmented + 0.25 plain) instead of the mean");
    pred->add_flag("--ema", p_ema, "Predict with the weight EMA of the latest fit with --ema instead of the weights");
    pred->add_option("--out", p_out, "Submission file (.csv or .csv.gz); default PROJECT/submission.csv");
    pred->add_option("--clip", p_clip, "Clip probabilities to [c, 1-c] (log loss safety)");
    pred->add_flag("--labels", p_labels, "Write the predicted class name instead of probabilities");
    pred->add_option("--mistakes", p_mistakes,
                     "With --split valid: write the misclassified images (path, labels, probabilities, loss) to this CSV");
    static DistArgs p_dist;
    add_dist_options(pred, p_dist);
    pred->callback([&global] {
        // Evaluating the valid set writes nothing; a submission or a mistakes file does.
        const bool writes = p_split != "valid" || !p_mistakes.empty();
        if (launch_workers_if_asked(p_dist, global, pa.project, writes ? "predict" : "")) return;
        Session s = open_session(pa, global, false, writes ? "predict" : "", &p_dist);
        const auto split = data::parse_split(p_split);
        if (!split || *split == data::Split::Train) throw UserError("--split must be test or valid");
        if (!p_mistakes.empty() && *split != data::Split::Valid) throw UserError("--mistakes needs --split valid");
        if (p_ema) s.learner->use_ema_weights(true);
        const auto runs = record_run(*s.learner, pa.project,
                                     project::RunKind::Predict, global);   // a submission is what goes to Kaggle
        const auto& p = *s.state->predict(*split, p_tta, p_beta ? train::TtaMix::Beta : train::TtaMix::Mean, &g_stop).predictions;
        s.bar->finish();
        if (!s.learner->is_main_process()) return;   // every rank has all rows; rank 0 reports and writes
        if (*split == data::Split::Valid) {
            fmt::print("valid: {} images, accuracy {:.4f}, log loss {:.4f}{}\n", p.records.size(), p.accuracy(), p.log_loss(),
                       p_tta ? fmt::format(" (TTA, {} passes)", p.passes) : "");
            const int c = static_cast<int>(s.dataset.classes.size());
            if (c <= 20) {
                fmt::print("confusion matrix (rows actual, columns predicted):\n");
                const auto cm = p.confusion_matrix(c);
                for (int a = 0; a < c; ++a) {
                    fmt::print("  {:>12}", s.dataset.classes[static_cast<std::size_t>(a)]);
                    for (int q = 0; q < c; ++q) fmt::print(" {:>6}", cm[static_cast<std::size_t>(a)][static_cast<std::size_t>(q)]);
                    fmt::print("\n");
                }
            }
            for (const auto& [a, q, n] : p.most_confused(c, 1))
                fmt::print("  {} taken for {}: {}\n", s.dataset.classes[static_cast<std::size_t>(a)],
                           s.dataset.classes[static_cast<std::size_t>(q)], n);
            fmt::print("highest losses:\n");
            for (std::size_t i : p.top_losses(5))
                fmt::print("  {:.3f}  {}\n", p.losses[i], s.dataset.images[p.records[i]].path);
            if (!p_mistakes.empty()) {
                train::write_predictions_csv(p_mistakes, s.project, s.dataset, p, true);
                fmt::print("Wrote the mistakes to {}\n", p_mistakes);
            }
            runs->add_prediction(p, *split, p_tta, p_beta ? train::TtaMix::Beta : train::TtaMix::Mean, p_mistakes);
            runs->end();
            return;
        }
        const fs::path out = p_out.empty() ? s.project / "submission.csv" : fs::path(p_out);
        s.state->write_submission(out, p_clip, p_labels);
        runs->add_prediction(p, *split, p_tta, p_beta ? train::TtaMix::Beta : train::TtaMix::Mean, out);
        runs->set_submission(out);
        runs->end();
        if (!global.quiet) fmt::print("Wrote {} ({} rows{})\n", out.string(), p.records.size(), p_tta ? fmt::format(", TTA x{}", p_tta) : "");
    });

    // ---- save / load ----
    static LearnerArgs sa, la;
    static std::string save_name, load_name;
    auto* save = app.add_subcommand("save", "Save the learner's weights and state as a named checkpoint");
    add_learner_options(save, sa);
    save->add_option("NAME", save_name)->required();
    save->callback([&global] {
        Session s = open_session(sa, global, false, "save");
        s.learner->save(save_name);
        if (!global.quiet) fmt::print("Saved {}\n", (s.project / "models" / (save_name + ".safetensors")).string());
    });
    auto* load = app.add_subcommand("load", "Load a named checkpoint into the learner");
    add_learner_options(load, la);
    load->add_option("NAME", load_name)->required();
    load->callback([&global] {
        Session s = open_session(la, global, false, "load");
        s.state->load_checkpoint(load_name);
        if (!global.quiet) fmt::print("Loaded {}\n", load_name);
    });

    // ---- resize-learner ----
    static LearnerArgs rza;
    static int rz_size = 0;
    auto* rz = app.add_subcommand("resize-learner",
                                  "Continue at another image size with the same weights (progressive resizing, fastai 0.7's "
                                  "set_data(get_data(sz)))");
    rz->add_option("PROJECT", rza.project, "Project folder with a learner")->required();
    rz->add_option("--size", rz_size, "The new image size in pixels (at least 32)")->required();
    rz->callback([&global] {
        if (!project::LearnerSpec::read(rza.project))
            throw UserError("this project has no learner yet", "create one first (whisker-cli fit or run with --arch and --size)");
        Session s = open_session(rza, global, false, "resize-learner");
        const int before = s.learner->config().size;
        s.state->resize_learner(rz_size);
        if (global.quiet) return;
        if (before == rz_size) fmt::print("The learner is already at {} px\n", rz_size);
        else fmt::print("Resized the learner from {} px to {} px; its weights are unchanged\n", before, rz_size);
    });

    // ---- run ----
    static LearnerArgs ra;
    static std::string recipe_file;
    auto* run = app.add_subcommand("run", "Run a whole recipe (default: the seed's 8 steps), then predict the test set");
    add_learner_options(run, ra);
    run->add_option("--recipe", recipe_file, "JSON list of steps (see README)");
    static DistArgs run_dist;
    add_dist_options(run, run_dist);
    add_batch_options(run, run_dist);
    static std::optional<int> run_fold;
    static bool run_folds = false;
    auto* run_fold_option = run->add_option("--fold", run_fold,
                                            "Cross-validation: run the recipe on fold I's own learner (trained on the other "
                                            "folds; the project's learner is left alone)")
                                ->option_text("I");
    run->add_flag("--folds", run_folds,
                  "Cross-validation: run the recipe on every fold in turn, skipping folds it has done and continuing an "
                  "interrupted one, then print the out-of-fold score (see docs/runs.md)")
        ->excludes(run_fold_option);
    run->callback([&global] {
        if (run_fold || run_folds) check_fold_option(ra.project, run_fold.value_or(-1), run_dist.nproc > 1);   // commands_data.cpp
        if (launch_workers_if_asked(run_dist, global, ra.project, "run")) return;
        std::string recipe = recipe_file.empty() ? std::string() : read_file(recipe_file);
        Session s = open_session(ra, global, true, "run", &run_dist);
        const bool quiet = global.quiet || !s.learner->is_main_process();
        if (recipe.empty()) {
            recipe = train::recipe_for(*s.learner);
            if (!quiet && !s.learner->config().pretrained)
                fmt::print("Recipe: the seed's 8 steps adapted to training from scratch (one epoch per frozen step; the last "
                           "fit trains every layer at 2e-3 with AdamW, 2+4+8 epochs of SGDR)\n");
        }
        auto printer = std::make_shared<TablePrinter>();
        printer->bar = s.bar.get();
        printer->json_lines = global.json;
        s.learner->add_callback(printer);
        train::RecipeEvents ev;
        ev.step_started = [&](int n, int total, const std::string& step) {
            s.bar->finish();
            if (!global.quiet) fmt::print("== Step {} of {}: {}\n", n, total, step);
        };
        ev.adjusted = [&](const std::string& note) {
            if (!global.quiet) fmt::print("   ({})\n", note);
        };
        ev.lr_found = [&](const train::LrFindResult& r, double lr, bool chosen) {
            s.bar->finish();
            if (global.quiet) return;
            fmt::print("lr_find: {} batches{}\n", r.lrs.size(), r.stopped_early ? " (stopped: the loss exploded)" : "");
            if (r.suggestions.valid)
                fmt::print("suggestions: minimum/10 {:.2e}, steepest {:.2e}, valley {:.2e}\n", r.suggestions.minimum,
                           r.suggestions.steepest, r.suggestions.valley);
            if (chosen) fmt::print("using lr {:.2e}\n", lr);
        };
        ev.fit_done = [&](const train::FitResult&) { s.state->persist(); };
        ev.predicted = [&](const train::Predictions& p, data::Split split, const fs::path& written) {
            s.bar->finish();
            if (split == data::Split::Valid)
                fmt::print("valid with TTA: accuracy {:.4f}, log loss {:.4f}\n", p.accuracy(), p.log_loss());
            else
                fmt::print("Wrote the submission {} ({} rows)\n", written.string(), p.records.size());
        };
        if (run_fold || run_folds) {   // cross-validation: each fold's own learner, resumable
            run_fold_recipes(*s.state, recipe, ev, printer, s.bar.get(), run_fold ? std::vector<int>{*run_fold} : std::vector<int>{},
                             global, &g_stop);
            return;
        }
        const auto runs = record_run(*s.learner, ra.project, project::RunKind::Recipe, global);   // runs.h
        const auto r = s.state->run_recipe(recipe, runs->recipe_events(recipe, ev), &g_stop);
        s.state->persist();
        if (r.stopped) runs->end_stopped(r.stop_reason);
        else runs->end();
        if (!quiet) report_load_failures(*s.learner);
        if (r.stopped) {
            if (!s.learner->is_main_process()) throw QuietExit{1};   // rank 0 says why
            print_fit_end(train::FitResult{{}, true, r.stop_reason}, ra.project, quiet);
            throw UserError("the recipe stopped at step " + std::to_string(r.steps_done + 1) + ": " + r.stop_reason);
        }
        if (!r.epochs.empty()) {
            const bool ema = std::any_of(r.epochs.begin(), r.epochs.end(), [](const train::EpochRecord& e) { return e.has_ema; });
            fmt::print("\n{}", train::epoch_table_header(ema));
            int e = 0;
            for (auto rec : r.epochs) {
                rec.epoch = e++;
                fmt::print("{}", train::epoch_table_row(rec, ema));
            }
        }
    });
}

// bench train / bench predict: a whole network (body + fastai head) on random images, timed
// after 2 warm-up steps; the rate is kept in the user's cache for the architecture table
// (weights list, the workbench's picker).
void add_network_bench(CLI::App& bench, bool training) {
    struct Args {
        std::string arch = "resnet34";
        int size = 0, bs = 16, steps = 10;
        bool json_out = false, no_record = false;
        bool channels_last = false, contiguous = false;   // --channels-last / --no-channels-last
        std::string precision = "auto";
    };
    static Args train_args, predict_args;
    Args& a = training ? train_args : predict_args;
    auto* cmd = bench.add_subcommand(training ? "train" : "predict",
                                     training ? "Training steps per second of a whole network (random data, SGD)"
                                              : "Predictions per second of a whole network (random data, eval mode)");
    cmd->add_option("--arch", a.arch)->capture_default_str();
    cmd->add_option("--size", a.size, "Image size (default: the architecture's)");
    cmd->add_option("--bs", a.bs)->capture_default_str();
    cmd->add_option("--steps", a.steps, "Timed steps (after 2 warm-up steps)")->capture_default_str();
    cmd->add_flag("--json", a.json_out);
    cmd->add_flag("--no-record", a.no_record, "Do not keep the result for the architecture table");
    cmd->add_option("--precision", a.precision, "auto, fp32, bf16 or fp16 (GPU), as for fit")->capture_default_str();
    auto* cl = cmd->add_flag("--channels-last", a.channels_last,
                             "Weights and images in channels-last (NHWC) memory format (default: the format fit uses, "
                             "contiguous NCHW; the result names it)");
    cmd->add_flag("--no-channels-last", a.contiguous, "Contiguous (NCHW) weights and images")->excludes(cl);
    cmd->callback([&a, training] {
        const ComputeDevice dev = detect_compute_device();
        const models::Arch arch = models::parse_arch(a.arch);
        const int size = a.size ? a.size : models::arch_info(arch).default_size();
        models::check_input_size(arch, size);
        if (a.bs < 1 || a.steps < 1) throw UserError("--bs and --steps must be at least 1");
        const train::Precision precision = train::resolve_precision(train::parse_precision(a.precision), dev.cuda);
        // The default is the memory format a fit would use here (prefer_channels_last: bf16, or
        // fp16 on a GPU); the flags measure either on any device.
        const bool channels_last = a.channels_last || (!a.contiguous && train::prefer_channels_last(precision, dev.cuda));
        const auto memory_format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
        const char* format_name = channels_last ? "channels-last" : "contiguous";
        torch::manual_seed(0);
        models::ClassifierModel model(arch, 2);
        const at::Device device = dev.cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
        model.to(device);
        if (channels_last)   // as the Learner does: the 4-d weights (convolutions) in NHWC
            for (auto& p : model.parameters())
                if (p.dim() == 4) p.set_data(p.data().contiguous(memory_format));
        const at::Tensor x = at::randn({a.bs, 3, size, size}).to(device).contiguous(memory_format);
        const at::Tensor y = at::randint(0, 2, {a.bs}, at::kLong).to(device);
        std::function<double()> step;
        std::unique_ptr<torch::optim::SGD> opt;
        if (training) {
            model.train();
            opt = std::make_unique<torch::optim::SGD>(model.parameters(), torch::optim::SGDOptions(1e-3).momentum(0.9));
            step = [&] {
                opt->zero_grad();
                at::Tensor out;
                {
                    train::AutocastScope autocast(precision, dev.cuda);
                    out = model.forward(x);
                }
                auto loss = torch::nn::functional::nll_loss(out.to(at::kFloat), y);
                loss.backward();
                opt->step();
                return loss.item<double>();
            };
        } else {
            model.eval();
            step = [&] {
                c10::InferenceMode inference;
                train::AutocastScope autocast(precision, dev.cuda);
                return model.forward(x).to(at::kFloat).exp().sum().item<double>();
            };
        }
        step();
        step();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < a.steps; ++i) step();
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double rate = a.steps * a.bs / secs;
        if (!a.no_record)
            models::record_speed(a.arch, training ? "train" : "predict",
                                 {rate, size, a.bs,
                                  dev.describe() + ", " + train::precision_name(precision) + (channels_last ? ", channels-last" : ""),
                                  local_time_text("%Y-%m-%d %H:%M")});
        if (a.json_out)
            fmt::print("{}\n", json{{"arch", a.arch}, {"mode", training ? "train" : "predict"}, {"size", size}, {"bs", a.bs},
                                    {"images_per_second", rate}, {"threads", dev.cpu_threads}, {"device", dev.describe()},
                                    {"precision", train::precision_name(precision)}, {"channels_last", channels_last},
                                    {"memory_format", format_name}}
                                   .dump());
        else
            fmt::print("{} {} at {} px, batch {}, {}, {} on {}: {:.1f} images/s\n", training ? "train" : "predict", a.arch,
                       size, a.bs, train::precision_name(precision), format_name, dev.describe(), rate);
    });
}

void add_train_bench(CLI::App& bench, GlobalOptions&) {
    add_network_bench(bench, true);
    add_network_bench(bench, false);
}

}  // namespace whisker::cli
