// whisker-cli data prepare | report | materialize | resize
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/data/dataset.h"
#include "whisker/data/prepare.h"
#include "whisker/project/project_lock.h"
#include "whisker/data/report.h"
#include "whisker/data/resize_cache.h"

#include <fmt/format.h>

#include <optional>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

struct PrepareArgs {
    std::string project, source, images;
    std::optional<int> valid_per_class;
    std::optional<double> valid_frac;
    std::uint64_t seed = 42;
};

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
        const data::Dataset d = data::prepare_dataset(o);
        bar.finish();
        if (global.quiet) return;
        fmt::print("Prepared {}: {} classes, {} train, {} valid, {} test images; {} files skipped\n", a.project,
                   d.classes.size(), d.count(data::Split::Train), d.count(data::Split::Valid), d.count(data::Split::Test),
                   d.skipped.size());
        for (const auto& w : d.warnings) fmt::print("warning: {}\n", w);
        if (!d.skipped.empty()) fmt::print("See why with: whisker-cli data report {}\n", a.project);
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

}  // namespace

void add_data_commands(CLI::App& app, GlobalOptions& global) {
    auto* data = app.add_subcommand("data", "Prepare and inspect a project's dataset");
    data->require_subcommand(1);
    add_prepare(*data, global);
    add_report(*data, global);
    add_materialize(*data, global);
    add_resize(*data, global);
}

}  // namespace whisker::cli
