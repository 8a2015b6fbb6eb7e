#pragma once
// Reading and writing weight files: PyTorch checkpoints and safetensors.
//
// PyTorch checkpoints are read in both formats torch.save writes: the zip format (PyTorch
// >= 1.6) and the legacy format (a stream of pickles followed by raw storages), which older
// torchvision files such as vgg16_bn-6c64b313.pth use. The payload is a state dict — an
// OrderedDict of tensors, with or without `_metadata` — read by Whisker's own reader of the
// pickle subset state dicts use (LibTorch 1.13's pickle_load returns None for an OrderedDict).
// A checkpoint that wraps its state dict ({"state_dict": …} or {"model": …}) is unwrapped.
// safetensors files are read and written (JSON header, little-endian data).
//
// Errors are UserError naming the file and what is wrong (truncated, not a checkpoint,
// unsupported content). Thread-safe: no shared state.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace whisker::models {

// Name -> tensor, in file order.
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

// The tensor called `name`; throws UserError naming it when absent.
const at::Tensor& find_tensor(const StateDict& state, const std::string& name);

StateDict read_torch_checkpoint(const std::filesystem::path& path);
StateDict read_safetensors(const std::filesystem::path& path, std::map<std::string, std::string>* metadata = nullptr);
// Writes atomically; tensors are made contiguous CPU copies first.
void write_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// Either format, told apart by content (not by extension).
StateDict read_weights_file(const std::filesystem::path& path);

// The state dict of a module: parameters and buffers, with their dotted names.
StateDict state_dict_of(const torch::nn::Module& module);

struct LoadReport {
    std::vector<std::string> filled_defaults;   // e.g. num_batches_tracked absent from old files
};

// Copies `weights` into `module`. Strict: every parameter and buffer of the module must be
// present with the same shape, and nothing else may be in `weights`, except BatchNorm's
// num_batches_tracked which old files lack (set to 0, as PyTorch does). Otherwise throws
// UserError listing the missing, unexpected and mis-shaped keys. `source` names the file in
// messages.
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& weights, const std::string& source);

}  // namespace whisker::models
