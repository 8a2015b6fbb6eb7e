#include "whisker/project/ensemble.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/folds.h"
#include "whisker/data/transforms.h"
#include "whisker/project/folds.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::project {

const char* ensemble_mix_name(EnsembleMix mix, bool weighted) {
    if (mix == EnsembleMix::Geometric) return weighted ? "weighted geometric mean" : "geometric mean";
    return weighted ? "weighted mean" : "mean";
}

train::Predictions combine_predictions(const std::vector<const train::Predictions*>& members,
                                       const std::vector<double>& weights, EnsembleMix mix, bool multi_label) {
    if (members.empty()) throw UserError("an ensemble needs at least one member");
    if (!weights.empty() && weights.size() != members.size())
        throw UserError(fmt::format("{} weights for {} members", weights.size(), members.size()),
                        "give one weight per member, in the order of --from");
    std::vector<double> w = weights.empty() ? std::vector<double>(members.size(), 1.0) : weights;
    double total = 0;
    for (double x : w) {
        if (!(x >= 0) || !std::isfinite(x)) throw UserError(fmt::format("weight {} is not a non-negative number", x));
        total += x;
    }
    if (!(total > 0)) throw UserError("the weights add up to 0", "give at least one member a positive weight");
    if (mix == EnsembleMix::Geometric && multi_label)
        throw UserError("the geometric mean is for single-label probabilities", "use the mean for this multi-label dataset");

    const train::Predictions& first = *members.front();
    const std::int64_t rows = static_cast<std::int64_t>(first.records.size());
    const std::int64_t classes = first.probs.defined() && first.probs.dim() == 2 ? first.probs.size(1) : 0;
    std::map<std::size_t, std::int64_t> row_of;
    for (std::int64_t i = 0; i < rows; ++i) row_of[first.records[static_cast<std::size_t>(i)]] = i;
    at::Tensor acc = at::zeros({rows, classes}, at::kDouble);
    for (std::size_t m = 0; m < members.size(); ++m) {
        const train::Predictions& p = *members[m];
        if (p.records.size() != first.records.size() || !p.probs.defined() || p.probs.size(0) != rows ||
            p.probs.size(1) != classes)
            throw UserError(fmt::format("ensemble member {} predicted {} rows of {} classes, the first {} rows of {}", m + 1,
                                        p.records.size(), p.probs.defined() ? p.probs.size(1) : 0, rows, classes),
                            "members must be trained on this project's classes and predict the same split");
        // This member's rows in the first member's order.
        std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
        for (std::int64_t i = 0; i < rows; ++i) {
            const auto it = row_of.find(p.records[static_cast<std::size_t>(i)]);
            if (it == row_of.end())
                throw UserError(fmt::format("ensemble member {} predicted an image the first did not", m + 1),
                                "predict every member on the same dataset (no marks changed in between)");
            order[static_cast<std::size_t>(it->second)] = i;
        }
        const at::Tensor aligned = p.probs.to(at::kCPU).to(at::kDouble).index_select(0, at::tensor(order, at::kLong));
        if (mix == EnsembleMix::Geometric) acc += w[m] * aligned.clamp_min(1e-15).log();
        else acc += w[m] * aligned;
    }
    acc /= total;
    if (mix == EnsembleMix::Geometric) {
        acc = acc.exp();
        acc = acc / acc.sum(1, true);
    }
    train::Predictions out;
    out.records = first.records;
    out.actual = first.actual;
    out.passes = first.passes;
    out.probs = acc.to(at::kFloat);
    const at::Tensor pred = acc.argmax(1);
    for (std::int64_t i = 0; i < rows; ++i) {
        out.predicted.push_back(static_cast<int>(pred[i].item<std::int64_t>()));
        const int a = out.actual[static_cast<std::size_t>(i)];
        out.losses.push_back(a < 0 ? std::nan("") : -std::log(std::clamp(acc[i][a].item<double>(), 1e-15, 1.0)));
    }
    return out;
}

