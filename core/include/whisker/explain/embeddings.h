#pragma once
// Embeddings: the body's pooled features of every image, and the map of the data made of them.
//
// compute_embeddings() runs every image in use (train, valid, test; excluded ones left out)
// through the learner's model in eval mode, in fp32, with the validation transform, in the
// learner's batches, and keeps for each image the body's pooled activations (what precompute
// caches: ClassifierModel::pooled_features) and the head's most probable class. The result is
// cached in PROJECT/cache/explain/embeddings-<key>.safetensors, where the key names the
// learner state (project::LearnerState: weights + data), so it is computed once per state;
// the file is written atomically.
//
// data_map() projects the features to 2-D for the Inspect page's map (projection.h: PCA to 50
// dimensions, then UMAP) and caches the coordinates next to the features
// (map-<key>.json), so reopening the page after a restart costs nothing.
//
// Threading: these run on the thread that owns the learner (the workbench's training thread);
// the results are plain values, safe to hand to the UI. `stop` is checked between batches,
// between the stages (embeddings, PCA, UMAP) and every few epochs of UMAP's layout
// (projection.h); when it is set, Cancelled (common/errors.h) is thrown and nothing more is
// written: each cache file is either complete (written atomically once its stage is done) or
// absent, so the next request continues from the last finished stage.

#include "whisker/project/session.h"

#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace whisker::explain {

struct Embeddings {
    project::LearnerState origin;        // the learner state they came from
    std::string model;                   // "resnet34 at 224 px, 5 epochs"
    int dim = 0;                         // features per image (head_inputs)
    std::vector<std::size_t> records;    // Dataset::images index of each row
    std::vector<float> features;         // [rows * dim], row-major
    std::vector<int> predicted;          // the head's most probable class per row
    std::size_t rows() const { return records.size(); }
};

// The cache file of a learner state's embeddings (whether or not it exists).
std::filesystem::path embeddings_cache_file(const std::filesystem::path& project, const project::LearnerState& state);

// The cached embeddings of `state`, or nothing (missing, damaged or of another state).
std::optional<Embeddings> load_embeddings(const std::filesystem::path& project, const project::LearnerState& state);

// Loads the cached embeddings of the session's current state, or computes and caches them.
// UserError when the project has no learner. `progress` gets (stage, batches done, total).
Embeddings embeddings_of(project::Session& session, const train::ProgressCallback& progress = {},
                         const std::atomic<bool>* stop = nullptr);

// One point of the map per image in use.
struct MapPoint {
    std::size_t record = 0;              // Dataset::images index
    float x = 0, y = 0;                  // UMAP coordinates (arbitrary units)
    float pca_x = 0, pca_y = 0;          // the first two principal components
    data::Split split = data::Split::Train;
    int actual = -1;                     // first label, -1 for test images
    int predicted = -1;                  // the head's most probable class
    bool mistake() const { return actual >= 0 && predicted != actual; }
};

struct DataMap {
    project::LearnerState origin;
    std::string model;
    std::string method;                  // "UMAP (15 neighbours) of the first 50 principal components"
    std::vector<MapPoint> points;
    double pca_explained = 0;            // share of the variance the 2 principal components hold
};

// The map of the session's current state: from the cache, or computed (embeddings included)
// and cached. `dataset` gives labels and splits (the session's, marks included).
DataMap data_map(project::Session& session, const train::ProgressCallback& progress = {},
                 const std::atomic<bool>* stop = nullptr);
// The map of embeddings already computed (no cache involved). `progress` gets ("projecting to
// 2-D", epochs done, total); `stop` as above.
DataMap data_map_of(const Embeddings& embeddings, const data::Dataset& dataset, const train::ProgressCallback& progress = {},
                    const std::atomic<bool>* stop = nullptr);

// One CSV row per point: path (absolute), split, actual, predicted, mistake, x, y, pca_x,
// pca_y. Atomic.
void write_map_csv(const std::filesystem::path& file, const std::filesystem::path& project, const data::Dataset& dataset,
                   const DataMap& map);

}  // namespace whisker::explain
