// whisker-cli classify | weights list | weights download
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/loader.h"
#include "whisker/models/arch_stats.h"
#include "whisker/models/weights.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

std::vector<fs::path> image_files(const fs::path& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw UserError("'" + dir.string() + "' is not a folder");
    for (const auto& e : fs::recursive_directory_iterator(dir, ec))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
    std::sort(out.begin(), out.end());
    if (out.empty()) throw UserError("no files in '" + dir.string() + "'");
    return out;
}

void add_classify(CLI::App& app, GlobalOptions& global) {
    struct Args {
        std::string arch, weights, images, out;
        int size = 0, batch_size = 16;
    };
    static Args a;
    auto* cmd = app.add_subcommand("classify", "Run a plain ImageNet classifier on every image of a folder (checks a weights file)");
    cmd->add_option("--arch", a.arch, "Architecture (see weights list)")->required();
    cmd->add_option("--weights", a.weights, "Weights file (.pth or .safetensors); default: the cached pretrained weights");
    cmd->add_option("--images", a.images, "Folder of images")->required();
    cmd->add_option("--out", a.out, "CSV to write: file name, then the 1000 class probabilities")->required();
    cmd->add_option("--size", a.size,
                    "Input size (default: the architecture's); the shorter side is scaled as the weights were "
                    "evaluated (e.g. 256 for 224) and the centre cropped");
    cmd->add_option("--bs", a.batch_size, "Batch size")->capture_default_str();
    cmd->callback([&global] {
        const models::Arch arch = models::parse_arch(a.arch);
        const ComputeDevice device = detect_compute_device();
        TerminalProgress bar(!global.quiet && isatty(2));
        DownloadOptions dl;
        dl.progress = bar.callback();
        const fs::path weights = a.weights.empty() ? models::ensure_pretrained_weights(arch, dl) : fs::path(a.weights);
        auto model = models::create_imagenet_model(arch);
        models::load_torchvision_weights(*model, weights);
        const at::Device dev = device.cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
        model->to(dev);
        model->eval();

        const auto files = image_files(a.images);
        std::vector<data::LoadItem> items;
        for (std::size_t i = 0; i < files.size(); ++i) items.push_back({files[i], {}, i});
        data::LoaderOptions lo;
        lo.batch_size = a.batch_size;
        lo.threads = global.threads;
        // torchvision's evaluation transform of the weights: resize, then centre crop.
        const models::ArchInfo& info = models::arch_info(arch);
        const int size = a.size ? a.size : info.default_size();
        models::check_input_size(arch, size);
        data::AugmentSettings view = data::AugmentSettings::side_on(size);
        view.eval_resize = static_cast<int>(std::lround(size * static_cast<double>(info.eval.resize) / info.eval.crop));
        data::DataLoader loader(items, false, false, view, lo, 1000, false);
        loader.start_epoch(0);

        AtomicFile out(a.out);
        std::string header = "file";
        for (int c = 0; c < 1000; ++c) header += fmt::format(",{}", c);
        out.write(header + "\n");
        torch::NoGradGuard no_grad;
        std::size_t done = 0, failed = 0;
        while (auto batch = loader.next()) {
            for (const auto& f : batch->failures) {
                ++failed;
                fmt::print(stderr, "skipped {}: {}\n", f.path, f.reason);
            }
            if (batch->images.size(0) == 0) continue;
            const at::Tensor probs = model->forward(batch->images.to(dev)).softmax(1).to(at::kCPU).contiguous();
            const float* p = probs.data_ptr<float>();
            for (std::size_t r = 0; r < batch->records.size(); ++r) {
                std::string line = files[batch->records[r]].lexically_relative(a.images).generic_string();
                fmt::memory_buffer buf;
                for (int c = 0; c < 1000; ++c) fmt::format_to(std::back_inserter(buf), ",{:.7g}", p[r * 1000 + static_cast<std::size_t>(c)]);
                out.write(line + fmt::to_string(buf) + "\n");
            }
            done += batch->records.size();
            bar.update({"classifying", done + failed, files.size()});
        }
        out.commit();
        bar.finish();
        if (!global.quiet)
            fmt::print("Classified {} images with {} ({}) into {}{}\n", done, a.arch, device.describe(), a.out,
                       failed ? fmt::format("; {} file{} skipped", failed, failed == 1 ? "" : "s") : "");
    });
}

