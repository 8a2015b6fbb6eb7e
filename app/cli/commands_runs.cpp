// whisker-cli runs | ensemble
//
// `runs` reads the project's run records (PROJECT/runs/, core/project/runs.h): a table a line
// per run, one run in full, or several side by side. `ensemble` predicts with several trained
// runs or checkpoints, averages their probabilities, scores the ensemble on the validation set
// beside each member and writes the submission.
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/data/dataset.h"
#include "whisker/project/ensemble.h"
#include "whisker/project/folds.h"
#include "whisker/project/project_lock.h"
#include "whisker/project/runs.h"
#include "whisker/train/precision.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <map>
#include <optional>
#include <unistd.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::cli {

namespace {

std::string metric(double v, const char* format = "{:.4f}") {
    return std::isfinite(v) ? fmt::format(fmt::runtime(format), v) : "-";
}

std::string duration(double s) {
    if (s < 60) return fmt::format("{:.0f}s", s);
    if (s < 3600) return fmt::format("{:.0f}m{:02.0f}s", std::floor(s / 60), std::fmod(s, 60));
    return fmt::format("{:.0f}h{:02.0f}m", std::floor(s / 3600), std::fmod(s / 60, 60));
}

std::string model_of(const project::RunRecord& r) {
    if (r.kind == project::RunKind::Ensemble) return fmt::format("ensemble of {}", r.members.size());
    if (r.arch.empty()) return "-";
    return fmt::format("{} {}px bs{}", r.arch, r.size, r.batch_size);
}

// What the run left behind: its checkpoint, or the file it wrote.
std::string output_of(const project::RunRecord& r) {
    std::string out = r.checkpoint;
    if (r.folds > 0) out = fmt::format("fold {}/{}{}{}", r.fold, r.folds, out.empty() ? "" : " ", out);
    if (!r.submission.empty()) out += (out.empty() ? "" : ", ") + r.submission;
    std::size_t snapshots = 0;
    for (const auto& f : r.fits) snapshots += f.snapshots.size();
    if (snapshots) out += fmt::format("{}{} snapshots", out.empty() ? "" : " + ", snapshots);
    return out.empty() ? "-" : out;
}

std::string lineage_of(const project::RunRecord& r) {
    if (!r.parent) return "-";
    if (r.resumed) return fmt::format("resumes #{}", r.parent);
    if (r.kind == project::RunKind::Fit || r.kind == project::RunKind::Recipe) return fmt::format("after #{}", r.parent);
    return fmt::format("#{}", r.parent);
}

// The metrics of a run's list line: the best epoch (lowest validation log loss), or the
// validation prediction for runs that only predicted.
struct LineMetrics {
    double val_loss = NAN, accuracy = NAN, log_loss = NAN;
};
LineMetrics line_metrics(const project::RunRecord& r) {
    LineMetrics m;
    if (const auto e = r.best_epoch()) {
        m.val_loss = e->val_loss;
        m.accuracy = e->accuracy;
        m.log_loss = e->log_loss;
    } else if (const auto v = r.validation()) {
        m.accuracy = v->accuracy;
        m.log_loss = v->log_loss;
    }
    return m;
}

void print_list(const std::vector<project::RunRecord>& runs, const std::map<int, std::string>& public_scores) {
    fmt::print("{:>4}  {:<10} {:<11} {:<16}  {:<26} {:>6}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:<12} {}\n", "#", "kind",
               "status", "started", "model", "epochs", "val_loss", "accuracy", "log_loss", "public", "time", "from",
               "output");
    for (const auto& r : runs) {
        const auto m = line_metrics(r);
        const auto pub = public_scores.find(r.number);
        fmt::print("{:>4}  {:<10} {:<11} {:<16}  {:<26} {:>6}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:<12} {}\n", r.number,
                   project::run_kind_name(r.kind), r.status, r.started.substr(0, 16), model_of(r),
                   r.fits.empty() ? std::string("-") : std::to_string(r.epochs()), metric(m.val_loss), metric(m.accuracy),
                   metric(m.log_loss), pub == public_scores.end() ? std::string("-") : pub->second,
                   duration(r.wall_seconds), lineage_of(r), output_of(r));
    }
}

void print_show(const project::RunRecord& r, const std::filesystem::path& project) {
    fmt::print("Run #{}: {} ({}), {}\n", r.number, project::run_kind_name(r.kind), r.status,
               r.error.empty() ? "" : "error: " + r.error);
    fmt::print("  started {}, ended {}, {} on {}\n", r.started, r.ended.empty() ? "-" : r.ended, duration(r.wall_seconds),
               r.device);
    fmt::print("  by {} (PID {} on {}): {}\n", r.program, r.pid, r.host, r.command);
    for (const auto& [key, value] : project::run_settings(r)) fmt::print("  {:<22} {}\n", key, value);
    for (std::size_t i = 0; i < r.fits.size(); ++i) {
        const auto& f = r.fits[i];
        if (f.epochs.empty()) continue;
        const bool ema = std::any_of(f.epochs.begin(), f.epochs.end(), [](const train::EpochRecord& e) { return e.has_ema; });
        fmt::print("\n  fit {}{}:\n{}", i + 1, f.stopped ? " (" + f.stop_reason + ")" : "", train::epoch_table_header(ema));
        for (const auto& e : f.epochs) fmt::print("{}", train::epoch_table_row(e, ema));
        for (const auto& s : f.snapshots) fmt::print("  snapshot checkpoint {}\n", s);
    }
    for (const auto& l : r.lr_finds) {
        fmt::print("\n  lr_find: {} points{}", l.lrs.size(), l.stopped_early ? " (stopped: the loss exploded)" : "");
        if (l.suggestions_valid)
            fmt::print(", suggestions minimum/10 {:.2e}, steepest {:.2e}, valley {:.2e}", l.minimum, l.steepest, l.valley);
        if (l.chosen > 0) fmt::print(", chose {:.2e}", l.chosen);
        fmt::print("\n");
    }
    for (const auto& m : r.members)
        fmt::print("  member {:<18} {:<16} {:>4}px  weight {:<5g} valid accuracy {}  log loss {}\n", m.source, m.arch, m.size,
                   m.weight, metric(m.accuracy), metric(m.log_loss));
    for (const auto& p : r.predictions)
        fmt::print("  predicted {} ({} rows{}): accuracy {}, log loss {}{}\n", p.split, p.rows,
                   p.tta ? fmt::format(", TTA x{} {}", p.tta, p.mix) : "", metric(p.accuracy), metric(p.log_loss),
                   p.file.empty() ? "" : " -> " + p.file);
    if (const auto v = r.validation()) fmt::print("  validation score: log loss {}, accuracy {} ({})\n", metric(v->log_loss), metric(v->accuracy), v->from);
    if (!r.checkpoint.empty())
        fmt::print("  checkpoint: {} (whisker-cli load {} {})\n", r.checkpoint, project.string(), r.checkpoint);
    if (!r.oof.empty()) fmt::print("  out-of-fold predictions of fold {}: {} (whisker-cli cv {})\n", r.fold, r.oof, project.string());
}

void print_compare(const std::vector<project::RunRecord>& runs) {
    // Settings in the order they first appear; a run without one shows "-".
    std::vector<std::string> keys;
    std::vector<std::map<std::string, std::string>> values;
    for (const auto& r : runs) {
        std::map<std::string, std::string> v;
        for (const auto& [key, value] : project::run_settings(r)) {
            if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
            v[key] = value;
        }
        values.push_back(std::move(v));
    }
    std::size_t width = 24;
    for (const auto& v : values)
        for (const auto& [key, value] : v) width = std::max(width, std::min<std::size_t>(value.size(), 40));
    auto row = [&](const std::string& key, const std::vector<std::string>& cells) {
        // Rows where the runs differ are marked, so the eye finds them.
        const bool differ = std::adjacent_find(cells.begin(), cells.end(), std::not_equal_to<>()) != cells.end();
        fmt::print("{}{:<22}", differ ? "* " : "  ", key);
        for (const auto& c : cells) fmt::print(" {:<{}}", c.size() > width ? c.substr(0, width - 1) + "…" : c, width);
        fmt::print("\n");
    };
    std::vector<std::string> head;
    for (const auto& r : runs) head.push_back(fmt::format("#{} ({})", r.number, r.status));
    row("run", head);
    for (const auto& key : keys) {
        std::vector<std::string> cells;
        for (const auto& v : values) cells.push_back(v.count(key) ? v.at(key) : "-");
        row(key, cells);
    }
    auto metric_row = [&](const std::string& name, const std::function<std::string(const project::RunRecord&)>& f) {
        std::vector<std::string> cells;
        for (const auto& r : runs) cells.push_back(f(r));
        row(name, cells);
    };
    metric_row("best val_loss", [](const auto& r) { return metric(line_metrics(r).val_loss); });
    metric_row("best accuracy", [](const auto& r) { return metric(line_metrics(r).accuracy); });
    metric_row("best log_loss", [](const auto& r) { return metric(line_metrics(r).log_loss); });
    metric_row("validation", [](const auto& r) {
        const auto v = r.validation();
        return v ? fmt::format("{} ({})", metric(v->log_loss), v->from) : std::string("-");
    });
    metric_row("wall time", [](const auto& r) { return duration(r.wall_seconds); });
    // The epoch curves side by side.
    std::size_t most = 0;
    for (const auto& r : runs) most = std::max(most, r.all_epochs().size());
    for (std::size_t e = 0; e < most; ++e)
        metric_row(fmt::format("epoch {} val/log loss", e + 1), [e](const auto& r) {
            const auto all = r.all_epochs();
            if (e >= all.size()) return std::string("-");
            return fmt::format("{} / {}", metric(all[e].val_loss), metric(all[e].log_loss));
        });
}

std::atomic<bool> g_ensemble_stop{false};
extern "C" void on_ensemble_sigint(int) { g_ensemble_stop = true; }

}  // namespace

