// whisker-cli data prepare | folds | report | materialize | resize | duplicates | map.
// The cross-validation that uses the folds (`cv`, the fold jobs of fit/run) is commands_cv.cpp.
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/errors.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"
#include "whisker/data/prepare.h"
#include "whisker/project/folds.h"
#include "whisker/project/runs.h"
#include "whisker/train/distributed.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"
#include "whisker/project/project_lock.h"
#include "whisker/data/report.h"
#include "whisker/data/resize_cache.h"
#include "whisker/explain/duplicates.h"
#include "whisker/explain/embeddings.h"
#include "whisker/project/session.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <algorithm>
#include <cmath>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

struct PrepareArgs {
    std::string project, source, images;
    std::optional<int> valid_per_class;
    std::optional<double> valid_frac;
    std::uint64_t seed = 42;
    std::optional<int> folds;
    bool group_duplicates = false, no_group_duplicates = false;
};

// Near-duplicate groups for the folds (explain/duplicates.h), so that no copy of a fold's image
// trains its model. They cost a decode of every image, so by default only when the project has
// the duplicates finder's fingerprint cache (then only new or changed files are decoded);
// `always` scans (and builds the cache), `never` deals every image on its own. `said` gets a
// line for the user.
data::FoldGrouper duplicate_grouper(const std::string& project, bool always, bool never, GlobalOptions& global,
                                    std::string* said) {
    return [project, always, never, &global, said](const data::Dataset& d, data::FoldOptions& fo) {
        if (never) {
            *said = "near-duplicates not grouped (--no-group-duplicates)";
            return;
        }
        const bool cached = project::has_duplicate_fingerprints(project);
        if (!always && !cached) {
            *said = "near-duplicates not grouped: no fingerprints yet (whisker-cli data duplicates " + project +
                    " makes them, then deal again; or add --group-duplicates)";
            return;
        }
        TerminalProgress bar(!global.quiet && isatty(2));
        *said = project::group_near_duplicates(project, d, fo, global.threads, bar.callback());   // project/folds.h
        bar.finish();
        if (cached) *said += " (fingerprints from the cache)";
    };
}

// The folds as a table: images per fold and class.
void print_folds(const data::Dataset& d) {
    fmt::print("Folds: {}\n", data::describe_folds(d));
    const auto members = data::fold_members(d);
    const bool per_class = !d.multi_label && d.classes.size() <= 8;
    fmt::print("  {:>4}  {:>7}", "fold", "images");
    if (per_class)
        for (const auto& c : d.classes) fmt::print("  {:>10}", c.size() > 10 ? c.substr(0, 9) + "…" : c);
    fmt::print("\n");
    for (std::size_t f = 0; f < members.size(); ++f) {
        fmt::print("  {:>4}  {:>7}", f, members[f].size());
        if (per_class) {
            std::vector<std::size_t> n(d.classes.size(), 0);
            for (std::size_t i : members[f]) ++n[static_cast<std::size_t>(d.images[i].labels.at(0))];
            for (std::size_t c = 0; c < n.size(); ++c) fmt::print("  {:>10}", n[c]);
        }
        fmt::print("\n");
    }
}