RunMember run_member_of(const EnsembleMember& m, double weight) {
    RunMember rm;
    rm.source = m.run ? fmt::format("#{}", m.run) : m.source;
    if (m.run && m.source.rfind("snapshot-", 0) == 0) rm.source = m.source;
    rm.checkpoint = m.checkpoint;
    rm.arch = m.config.arch;
    rm.size = m.config.size;
    rm.weight = weight;
    return rm;
}

EnsembleMember resolve_member(const fs::path& project, const std::string& reference, const train::LearnerConfig& base) {
    EnsembleMember m;
    m.source = reference;
    m.config = base;
    m.config.pretrained = false;
    m.config.weights_from_checkpoint = true;
    if (const auto n = parse_run_reference(reference); n && !fs::exists(project / "models" / (reference + ".json"))) {
        const auto run = read_run(project, *n);
        if (!run) throw UserError(fmt::format("there is no run #{} in {}", *n, project.string()), "see whisker-cli runs " + project.string());
        if (run->checkpoint.empty())
            throw UserError(fmt::format("run #{} ({}) produced no checkpoint", *n, run_kind_name(run->kind)),
                            "ensemble fit or recipe runs, or checkpoints by name");
        m.run = *n;
        m.fold = run->fold;
        m.folds = run->folds;
        m.checkpoint = run->checkpoint;
        m.config.arch = run->arch;
        m.config.size = run->size;
        m.config.batch_size = run->batch_size > 0 ? run->batch_size : base.batch_size;
        m.config.seed = run->seed;
        if (const auto preset = data::parse_augment_preset(run->augment_preset)) m.config.augment = *preset;
        m.config.max_zoom = run->max_zoom;
        m.config.no_flip = run->no_flip;
        m.config.trivial_augment = run->trivial_augment;
        m.config.random_erasing = run->random_erasing;
        m.config.val_resize = run->val_resize;
    } else {
        const fs::path file = project / "models" / (reference + ".json");
        if (!fs::exists(file))
            throw UserError("'" + reference + "' is neither a run of this project nor a checkpoint in " + (project / "models").string(),
                            "give a run number (whisker-cli runs " + project.string() + ") or a checkpoint name");
        json j;
        try {
            j = json::parse(read_file(file));
        } catch (const json::exception& e) {
            throw UserError(file.string() + " is damaged (" + e.what() + ")");
        }
        m.checkpoint = reference;
        m.config.arch = j.value("arch", "");
        m.config.size = j.value("size", 0);
        m.config.batch_size = j.value("batch_size", base.batch_size);
        // Snapshots name their run: "snapshot-0004-2" keeps run 4's augmentation.
        std::optional<RunRecord> run;
        if (reference.rfind("snapshot-", 0) == 0) {
            const auto dash = reference.find('-', 9);
            if (const auto n = parse_run_reference(reference.substr(9, dash == std::string::npos ? std::string::npos : dash - 9)))
                run = read_run(project, *n);
        }
        if (run && run->arch == m.config.arch) {
            m.run = run->number;
            m.fold = run->fold;
            m.folds = run->folds;
            if (const auto preset = data::parse_augment_preset(run->augment_preset)) m.config.augment = *preset;
            m.config.max_zoom = run->max_zoom;
            m.config.no_flip = run->no_flip;
            m.config.trivial_augment = run->trivial_augment;
            m.config.random_erasing = run->random_erasing;
            m.config.val_resize = run->val_resize;
        } else if (const auto spec = LearnerSpec::read(project); spec && spec->arch == m.config.arch) {
            m.config.augment = spec->augment;
            m.config.max_zoom = spec->max_zoom;
            m.config.no_flip = spec->no_flip;
            m.config.trivial_augment = spec->trivial_augment;
            m.config.random_erasing = spec->random_erasing;
            m.config.val_resize = spec->val_resize;
        }
    }
    if (m.config.arch.empty() || m.config.size <= 0)
        throw UserError("checkpoint '" + m.checkpoint + "' does not say its architecture and size", "use a run number instead");
    if (m.config.batch_size <= 0) m.config.batch_size = 64;
    if (!fs::exists(project / "models" / (m.checkpoint + ".safetensors")))
        throw UserError("the weights of checkpoint '" + m.checkpoint + "' are missing (" +
                        (project / "models" / (m.checkpoint + ".safetensors")).string() + ")");
    return m;
}

