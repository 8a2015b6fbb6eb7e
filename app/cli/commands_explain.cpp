// whisker-cli explain: where the model looked (Grad-CAM, whisker/explain/gradcam.h) on the
// images it gets wrong, or on images named on the command line, as overlay PNGs and a contact
// sheet with captions.
//
// It reads the project and writes only under --out, so it takes no project lock: it can run
// while another program trains (it sees the learner as last saved).
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/image_decode.h"
#include "whisker/explain/gradcam.h"
#include "whisker/explain/render.h"
#include "whisker/project/session.h"
#include "whisker/train/learner.h"
#include "whisker/train/precision.h"

#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <opencv2/core.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <map>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

std::atomic<bool> g_explain_stop{false};
extern "C" void on_explain_sigint(int) { g_explain_stop = true; }

struct ExplainArgs {
    std::string project;
    std::string split = "valid";
    int mistakes = 0;                 // 0: not given
    std::vector<std::string> images;
    std::string cls;                  // --class: a name or index; empty = predicted (+ actual)
    std::string out;
    int tta = 0;
    double opacity = 0.5;
    int max_side = 512;
    std::string precision = "auto";
};

// "cat.12.jpg" -> "cat.12"; characters other than letters, digits, '.', '-' and '_' -> '_'.
std::string file_safe(const std::string& s) {
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        out += (std::isalnum(u) || c == '.' || c == '-' || c == '_') ? c : '_';
    }
    return out.empty() ? "image" : out;
}

int class_index(const data::Dataset& d, const std::string& name) {
    for (std::size_t k = 0; k < d.classes.size(); ++k)
        if (d.classes[k] == name) return static_cast<int>(k);
    std::string names;
    for (std::size_t k = 0; k < d.classes.size() && k < 20; ++k) names += (k ? ", " : "") + d.classes[k];
    if (d.classes.size() > 20) names += ", …";
    throw UserError("'" + name + "' is not one of the project's classes", "use one of " + names);
}

// The prediction rows of the images named on the command line: a path (absolute or relative
// to the current folder), the path as the dataset records it, or a file name of the split.
std::vector<std::size_t> rows_of_images(const std::vector<std::string>& images, const fs::path& project,
                                        const data::Dataset& d, const train::Predictions& p, const std::string& split) {
    std::map<std::string, std::size_t> by_path, by_name;
    std::map<std::string, int> name_count;
    for (std::size_t row = 0; row < p.records.size(); ++row) {
        const auto& im = d.images[p.records[row]];
        std::error_code ec;
        by_path[fs::weakly_canonical(d.resolve(project, im), ec).string()] = row;
        by_path[im.path] = row;
        const std::string name = fs::path(im.path).filename().string();
        by_name[name] = row;
        ++name_count[name];
    }
    std::vector<std::size_t> rows;
    for (const auto& file : images) {
        std::error_code ec;
        const std::string canonical = fs::weakly_canonical(fs::path(file), ec).string();
        if (auto it = by_path.find(canonical); !ec && it != by_path.end()) {
            rows.push_back(it->second);
        } else if (auto it2 = by_path.find(file); it2 != by_path.end()) {
            rows.push_back(it2->second);
        } else if (auto it3 = by_name.find(fs::path(file).filename().string()); it3 != by_name.end()) {
            if (name_count[it3->first] > 1)
                throw UserError("'" + file + "': several " + split + " images have that file name", "give its path");
            rows.push_back(it3->second);
        } else {
            throw UserError("'" + file + "' is not one of the project's " + split + " images (excluded images are not predicted)",
                            "give a path or file name of an image of --split " + split);
        }
    }
    return rows;
}