void add_prepare(CLI::App& data, GlobalOptions& global) {
    static PrepareArgs a;
    auto* cmd = data.add_subcommand("prepare", "Build the project's dataset from Kaggle zips, a folder tree or a labels CSV");
    cmd->add_option("PROJECT", a.project, "Project folder (created if needed)")->required();
    cmd->add_option("--from", a.source, "Kaggle zip(s) or their folder, a train/<class>/ tree, or a labels CSV")->required();
    auto* per_class = cmd->add_option("--valid-per-class", a.valid_per_class, "Validation images per class (the seed's recipe: 2000)");
    auto* frac = cmd->add_option("--valid-frac", a.valid_frac, "Fraction of each class for validation (default 0.2)");
    per_class->excludes(frac);
    cmd->add_option("--seed", a.seed, "Seed of the validation split")->capture_default_str();
    cmd->add_option("--images", a.images, "Images folder for a labels CSV (default: train/ beside it)");
    cmd->add_option("--folds", a.folds,
                    "Also deal the labelled images (train and valid) into K cross-validation folds, stratified by class "
                    "(0: none; default: the earlier manifest's K, if it had folds)")
        ->option_text("K");
    auto* group = cmd->add_flag("--group-duplicates", a.group_duplicates,
                                "With folds: find near-duplicates now and keep each group in one fold (default: only when "
                                "'data duplicates' has left its fingerprints)");
    cmd->add_flag("--no-group-duplicates", a.no_group_duplicates, "With folds: deal every image on its own")->excludes(group);
    cmd->callback([&global] {
        const auto lock = project::ProjectLock::acquire(a.project, "prepare");
        TerminalProgress bar(!global.quiet && isatty(2));
        data::PrepareOptions o;
        o.project = a.project;
        o.source = a.source;
        o.valid_per_class = a.valid_per_class;
        o.valid_frac = a.valid_frac;
        o.seed = a.seed;
        o.csv_images = a.images;
        o.threads = global.threads;
        o.progress = bar.callback();
        o.folds = a.folds;
        std::string grouping;
        o.fold_groups = duplicate_grouper(a.project, a.group_duplicates, a.no_group_duplicates, global, &grouping);
        const data::Dataset d = data::prepare_dataset(o);
        bar.finish();
        if (global.quiet) return;
        fmt::print("Prepared {}: {} classes, {} train, {} valid, {} test images; {} files skipped\n", a.project,
                   d.classes.size(), d.count(data::Split::Train), d.count(data::Split::Valid), d.count(data::Split::Test),
                   d.skipped.size());
        if (d.folds() > 0) {
            print_folds(d);
            if (!a.folds) fmt::print("  (the earlier manifest's {} folds, dealt again; --folds 0 removes them)\n", d.folds());
            if (!grouping.empty()) fmt::print("  {}\n", grouping);
        }
        for (const auto& w : d.warnings) fmt::print("warning: {}\n", w);
        if (!d.skipped.empty()) fmt::print("See why with: whisker-cli data report {}\n", a.project);
    });
}

void add_folds(CLI::App& data, GlobalOptions& global) {
    static std::string project;
    static std::optional<int> folds;
    static std::optional<std::uint64_t> seed;
    static bool group = false, no_group = false;
    auto* cmd = data.add_subcommand("folds",
                                    "Deal the labelled images (train and valid) into K cross-validation folds, stratified by "
                                    "class, without preparing the data again; without --folds, show the folds");
    cmd->add_option("PROJECT", project, "Project folder (prepared)")->required();
    cmd->add_option("--folds", folds, "K, at least 2 (0: remove the folds)")->option_text("K");
    cmd->add_option("--seed", seed, "Seed of the folds (default: the manifest's split seed)");
    auto* g = cmd->add_flag("--group-duplicates", group,
                            "Find near-duplicates now and keep each group in one fold (default: only when 'data "
                            "duplicates' has left its fingerprints)");
    cmd->add_flag("--no-group-duplicates", no_group, "Deal every image on its own")->excludes(g);
    cmd->callback([&global] {
        if (!folds) {
            const auto d = data::Dataset::load(project);
            if (d.folds() == 0)
                throw UserError("the dataset has no cross-validation folds", "deal them: whisker-cli data folds " + project + " --folds 5");
            print_folds(d);
            return;
        }
        const auto lock = project::ProjectLock::acquire(project, "folds");
        data::Dataset d = data::Dataset::load(project);
        std::string grouping;
        if (*folds == 0) {
            data::clear_folds(d);
        } else {
            data::FoldOptions o;
            o.folds = *folds;
            o.seed = seed.value_or(d.split.seed);
            duplicate_grouper(project, group, no_group, global, &grouping)(d, o);
            data::assign_folds(d, o);
        }
        d.save(project);
        if (global.quiet) return;
        if (d.folds() == 0) {
            fmt::print("Removed the folds of {}\n", project);
            return;
        }
        print_folds(d);
        if (!grouping.empty()) fmt::print("  {}\n", grouping);
    });
}

void add_report(CLI::App& data, GlobalOptions&) {
    static std::string project;
    static int size = 224;
    auto* cmd = data.add_subcommand("report", "Counts per class and split, image sizes, and every skipped file with its reason");
    cmd->add_option("PROJECT", project, "Project folder")->required();
    cmd->add_option("--size", size, "Model input size, to count images that will be upscaled")->capture_default_str();
    cmd->callback([] {
        const auto d = data::Dataset::load(project);
        fmt::print("{}", data::format_report(d, size));
    });
}