std::shared_ptr<project::RunRecorder> record_run(train::Learner& learner, const std::string& project, project::RunKind kind,
                                                 const GlobalOptions& global) {
    auto recorder = std::make_shared<project::RunRecorder>(project, "whisker-cli");
    std::string command = "whisker-cli";
    for (const auto& a : global.args) command += " " + a;
    learner.add_callback(recorder);
    recorder->begin(kind, learner, command);
    return recorder;
}

void add_run_commands(CLI::App& app, GlobalOptions& global) {
    // ---- runs ----
    static std::string runs_project;
    static std::vector<std::string> runs_action;
    static bool runs_json = false;
    auto* runs = app.add_subcommand("runs", "The project's recorded runs: list, show N, compare N M …");
    runs->add_option("PROJECT", runs_project, "Project folder")->required();
    runs->add_option("ACTION", runs_action, "list (default) | show N | compare N M …");
    runs->add_flag("--json", runs_json, "The records as JSON (list: an array of them)");
    runs->callback([&global] {
        const fs::path project = runs_project;
        if (!fs::is_directory(project)) throw UserError("'" + runs_project + "' is not a folder");
        const std::string action = runs_action.empty() ? "list" : runs_action[0];
        const bool as_json = runs_json || global.json;
        auto numbers = [&](std::size_t at_least) {
            std::vector<int> out;
            for (std::size_t i = 1; i < runs_action.size(); ++i) {
                const auto n = project::parse_run_reference(runs_action[i]);
                if (!n) throw UserError("'" + runs_action[i] + "' is not a run number", "use the numbers of whisker-cli runs " + runs_project);
                out.push_back(*n);
            }
            if (out.size() < at_least)
                throw UserError(fmt::format("runs {} needs {} run number{}", action, at_least, at_least == 1 ? "" : "s"),
                                "e.g. whisker-cli runs " + runs_project + (at_least == 1 ? " show 3" : " compare 3 5"));
            return out;
        };
        auto read = [&](int n) {
            auto r = project::read_run(project, n);
            if (!r) throw UserError(fmt::format("there is no run #{} in {}", n, runs_project), "see whisker-cli runs " + runs_project);
            return *r;
        };
        if (action == "list") {
            const auto all = project::list_runs(project);
            if (as_json) {
                json out = json::array();
                for (const auto& r : all) {
                    json j = json::parse(r.json);
                    j["status"] = r.status;   // "interrupted" where its process is gone
                    out.push_back(j);
                }
                fmt::print("{}\n", out.dump(1));
                return;
            }
            if (all.empty()) {
                fmt::print("No runs recorded in {} yet (every fit, lr-find, run, predict and ensemble adds one)\n", runs_project);
                return;
            }
            std::map<int, std::string> public_scores;
            for (const auto& s : project::submission_scores(project))
                if (!s.public_score.empty()) public_scores[s.run] = s.public_score;
            print_list(all, public_scores);
        } else if (action == "show") {
            const auto r = read(numbers(1).front());
            if (as_json) {
                json j = json::parse(r.json);
                j["status"] = r.status;
                fmt::print("{}\n", j.dump(1));
            } else {
                print_show(r, project);
            }
        } else if (action == "compare") {
            std::vector<project::RunRecord> chosen;
            for (int n : numbers(2)) chosen.push_back(read(n));
            if (as_json) {
                json out = json::array();
                for (const auto& r : chosen) {
                    json settings = json::object();
                    for (const auto& [k, v] : project::run_settings(r)) settings[k] = v;
                    const auto m = line_metrics(r);
                    auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
                    out.push_back({{"number", r.number}, {"status", r.status}, {"settings", settings},
                                   {"best", {{"val_loss", num(m.val_loss)}, {"accuracy", num(m.accuracy)}, {"log_loss", num(m.log_loss)}}}});
                }
                fmt::print("{}\n", out.dump(1));
            } else {
                print_compare(chosen);
            }
        } else {
            throw UserError("unknown runs action '" + action + "'", "use list, show N or compare N M …");
        }
    });

    // ---- ensemble ----
    static std::string ens_project, ens_out, ens_precision = "auto";
    static std::vector<std::string> ens_from;
    static std::vector<double> ens_weights;
    static int ens_tta = 0;
    static bool ens_geometric = false, ens_beta = false;
    static double ens_clip = 0;
    auto* ens = app.add_subcommand("ensemble",
                                   "Predict with several runs or checkpoints, average their probabilities, score the ensemble on "
                                   "the validation set beside each member, and write the submission");
    ens->add_option("PROJECT", ens_project, "Project folder")->required();
    ens->add_option("--from", ens_from,
                    "Members: run numbers (their checkpoint, architecture and size) or checkpoint names, e.g. --from 3 "
                    "--from 7 --from snapshot-0007-2");
    static bool ens_folds = false;
    ens->add_flag("--folds", ens_folds,
                  "Members: the cross-validation's fold runs (one per fold, as whisker-cli cv lists them); an ensemble "
                  "of fold runs is scored out of fold");
    ens->add_option("--weights", ens_weights, "One weight per member, in the order of --from (default: equal)");
    ens->add_option("--tta", ens_tta, "Test-time augmentation for every member: augmented passes besides the plain one")
        ->check(CLI::Range(0, 64));
    ens->add_flag("--beta", ens_beta, "Mix each member's TTA as fastai v2 (0.75 augmented + 0.25 plain)");
    ens->add_flag("--geometric", ens_geometric,
                  "Geometric mean of the probabilities (renormalised) instead of the arithmetic mean: for log-loss competitions");
    ens->add_option("--clip", ens_clip, "Clip the written probabilities to [c, 1-c] (log loss safety)");
    ens->add_option("--out", ens_out, "Submission file (.csv or .csv.gz)")->required();
    ens->add_option("--precision", ens_precision, "auto, fp32, bf16 or fp16 (GPU), as for predict")->capture_default_str();
    ens->callback([&global] {
        std::signal(SIGINT, on_ensemble_sigint);
        const fs::path project = ens_project;
        if (ens_from.empty() && !ens_folds)
            throw UserError("an ensemble needs members", "give them with --from (runs or checkpoints), or --folds");
        if (!ens_weights.empty() && !ens_folds && ens_weights.size() != ens_from.size())
            throw UserError(fmt::format("{} weights for {} members", ens_weights.size(), ens_from.size()),
                            "give one --weights value per --from, in the same order");
        const auto lock = project::ProjectLock::acquire(project, "ensemble");
        const data::Dataset dataset = data::Dataset::load(project);
        if (dataset.count(data::Split::Test) == 0)
            throw UserError("the dataset has no test images to write a submission for");
        train::LearnerConfig base;
        base.threads = global.threads;
        base.precision = train::parse_precision(ens_precision);
        train::resolve_precision(base.precision, detect_compute_device().cuda);   // fp16 on a CPU: say so first
        std::vector<project::EnsembleMember> members;
        std::vector<std::string> refs = ens_from;
        if (ens_folds)   // the fold runs `whisker-cli cv` counts
            for (int run : project::fold_ensemble_runs(project, dataset)) refs.push_back(std::to_string(run));
        for (const auto& ref : refs) members.push_back(project::resolve_member(project, ref, base));
        // Fold runs trained on most of the valid split: they are scored out of fold instead
        // (project/ensemble.h), from their saved predictions, before any member predicts.
        const bool out_of_fold = std::any_of(members.begin(), members.end(),
                                             [&](const auto& m) { return project::member_folds(project, m) > 0; });
        std::optional<project::OutOfFoldEnsemble> oof;
        if (out_of_fold)
            oof = project::out_of_fold_ensemble(project, dataset, members, ens_weights,
                                                ens_geometric ? project::EnsembleMix::Geometric : project::EnsembleMix::Mean);

        project::RunRecorder recorder(project, "whisker-cli");
        std::string command = "whisker-cli";
        for (const auto& a : global.args) command += " " + a;
        recorder.begin(project::RunKind::Ensemble, dataset, command);
        recorder.set_device(detect_compute_device().describe());

        TerminalProgress bar(!global.quiet && isatty(2));
        auto progress = [&bar](const std::string& stage, long done, long total) {
            bar.update({stage, static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(total)});
        };
        const train::TtaMix tta_mix = ens_beta ? train::TtaMix::Beta : train::TtaMix::Mean;
        std::vector<project::MemberPredictions> predicted;
        std::vector<project::RunMember> recorded;
        for (std::size_t i = 0; i < members.size(); ++i) {
            const auto& m = members[i];
            if (!global.quiet)
                fmt::print(stderr, "Member {} of {}: {} ({} at {} px, checkpoint {})\n", i + 1, members.size(), m.source,
                           m.config.arch, m.config.size, m.checkpoint);
            predicted.push_back(project::predict_member(project, dataset, m, ens_tta, tta_mix, progress, &g_ensemble_stop, !oof));
            bar.finish();
            project::RunMember rm = project::run_member_of(m, ens_weights.empty() ? 1.0 : ens_weights[i]);
            rm.accuracy = oof ? oof->member_accuracy[i] : predicted.back().valid ? predicted.back().valid->accuracy() : NAN;
            rm.log_loss = oof ? oof->member_log_loss[i] : predicted.back().valid ? predicted.back().valid->log_loss() : NAN;
            recorded.push_back(rm);
        }
        const auto mix = ens_geometric ? project::EnsembleMix::Geometric : project::EnsembleMix::Mean;
        const bool weighted = !ens_weights.empty() &&
                              std::adjacent_find(ens_weights.begin(), ens_weights.end(), std::not_equal_to<>()) != ens_weights.end();
        recorder.set_members(recorded, project::ensemble_mix_name(mix, weighted));
        std::vector<const train::Predictions*> valid, test;
        for (const auto& p : predicted) {
            if (p.valid) valid.push_back(&*p.valid);
            test.push_back(&*p.test);
        }
        // The scores first, then the file: a worse ensemble is seen before it is written.
        fmt::print("{:<20} {:<16} {:>5}  {:>7}  {:>9}  {:>8}\n", "member", "arch", "size", "weight", "accuracy", "log_loss");
        for (const auto& m : recorded)
            fmt::print("{:<20} {:<16} {:>5}  {:>7g}  {:>9}  {:>8}\n", m.source, m.arch, m.size, m.weight, metric(m.accuracy),
                       metric(m.log_loss));
        if (oof) {
            fmt::print("{:<20} {:<16} {:>5}  {:>7}  {:>9}  {:>8}\n", "ensemble", project::ensemble_mix_name(mix, weighted), "", "",
                       metric(oof->predictions.accuracy()), metric(oof->predictions.log_loss()));
            if (!global.quiet)
                fmt::print("(out of fold: each member on its own fold, the ensemble on all {} labelled images)\n",
                           oof->predictions.records.size());
            recorder.add_prediction(oof->predictions, data::Split::Valid, std::max(0, oof->predictions.passes - 1), tta_mix);
        } else if (valid.size() == members.size()) {
            const auto ev = project::combine_predictions(valid, ens_weights, mix, dataset.multi_label);
            fmt::print("{:<20} {:<16} {:>5}  {:>7}  {:>9}  {:>8}\n", "ensemble", project::ensemble_mix_name(mix, weighted), "", "",
                       metric(ev.accuracy()), metric(ev.log_loss()));
            recorder.add_prediction(ev, data::Split::Valid, ens_tta, tta_mix);
        } else if (!global.quiet) {
            fmt::print(stderr, "note: the dataset has no validation images: the ensemble is not scored\n");
        }
        const auto et = project::combine_predictions(test, ens_weights, mix, dataset.multi_label);
        train::write_submission(ens_out, dataset, et, ens_clip);
        recorder.add_prediction(et, data::Split::Test, ens_tta, tta_mix, ens_out);
        recorder.set_submission(ens_out);
        const int number = recorder.number();
        recorder.end();
        if (!global.quiet) fmt::print("Wrote {} ({} rows); recorded as run #{}\n", ens_out, et.records.size(), number);
    });
}

}  // namespace whisker::cli
