#pragma once
// Batches of image tensors for training and prediction.
//
// A DataLoader decodes and transforms images on its own worker threads and hands out batches
// in order through a bounded prefetch queue: at most `prefetch_batches` batches are waiting
// or being built at any time, so memory stays flat however large the dataset. (Unpinned batch
// buffers are reused once the consumer drops a batch: up to prefetch_batches + 2 of them stay
// allocated while the loader lives, which spares the kernel's page faults on every batch.)
//   images: float32 [N, 3, size, size], ImageNet-normalised, CHW (pinned memory on request,
//           for fast copies to a CUDA device)
//   labels: int64 [N] class indices (single-label), float32 [N, C] multi-hot (multi-label),
//           or int64 [N] filled with -1 (unlabelled test images)
// Shuffling is per epoch and seeded; each image's augmentation is drawn from a seed derived
// from (seed, epoch, position), so an epoch is reproducible whatever the thread count.
// drop_last is false: the last batch may be smaller.
// A file that fails to decode (it was fine when the dataset was prepared, but changed since)
// is left out of its batch and listed in Batch::failures; the loader never throws for it.
//
// Threading: one consumer thread calls start_epoch()/next(); the workers are internal. They
// claim a few images at a time in batch order, so all of them build the oldest unfinished
// batch together: an epoch's first batch comes in 1/threads of one worker's time, and its
// last batches leave no worker idle.

#include "whisker/data/dataset.h"
#include "whisker/data/transforms.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::data {

class ResizeCache;

// The six views of fastai 0.7's ImageClassifierData.
enum class View {
    Train,    // train files, training transform, shuffled
    Valid,    // valid files, validation transform
    Fix,      // train files, validation transform, in order (used to precompute activations)
    Aug,      // valid files, training transform (test-time augmentation on valid)
    Test,     // test files, validation transform
    TestAug,  // test files, training transform
};
const char* view_name(View view);
std::optional<View> parse_view(const std::string& name);

struct LoaderOptions {
    int batch_size = 64;
    int threads = 0;                 // decode/transform threads; 0 = all cores
    int prefetch_batches = 0;        // 0 = 2 x threads
    std::uint64_t seed = 42;
    bool dct_scaling = true;         // decode large JPEGs reduced (still >= the size needed)
    bool reduced_jpeg_decoder = true;  // Whisker's decoder for those (jpeg_reduced_decode.h); false: libjpeg-turbo only
    // Page-locked batches make host-to-GPU copies faster (and asynchronous); Auto pins
    // exactly when a CUDA device is present.
    enum class Pinning { Auto, Always, Never };
    Pinning pin_memory = Pinning::Auto;
    const ResizeCache* resize_cache = nullptr;  // read pre-shrunk copies where available
    // Distributed training: this process's share of every epoch (see shard_positions).
    // batch_size is then the per-rank batch. Augmentation seeds use the position in the whole
    // epoch, so the ranks together see exactly the images one process would.
    int shard_rank = 0;
    int shard_count = 1;
    // Time each stage of the workers' work (DataLoader::profile); a few clock reads per image.
    bool profile = false;
};

// Where the workers' time went (LoaderOptions::profile): seconds summed over all workers, per
// stage in pipeline order. Steps done in one pass are one stage (the crop, flip, lighting and
// normalisation write the batch together).
struct LoaderProfile {
    struct Stage {
        std::string name;
        double seconds = 0;
    };
    std::vector<Stage> stages;
    double total = 0;            // worker seconds spent building batches: the stages and what no stage covers
    std::size_t images = 0;      // images built (failed ones included)
};

// The positions in an epoch of n items that rank `rank` of `count` visits, in order.
// Shuffled views (`interleaved`): PyTorch's DistributedSampler — the epoch is padded to a
// multiple of `count` by repeating its first positions, and rank r takes r, r+count, …; every
// rank has the same number of items (so the same number of batches), and with a per-rank
// batch of B/count, batch k of all ranks together is batch k of one process with batch B.
// Unshuffled views: contiguous blocks in rank order, no padding (sizes differ by at most one),
// so results gathered in rank order are in the dataset's order.
std::vector<std::size_t> shard_positions(std::size_t n, int rank, int count, bool interleaved);

struct LoadItem {
    std::filesystem::path path;
    std::vector<int> labels;
    std::size_t record = 0;          // index in Dataset::images
};

struct Batch {
    at::Tensor images;
    at::Tensor labels;
    std::vector<std::size_t> records;   // Dataset::images index of each row
    std::vector<SkippedFile> failures;  // files left out of this batch, with the reason
};

class DataLoader {
public:
    DataLoader(std::vector<LoadItem> items, bool training_transform, bool shuffle, AugmentSettings augment,
               LoaderOptions options, int num_classes, bool multi_label);
    ~DataLoader();
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    std::size_t size() const;                 // images per epoch (this rank's share when sharded)
    std::size_t batches_per_epoch() const;
    const AugmentSettings& augment() const;

    // Starts epoch `epoch` (any previous epoch's unread batches are dropped). With
    // `first_batch` > 0 the epoch begins there (resuming an interrupted epoch): the batches
    // are the same as if the earlier ones had been read.
    void start_epoch(int epoch, std::size_t first_batch = 0);
    // The next batch of the current epoch in order; nullopt once the epoch is exhausted.
    std::optional<Batch> next();
    // The order in which epoch `epoch` visits the items (indices into the item list; this
    // rank's share when sharded, padding included).
    std::vector<std::size_t> epoch_order(int epoch) const;
    // The stages' times since construction or reset_profile() (all zero unless
    // LoaderOptions::profile); batches still being built are not in it yet.
    LoaderProfile profile() const;
    void reset_profile();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The loader for one view of a prepared dataset (excluded images are left out).
std::unique_ptr<DataLoader> make_loader(const Dataset& dataset, const std::filesystem::path& project, View view,
                                        const AugmentSettings& augment, const LoaderOptions& options);

}  // namespace whisker::data