void add_materialize(CLI::App& data, GlobalOptions& global) {
    static std::string project, dest;
    auto* cmd = data.add_subcommand("materialize",
                                    "Write fastai's folder layout (train/<class>, valid/<class>, test) as hard links or copies");
    cmd->add_option("PROJECT", project, "Project folder")->required();
    cmd->add_option("DEST", dest, "Where to write the layout (default: PROJECT/layout)");
    cmd->callback([&global] {
        const auto d = data::Dataset::load(project);
        const fs::path target = dest.empty() ? fs::path(project) / "layout" : fs::path(dest);
        const auto n = data::materialize_layout(d, project, target);
        if (!global.quiet) fmt::print("Wrote {} files into {}\n", n, target.string());
    });
}

void add_resize(CLI::App& data, GlobalOptions& global) {
    static std::string project;
    static int size = 224;
    auto* cmd = data.add_subcommand("resize", "Build the cache of images pre-shrunk to 1.3 x size (fastai's data.resize)");
    cmd->add_option("PROJECT", project, "Project folder")->required();
    cmd->add_option("--size", size, "Model input size")->capture_default_str();
    cmd->callback([&global] {
        const auto d = data::Dataset::load(project);
        std::vector<fs::path> files;
        for (const auto& im : d.images) files.push_back(d.resolve(project, im));
        data::ResizeCache cache(project, data::ResizeCache::side_for(size));
        TerminalProgress bar(!global.quiet && isatty(2));
        const auto r = cache.build(files, global.threads, bar.callback());
        bar.finish();
        if (!global.quiet)
            fmt::print("Resize cache {}: {} written, {} already current, {} small enough as they are, {} unreadable\n",
                       cache.folder().string(), r.written, r.current, r.small, r.failed);
    });
}

// "3=train" -> (3, "train"); UserError naming the option otherwise.
std::pair<int, std::string> group_and_value(const std::string& option, const std::string& text) {
    const auto eq = text.find('=');
    try {
        if (eq != std::string::npos && eq > 0) return {std::stoi(text.substr(0, eq)), text.substr(eq + 1)};
    } catch (const std::exception&) {
    }
    throw UserError(fmt::format("{} {}: expected GROUP=VALUE", option, text), fmt::format("e.g. {} 3=train", option));
}

const explain::DuplicateGroup& group_of(const explain::DuplicateReport& report, int id) {
    if (const auto* g = report.group(id)) return *g;
    throw UserError(fmt::format("there is no group {} of copies", id),
                    report.groups.empty() ? "this dataset has no copies at this threshold"
                                          : fmt::format("groups are numbered 1 to {}", report.groups.size()));
}

