#pragma once
// Pretrained ImageNet weights: where they are cached, how they are fetched, how they load.
//
// The cache is torch hub's, so files a user already downloaded with PyTorch are reused:
// $TORCH_HOME/hub/checkpoints, with TORCH_HOME defaulting to $XDG_CACHE_HOME/torch, then
// ~/.cache/torch. Files come from https://download.pytorch.org/models under torchvision's
// names; WHISKER_WEIGHTS_URL replaces that base (mirrors, tests). A download is verified
// against the SHA-256 prefix in the file name before it enters the cache.

#include "whisker/common/http.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/zoo.h"

#include <filesystem>
#include <string>

namespace whisker::models {

std::filesystem::path torch_hub_checkpoints_dir();
std::string weights_base_url();
std::string weights_url(Arch arch);
std::filesystem::path cached_weights_path(Arch arch);

enum class WeightsState { Cached, NotDownloaded };
WeightsState weights_state(Arch arch);

// The cached weights file, downloading it first when needed. Offline (or on any download
// failure) the UserError says which file is needed, where it comes from and where to put it.
// A file whose hash does not match is deleted and reported.
std::filesystem::path ensure_pretrained_weights(Arch arch, const DownloadOptions& options = {});

// Downloads `url` to `dest` (resumable, retried; see http.h) and checks that the file's
// SHA-256 starts with `sha256_prefix`; a mismatch deletes the file and throws UserError.
void fetch_verified(const std::string& url, const std::filesystem::path& dest, const std::string& sha256_prefix,
                    const DownloadOptions& options);

// True when the file's SHA-256 starts with `prefix`.
bool matches_hash_prefix(const std::filesystem::path& file, const std::string& prefix);

// Loads torchvision weights into `model`, strictly. When the model was built without its
// ImageNet classifier, the file's classifier keys are left out. Old DenseNet files
// ("norm.1" instead of "norm1") are renamed the way torchvision does.
LoadReport load_torchvision_weights(ImageNetModel& model, const std::filesystem::path& file);
LoadReport load_torchvision_weights(ImageNetModel& model, StateDict weights, const std::string& source);

}  // namespace whisker::models