void run_explain(const ExplainArgs& a, const GlobalOptions& g) {
    const auto split = data::parse_split(a.split);
    if (!split || *split == data::Split::Train) throw UserError("--split must be valid or test");
    if (a.out.empty()) throw UserError("--out is required", "name a folder for the PNGs, e.g. --out explained");
    if (!(a.opacity >= 0 && a.opacity <= 1)) throw UserError("--opacity must be between 0 and 1");
    const bool by_mistakes = a.images.empty();
    if (by_mistakes && *split == data::Split::Test)
        throw UserError("the test images have no labels, so there are no mistakes to find",
                        "name test images with --images FILE…, or use --split valid");
    project::SessionOptions so;
    so.base.threads = g.threads;
    so.base.precision = train::parse_precision(a.precision);
    train::resolve_precision(so.base.precision, detect_compute_device().cuda);
    TerminalProgress bar(!g.quiet && isatty(2));
    so.progress = [&bar](const std::string& stage, long done, long total) {
        bar.update({stage, static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(total)});
    };
    project::Session session(a.project, so);
    if (!session.has_dataset()) session.dataset();   // throws with what to do
    if (!session.has_learner())
        throw UserError(session.learner_error().empty() ? "this project has no learner yet" : session.learner_error(),
                        "train one first (whisker-cli fit " + a.project + ")");
    train::Learner& learner = session.learner();
    if (!g.quiet) fmt::print(stderr, "Learner: {}\n", session.describe_learner());
    std::signal(SIGINT, on_explain_sigint);

    const auto& sp = session.predict(*split, a.tta, train::TtaMix::Mean, &g_explain_stop);
    bar.finish();
    const train::Predictions& p = *sp.predictions;
    const data::Dataset& d = *sp.dataset;

    std::vector<std::size_t> rows;
    if (by_mistakes) {
        const std::size_t want = static_cast<std::size_t>(a.mistakes > 0 ? a.mistakes : 16);
        for (std::size_t row : p.top_losses(p.records.size()))
            if (p.actual[row] >= 0 && p.actual[row] != p.predicted[row] && rows.size() < want) rows.push_back(row);
        if (rows.empty()) {
            fmt::print("The model gets every one of the {} {} images right: no mistakes to explain (name images with --images).\n",
                       p.records.size(), a.split);
            return;
        }
    } else {
        rows = rows_of_images(a.images, session.project(), d, p, a.split);
    }
    const int fixed_class = a.cls.empty() ? -1 : class_index(d, a.cls);
    std::vector<explain::ExplainRequest> requests;
    for (std::size_t row : rows) {
        explain::ExplainRequest r;
        r.record = p.records[row];
        if (fixed_class >= 0) {
            r.classes = {fixed_class};
        } else {
            r.classes = {p.predicted[row]};
            if (p.actual[row] >= 0 && p.actual[row] != p.predicted[row]) r.classes.push_back(p.actual[row]);
        }
        requests.push_back(std::move(r));
    }
    explain::ExplainOptions eo;
    eo.threads = g.threads;
    eo.batch_size = 16;
    eo.stop = &g_explain_stop;
    eo.progress = [&bar](std::size_t done, std::size_t total) { bar.update({"heatmaps", done, total}); };
    const auto started = std::chrono::steady_clock::now();
    const auto explained = explain::explain_images(learner, d, requests, eo);
    const double heat_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    bar.finish();

    const fs::path out_dir = a.out;
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) throw UserError("cannot create '" + out_dir.string() + "': " + ec.message());
    auto class_name = [&](int k) { return k >= 0 ? d.classes[static_cast<std::size_t>(k)] : std::string("-"); };
    std::vector<explain::SheetTile> tiles;
    std::string index = "rank,image,actual,predicted,probability,loss,class,heat_probability,overlay\n";
    int written = 0;
    for (std::size_t i = 0; i < explained.size(); ++i) {
        const auto& e = explained[i];
        const std::size_t row = rows[i];
        const auto& im = d.images[e.record];
        const fs::path file = fs::absolute(d.resolve(session.project(), im));
        const std::string stem = fmt::format("{:03d}_{}", i + 1, file_safe(fs::path(im.path).stem().string()));
        const double probability = p.probs[static_cast<int64_t>(row)][p.predicted[row]].item<double>();
        std::string head = p.actual[row] >= 0
                               ? fmt::format("{} -> {}  p={:.3f}  loss {:.2f}", class_name(p.actual[row]), class_name(p.predicted[row]),
                                             probability, p.losses[row])
                               : fmt::format("predicted {}  p={:.3f}", class_name(p.predicted[row]), probability);
        explain::SheetTile tile;
        tile.caption = {head, fs::path(im.path).filename().string()};
        if (!e.error.empty()) {
            fmt::print(stderr, "warning: {} could not be read: {}\n", file.string(), e.error);
            tile.caption.push_back("unreadable: " + e.error);
            tiles.push_back(std::move(tile));
            continue;
        }
        cv::Mat picture;
        try {
            data::DecodeOptions dopt;
            dopt.min_shorter_side = a.max_side;   // no need for more pixels than the PNG keeps
            picture = explain::downscaled(data::decode_image_file(file, dopt).rgb, a.max_side);
        } catch (const std::exception& ex) {
            fmt::print(stderr, "warning: {} could not be read: {}\n", file.string(), ex.what());
            continue;
        }
        std::vector<cv::Mat> panels;
        std::string which;
        for (const auto& m : e.maps) {
            const cv::Mat overlay = explain::overlay_heatmap(picture, m, e.crop, a.opacity);
            const fs::path png = out_dir / (stem + "_" + file_safe(class_name(m.cls)) + ".png");
            explain::write_png(png, overlay);
            ++written;
            panels.push_back(overlay);
            which += (which.empty() ? "" : " | ") + class_name(m.cls);
            index += fmt::format("{},\"{}\",{},{},{:.6f},{:.6f},{},{:.6f},{}\n", i + 1, file.string(), class_name(p.actual[row]),
                                 class_name(p.predicted[row]), probability, p.losses[row], class_name(m.cls), m.probability,
                                 png.filename().string());
        }
        // Mistakes show both maps side by side: why the predicted class, and what looked like the actual one.
        if (panels.size() > 1) {
            cv::Mat gap(picture.rows, std::max(2, picture.cols / 40), CV_8UC3, cv::Scalar(255, 255, 255));
            cv::Mat joined = panels[0];
            for (std::size_t k = 1; k < panels.size(); ++k) cv::hconcat(std::vector<cv::Mat>{joined, gap, panels[k]}, joined);
            tile.image = joined;
        } else {
            tile.image = panels.front();
        }
        tile.caption.push_back("heat: " + which);
        tiles.push_back(std::move(tile));
    }
    explain::SheetLayout layout;
    layout.tile_side = 256;
    // Two maps side by side (mistakes without --class) get tiles twice as wide.
    const bool pairs = std::any_of(explained.begin(), explained.end(), [](const auto& e) { return e.maps.size() > 1; });
    layout.tile_width = pairs ? 2 * layout.tile_side : layout.tile_side;
    const fs::path sheet = out_dir / "contact_sheet.png";
    explain::write_png(sheet, explain::contact_sheet(tiles, layout));
    write_file_atomically(out_dir / "explain.csv", index);
    if (!g.quiet) {
        fmt::print("Explained {} {} image{}{} with {}: {} overlay PNG{} and the contact sheet {} ({} tiles), listed in {}\n",
                   tiles.size(), a.split, tiles.size() == 1 ? "" : "s", by_mistakes ? " (the highest-loss mistakes)" : "",
                   sp.model, written, written == 1 ? "" : "s", sheet.string(), tiles.size(), (out_dir / "explain.csv").string());
        fmt::print("Heatmaps: {} image{} in {:.1f} s ({} device, float32)\n", requests.size(), requests.size() == 1 ? "" : "s",
                   heat_seconds, learner.device().is_cuda() ? "CUDA" : "CPU");
        if (a.tta > 0) fmt::print("The captions are the TTA predictions; the heatmaps are of the plain (un-augmented) view.\n");
    }
}

}  // namespace