void add_duplicates(CLI::App& data, GlobalOptions& global) {
    static std::string project, csv;
    static double threshold = explain::kDefaultNearThreshold;
    static bool json = false, all = false;
    static std::vector<std::string> keep, relabel;
    static std::vector<int> exclude, exclude_all, undo;
    auto* cmd = data.add_subcommand("duplicates",
                                    "Find exact and near copies within and across train, valid and test (leaks, "
                                    "conflicting labels); act on them with marks that can be undone");
    cmd->add_option("PROJECT", project, "Project folder")->required();
    cmd->add_option("--threshold", threshold,
                    "Near copies: cosine similarity of 8x8 colour thumbnails at least this (above 1: exact copies only)")
        ->capture_default_str()->check(CLI::Range(0.5, 2.0));
    cmd->add_option("--csv", csv, "Also write every group's members as CSV");
    cmd->add_flag("--json", json, "Print the report as JSON");
    cmd->add_flag("--all", all, "Also list the groups your marks have resolved");
    cmd->add_option("--keep", keep, "GROUP=SPLIT: keep the group in train or valid (its copies in the other split are excluded)");
    cmd->add_option("--relabel", relabel, "GROUP=CLASS: give every labelled image of the group this class (a relabel mark)");
    cmd->add_option("--exclude", exclude, "GROUP: exclude the group's labelled images but one");
    cmd->add_option("--exclude-all", exclude_all, "GROUP: exclude all of the group's labelled images");
    cmd->add_option("--undo", undo, "GROUP: take back every mark of the group's images");
    cmd->callback([&global] {
        const bool acts = !keep.empty() || !relabel.empty() || !exclude.empty() || !exclude_all.empty() || !undo.empty();
        // Marks write the manifest: only then is the project's lock needed.
        project::ProjectLock lock;
        if (acts) lock = project::ProjectLock::acquire(project, "marks");
        data::Dataset d = data::Dataset::load(project);
        TerminalProgress bar(!global.quiet && !json && isatty(2));
        explain::DuplicateOptions o;
        o.threshold = threshold;
        o.threads = global.threads;
        o.progress = bar.callback();
        explain::DuplicateReport report = explain::find_duplicates(project, d, o);
        bar.finish();
        if (acts) {
            std::vector<std::string> lines;
            auto note = [&](const std::string& what, const std::vector<std::string>& paths) {
                lines.push_back(fmt::format("{}: {} image(s) changed", what, paths.size()));
            };
            for (const auto& k : keep) {
                const auto [id, split_text] = group_and_value("--keep", k);
                const auto split = data::parse_split(split_text);
                if (!split) throw UserError(fmt::format("--keep {}: no split named '{}'", k, split_text), "use train or valid");
                note(fmt::format("group {} kept in {}", id, split_text), explain::keep_group_in_split(d, group_of(report, id), *split));
            }
            for (const auto& r : relabel) {
                const auto [id, name] = group_and_value("--relabel", r);
                const auto it = std::find(d.classes.begin(), d.classes.end(), name);
                if (it == d.classes.end()) throw UserError(fmt::format("--relabel {}: no class named '{}'", r, name),
                                                           "the classes are listed by: whisker-cli data report " + project);
                note(fmt::format("group {} relabelled {}", id, name),
                     explain::relabel_group(d, group_of(report, id), static_cast<int>(it - d.classes.begin())));
            }
            for (int id : exclude) note(fmt::format("group {}: all but one excluded", id), explain::exclude_group(d, group_of(report, id), true));
            for (int id : exclude_all) note(fmt::format("group {}: all excluded", id), explain::exclude_group(d, group_of(report, id), false));
            for (int id : undo) note(fmt::format("group {}: marks undone", id), explain::undo_group(d, group_of(report, id)));
            d.save(project);
            explain::update_kinds(d, report.groups);
            if (!global.quiet && !json) {
                for (const auto& l : lines) fmt::print("{}\n", l);
                fmt::print("Saved the marks to the manifest (image files untouched); the next fit uses them. Undo: --undo GROUP.\n\n");
            }
        }
        if (!csv.empty()) explain::write_duplicates_csv(csv, project, d, report);
        if (json) fmt::print("{}\n", explain::duplicates_json(d, report));
        else fmt::print("{}", explain::format_duplicates(d, report, all));
    });
}

void add_map(CLI::App& data, GlobalOptions& global) {
    static std::string project, out;
    auto* cmd = data.add_subcommand("map",
                                    "Project every image's pooled body features to 2-D (PCA, then UMAP) with the project's "
                                    "learner, and write the map as CSV");
    cmd->add_option("PROJECT", project, "Project folder (with a learner)")->required();
    cmd->add_option("--out", out, "CSV to write: path, split, actual, predicted, mistake, x, y, pca_x, pca_y")->required();
    cmd->callback([&global] {
        TerminalProgress bar(!global.quiet && isatty(2));
        project::SessionOptions so;
        so.base.threads = global.threads;
        so.progress = [&bar](const std::string& stage, long done, long total) {
            bar.update(Progress{stage, static_cast<std::uint64_t>(std::max(0L, done)), static_cast<std::uint64_t>(std::max(0L, total))});
        };
        project::Session session(project, so);
        if (!session.has_learner())
            throw UserError(session.learner_error().empty() ? "this project has no learner yet" : session.learner_error(),
                            "create one first: whisker-cli fit " + project + " --arch resnet34");
        const explain::DataMap map = explain::data_map(session, so.progress);
        bar.finish();
        explain::write_map_csv(out, project, session.learner().dataset(), map);
        std::size_t mistakes = 0;
        for (const auto& p : map.points) mistakes += p.mistake();
        if (!global.quiet)
            fmt::print("Wrote the map of {} images ({} mistakes) to {}: {}; the first two principal components hold {:.1f}% "
                       "of the variance. Model: {}\n",
                       map.points.size(), mistakes, out, map.method, 100 * map.pca_explained, map.model);
    });
}

}  // namespace

void add_data_commands(CLI::App& app, GlobalOptions& global) {
    auto* data = app.add_subcommand("data", "Prepare and inspect a project's dataset");
    data->require_subcommand(1);
    add_prepare(*data, global);
    add_folds(*data, global);
    add_report(*data, global);
    add_materialize(*data, global);
    add_resize(*data, global);
    add_duplicates(*data, global);
    add_map(*data, global);
    add_cv_command(app, global);   // a command of its own: whisker-cli cv PROJECT (commands_cv.cpp)
}

}  // namespace whisker::cli