MemberPredictions predict_member(const fs::path& project, const data::Dataset& dataset, const EnsembleMember& member,
                                 int tta, train::TtaMix mix, const train::ProgressCallback& progress,
                                 const std::atomic<bool>* stop, bool predict_valid) {
    // A fold run's checkpoint knows the split it trained on (its fit's schedule): it is loaded
    // with that fold's view, whose test images are the same.
    const bool fold_member = member.fold >= 0 && member.folds == dataset.folds();
    train::Learner learner(project, fold_member ? data::fold_view(dataset, member.fold) : dataset, member.config, progress);
    learner.autosave = false;
    learner.load(member.checkpoint);
    MemberPredictions out;
    if (predict_valid && dataset.count(data::Split::Valid) > 0) out.valid = learner.predict(data::Split::Valid, tta, mix, stop);
    if (dataset.count(data::Split::Test) > 0) out.test = learner.predict(data::Split::Test, tta, mix, stop);
    return out;
}

int member_folds(const fs::path&, const EnsembleMember& member) { return member.folds; }

OutOfFoldEnsemble out_of_fold_ensemble(const fs::path& project, const data::Dataset& dataset,
                                       const std::vector<EnsembleMember>& members, const std::vector<double>& weights,
                                       EnsembleMix mix) {
    data::check_fold(dataset, 0);
    const int k = dataset.folds();
    if (!weights.empty() && weights.size() != members.size())
        throw UserError(fmt::format("{} weights for {} members", weights.size(), members.size()),
                        "give one weight per member, in the order of --from");
    OutOfFoldEnsemble out;
    std::vector<std::vector<train::Predictions>> per_fold(static_cast<std::size_t>(k));
    std::vector<std::vector<double>> fold_weights(static_cast<std::size_t>(k));
    for (std::size_t m = 0; m < members.size(); ++m) {
        const auto run = members[m].run ? read_run(project, members[m].run) : std::nullopt;
        if (!run || run->folds <= 0)
            throw UserError(fmt::format("member {} ({}) is not a cross-validation fold run, and the others are", m + 1,
                                        members[m].source),
                            "an ensemble is scored either on the valid split (no fold runs) or out of fold (only fold runs)");
        if (run->folds != k)
            throw UserError(fmt::format("member {} (run #{}) is a fold of {} folds, and the dataset has {} now", m + 1, run->number,
                                        run->folds, k),
                            "use the fold runs of the dataset's folds (whisker-cli cv PROJECT lists them)");
        std::string why;
        auto p = read_oof(project, dataset, *run, &why);
        if (!p) throw UserError("ensemble member " + std::to_string(m + 1) + ": " + why, "train that fold again, or leave the member out");
        out.member_accuracy.push_back(p->accuracy());
        out.member_log_loss.push_back(p->log_loss());
        per_fold[static_cast<std::size_t>(run->fold)].push_back(std::move(*p));
        fold_weights[static_cast<std::size_t>(run->fold)].push_back(weights.empty() ? 1.0 : weights[m]);
    }
    std::vector<train::Predictions> combined;
    for (int f = 0; f < k; ++f) {
        const auto& parts = per_fold[static_cast<std::size_t>(f)];
        if (parts.empty())
            throw UserError(fmt::format("no member validated fold {}: the out-of-fold score needs every one of the {} folds", f, k),
                            fmt::format("add a run of fold {} (whisker-cli cv {} lists them), or train it: whisker-cli run {} --fold {}",
                                        f, project.string(), project.string(), f));
        std::vector<const train::Predictions*> ptrs;
        for (const auto& p : parts) ptrs.push_back(&p);
        combined.push_back(combine_predictions(ptrs, fold_weights[static_cast<std::size_t>(f)], mix, dataset.multi_label));
    }
    std::vector<const train::Predictions*> ptrs;
    for (const auto& p : combined) ptrs.push_back(&p);
    out.predictions = concat_predictions(ptrs);
    return out;
}

}  // namespace whisker::project