void add_explain_commands(CLI::App& app, GlobalOptions& global) {
    static ExplainArgs a;
    auto* cmd = app.add_subcommand(
        "explain",
        "Where the model looked: Grad-CAM heatmaps of the mistakes (or of --images) as overlay PNGs and a contact sheet");
    cmd->add_option("PROJECT", a.project, "Project folder with a trained learner")->required();
    cmd->add_option("--split", a.split, "valid or test")->capture_default_str();
    auto* mistakes = cmd->add_option("--mistakes", a.mistakes,
                                     "The N highest-loss mistakes of the valid split (the default, with N = 16)")
                         ->check(CLI::Range(1, 100000))
                         ->option_text("N");
    cmd->add_option("--images", a.images, "These images instead (paths, or file names of the split)")
        ->excludes(mistakes)
        ->option_text("FILE...");
    cmd->add_option("--class", a.cls,
                    "Explain this class (a class name) for every image; default: the predicted class, and for a "
                    "mistake also the actual class, side by side");
    cmd->add_option("--out", a.out, "Folder for the PNGs, contact_sheet.png and explain.csv")->required();
    cmd->add_option("--tta", a.tta, "Predict with this many augmented passes too (captions); heatmaps use the plain view")
        ->check(CLI::Range(0, 64));
    cmd->add_option("--opacity", a.opacity, "Opacity of the heatmap over the image, 0 to 1")->capture_default_str();
    cmd->add_option("--max-side", a.max_side, "Longer side of the overlay PNGs, px")->capture_default_str()->check(CLI::Range(64, 8192));
    cmd->add_option("--precision", a.precision, "Arithmetic of the predictions: auto, fp32, bf16, fp16 (heatmaps are fp32)")
        ->capture_default_str();
    cmd->callback([&global] { run_explain(a, global); });
}

}  // namespace whisker::cli