void add_weights(CLI::App& app, GlobalOptions& global) {
    auto* weights = app.add_subcommand("weights", "Pretrained ImageNet weights (torch hub cache)");
    weights->require_subcommand(1);
    static bool list_json = false;
    auto* list = weights->add_subcommand(
        "list", "Every architecture: parameters, GFLOPs, ImageNet top-1, default size, cached weights, measured speed");
    list->add_flag("--json", list_json, "One JSON object per architecture, one per line");
    list->callback([] {
        const auto speeds = models::read_speed_records();
        auto speed = [&](const std::string& arch, bool train) -> std::optional<models::SpeedRecord> {
            const auto it = speeds.find(arch);
            if (it == speeds.end()) return std::nullopt;
            return train ? it->second.train : it->second.predict;
        };
        if (list_json) {
            for (const auto& a : models::all_architectures()) {
                nlohmann::json j{{"arch", a.name},
                                 {"family", a.family},
                                 {"parameters", a.parameters},
                                 {"gflops", a.gflops},
                                 {"imagenet_top1", a.imagenet_top1},
                                 {"default_size", a.default_size()},
                                 {"eval_resize", a.eval.resize},
                                 {"interpolation", a.eval.interpolation},
                                 {"weights_file", a.weights_file},
                                 {"weights", a.weights_name},
                                 {"cached", models::weights_state(a.arch) == models::WeightsState::Cached}};
                for (const bool train : {true, false})
                    if (const auto r = speed(a.name, train))
                        j[train ? "train_images_per_second" : "predict_images_per_second"] = r->images_per_second;
                fmt::print("{}\n", j.dump());
            }
            return;
        }
        fmt::print("weights cache: {}\n", models::torch_hub_checkpoints_dir().string());
        const bool any_speed = !speeds.empty();
        fmt::print("{:<19} {:<15} {:>8} {:>7} {:>6}  {:<21} {:<15}{}\n", "architecture", "family", "params", "GFLOPs",
                   "top-1", "size (eval resize)", "weights", any_speed ? " train img/s  predict img/s" : "");
        for (const auto& a : models::all_architectures()) {
            std::string speed_cols;
            if (any_speed) {
                auto col = [](const std::optional<models::SpeedRecord>& r) {
                    return r ? fmt::format("{:.1f}", r->images_per_second) : std::string("-");
                };
                speed_cols = fmt::format(" {:>11}  {:>13}", col(speed(a.name, true)), col(speed(a.name, false)));
            }
            fmt::print("{:<19} {:<15} {:>7.1f}M {:>7.2f} {:>5.1f}%  {:<21} {:<15}{}\n", a.name, a.family, a.parameters / 1e6,
                       a.gflops, a.imagenet_top1,
                       fmt::format("{} ({} {})", a.default_size(), a.eval.resize, a.eval.interpolation),
                       models::weights_state(a.arch) == models::WeightsState::Cached ? "cached" : "not downloaded", speed_cols);
        }
        if (any_speed)
            fmt::print("speed: measured on this machine by 'whisker-cli bench train|predict --arch A' ({})\n",
                       models::speed_records_file().string());
        else
            fmt::print("speed: run 'whisker-cli bench train --arch A' and 'bench predict --arch A' to measure it here\n");
    });
    static std::vector<std::string> names;
    auto* download = weights->add_subcommand("download", "Download (and verify) pretrained weights into the cache");
    download->add_option("ARCH", names, "Architectures")->required();
    download->callback([&global] {
        for (const auto& name : names) {
            const models::Arch arch = models::parse_arch(name);
            TerminalProgress bar(!global.quiet && isatty(2));
            DownloadOptions dl;
            dl.progress = bar.callback();
            const fs::path p = models::ensure_pretrained_weights(arch, dl);
            bar.finish();
            if (!global.quiet) fmt::print("{}: {}\n", name, p.string());
        }
    });
}

}  // namespace

void add_model_commands(CLI::App& app, GlobalOptions& global) {
    add_classify(app, global);
    add_weights(app, global);
}

}  // namespace whisker::cli
