#include "whisker/project/ensemble.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/transforms.h"
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
                                 const std::atomic<bool>* stop) {
    train::Learner learner(project, dataset, member.config, progress);
    learner.autosave = false;
    learner.load(member.checkpoint);
    MemberPredictions out;
    if (dataset.count(data::Split::Valid) > 0) out.valid = learner.predict(data::Split::Valid, tta, mix, stop);
    if (dataset.count(data::Split::Test) > 0) out.test = learner.predict(data::Split::Test, tta, mix, stop);
    return out;
}

}  // namespace whisker::project
