#pragma once
// Projections of high-dimensional features to a few dimensions: PCA and UMAP.
//
// The map of the data uses UMAP (McInnes et al. 2018) on the first 50 principal components
// rather than t-SNE: its cost per epoch is linear in the number of points (a k-nearest-
// neighbour graph and negative sampling, no all-pairs or Barnes-Hut forces), so 20,000 images
// map in seconds on 2 cores, and it keeps more of the global layout (where classes sit
// relative to each other), which is what "a cluster of one class inside another's" needs.
// The neighbour graph is exact (blocked matrix products), the layout starts from the PCA
// coordinates (deterministic, no spectral step), and the optimisation is single-threaded and
// seeded: the same features and options give the same map, bit for bit.
// Plain functions on row-major float arrays; thread-safe.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace whisker::explain {

struct PcaResult {
    std::vector<float> coords;           // [n * components], row-major
    int components = 0;
    std::vector<double> explained;       // share of the total variance of each component
};

// Projects `n` rows of `dim` features (row-major) on their first `components` principal
// components (fewer when there are fewer rows or dimensions). Centres the data first.
PcaResult pca(const float* rows, std::size_t n, int dim, int components);

struct UmapOptions {
    int neighbours = 15;                 // size of the local neighbourhood (UMAP's n_neighbors)
    double min_dist = 0.1;               // how tightly points may pack (UMAP's min_dist)
    int epochs = 0;                      // 0: 500 below 10,000 points, else 200 (as umap-learn)
    int negative_samples = 5;
    std::uint64_t seed = 42;
    // Stop: checked between blocks of the neighbour search and every kStopCheckEpochs epochs of
    // the layout (a few milliseconds apart on 20,000 points); when set, umap_2d throws
    // whisker::Cancelled (common/errors.h). Not part of the result: a map that finishes is the
    // same with or without it.
    const std::atomic<bool>* stop = nullptr;
    // Called (on the calling thread) with the epochs done and the total, at most every
    // kStopCheckEpochs epochs.
    std::function<void(int done, int total)> progress;
};

// How often the layout's epochs loop looks at UmapOptions::stop and reports progress.
constexpr int kStopCheckEpochs = 5;

// 2-D UMAP embedding of `n` rows of `dim` features: [n * 2], row-major. Fewer than 3 rows are
// placed on a line. Throws whisker::Cancelled when options.stop is set (see there).
std::vector<float> umap_2d(const float* rows, std::size_t n, int dim, const UmapOptions& options = {});

}  // namespace whisker::explain
