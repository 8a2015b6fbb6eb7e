// whisker-cli classify | weights list | weights download
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/loader.h"
#include "whisker/models/weights.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <fmt/format.h>

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
        int size = 224, batch_size = 16;
    };
    static Args a;
    auto* cmd = app.add_subcommand("classify", "Run a plain ImageNet classifier on every image of a folder (checks a weights file)");
    cmd->add_option("--arch", a.arch, "Architecture (resnet18, resnet34, …, vgg16_bn, densenet121)")->required();
    cmd->add_option("--weights", a.weights, "Weights file (.pth or .safetensors); default: the cached pretrained weights");
    cmd->add_option("--images", a.images, "Folder of images")->required();
    cmd->add_option("--out", a.out, "CSV to write: file name, then the 1000 class probabilities")->required();
    cmd->add_option("--size", a.size, "Input size (validation transform: shorter side, then centre crop)")->capture_default_str();
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
        data::DataLoader loader(items, false, false, data::AugmentSettings::side_on(a.size), lo, 1000, false);
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
    auto* list = weights->add_subcommand("list", "Show each architecture's weights file and whether it is cached");
    list->callback([] {
        fmt::print("cache: {}\n", models::torch_hub_checkpoints_dir().string());
        for (const auto& info : models::all_architectures())
            fmt::print("{:<16} {:<30} {}\n", info.name, info.weights_file,
                       models::weights_state(info.arch) == models::WeightsState::Cached ? "cached" : "not downloaded");
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
