#include "whisker/models/weights.h"

#include "whisker/common/errors.h"
#include "whisker/common/hash.h"

#include "whisker/common/environment.h"

#include <cstdlib>
#include <regex>

namespace fs = std::filesystem;

namespace whisker::models {

fs::path torch_hub_checkpoints_dir() {
    fs::path torch_home = environment_variable("TORCH_HOME");
    if (torch_home.empty()) {
        fs::path cache = environment_variable("XDG_CACHE_HOME");
        if (cache.empty()) cache = fs::path(environment_variable("HOME")) / ".cache";
        torch_home = cache / "torch";
    }
    return torch_home / "hub" / "checkpoints";
}

std::string weights_base_url() {
    std::string base = environment_variable("WHISKER_WEIGHTS_URL");
    if (base.empty()) base = "https://download.pytorch.org/models";
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base;
}

std::string weights_url(Arch arch) { return weights_base_url() + "/" + arch_info(arch).weights_file; }

fs::path cached_weights_path(Arch arch) { return torch_hub_checkpoints_dir() / arch_info(arch).weights_file; }

WeightsState weights_state(Arch arch) {
    std::error_code ec;
    return fs::is_regular_file(cached_weights_path(arch), ec) ? WeightsState::Cached : WeightsState::NotDownloaded;
}

bool matches_hash_prefix(const fs::path& file, const std::string& prefix) {
    return sha256_file(file).compare(0, prefix.size(), prefix) == 0;
}

void fetch_verified(const std::string& url, const fs::path& dest, const std::string& sha256_prefix,
                    const DownloadOptions& options) {
    const fs::path staging = dest.string() + ".download";
    download_file(url, staging, options);
    std::error_code ec;
    if (!matches_hash_prefix(staging, sha256_prefix)) {
        fs::remove(staging, ec);
        throw UserError("the downloaded " + dest.filename().string() + " is corrupt (its SHA-256 does not start with " +
                            sha256_prefix + "); it was deleted",
                        "run again to download it anew");
    }
    fs::rename(staging, dest, ec);
    if (ec) throw UserError("cannot move the download into '" + dest.string() + "': " + ec.message());
}

fs::path ensure_pretrained_weights(Arch arch, const DownloadOptions& options) {
    const ArchInfo& info = arch_info(arch);
    const fs::path dest = cached_weights_path(arch);
    std::error_code ec;
    if (fs::is_regular_file(dest, ec)) return dest;
    const std::string url = weights_url(arch);
    const std::string put_it =
        "download " + url + " yourself and put it at " + dest.string() + " (the torch hub cache, shared with PyTorch)";
    DownloadOptions o = options;
    o.what = info.name + " ImageNet weights (" + info.weights_file + ")";
    try {
        fetch_verified(url, dest, info.sha256_prefix(), o);
    } catch (const Cancelled&) {
        throw;
    } catch (const UserError& e) {
        throw UserError(std::string("the pretrained weights for ") + info.name + " are not available: " + e.what(),
                        put_it + "; or train without them (whisker-cli: --no-pretrained; the workbench: untick \"ImageNet weights\")");
    }
    return dest;
}

LoadReport load_torchvision_weights(ImageNetModel& model, StateDict weights, const std::string& source) {
    if (model.info().arch == Arch::DenseNet121) {
        // torchvision's densenet._load_state_dict: "denselayer1.norm.1.weight" -> "denselayer1.norm1.weight"
        static const std::regex old_key(R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
        for (auto& [name, t] : weights) {
            std::smatch m;
            if (std::regex_match(name, m, old_key)) name = m[1].str() + m[2].str();
        }
    }
    if (!model.has_classifier()) {
        const std::string& prefix = model.info().classifier_prefix;
        StateDict body;
        for (auto& kv : weights)
            if (kv.first.compare(0, prefix.size(), prefix) != 0) body.push_back(std::move(kv));
        weights = std::move(body);
    }
    return load_state_dict(model, weights, source);
}

LoadReport load_torchvision_weights(ImageNetModel& model, const fs::path& file) {
    return load_torchvision_weights(model, read_weights_file(file), file.string());
}

}  // namespace whisker::models
