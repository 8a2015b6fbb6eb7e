// The map of the data: PCA and UMAP separate features with a known cluster structure, and the
// learner's embeddings of every split are computed once per learner state and cached.
#include "whisker/explain/embeddings.h"
#include "whisker/explain/projection.h"

#include "whisker/common/errors.h"
#include "whisker/common/random.h"
#include "whisker/data/prepare.h"

#include "test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>

namespace fs = std::filesystem;
using namespace whisker;

namespace {

// `per_cluster` points around each of `clusters` random centres in `dim` dimensions.
std::vector<float> clustered(int clusters, int per_cluster, int dim, double spread, std::vector<int>& label,
                             std::uint64_t seed = 3) {
    Rng rng(seed);
    std::vector<std::vector<double>> centres(static_cast<std::size_t>(clusters), std::vector<double>(static_cast<std::size_t>(dim)));
    for (auto& c : centres)
        for (auto& v : c) v = rng.normal() * 4;
    std::vector<float> rows;
    label.clear();
    for (int i = 0; i < per_cluster; ++i)
        for (int c = 0; c < clusters; ++c) {   // interleaved: no ordering to lean on
            for (int k = 0; k < dim; ++k)
                rows.push_back(static_cast<float>(centres[static_cast<std::size_t>(c)][static_cast<std::size_t>(k)] + rng.normal() * spread));
            label.push_back(c);
        }
    return rows;
}

// Share of points whose nearest other point in 2-D has their cluster.
double neighbour_agreement(const std::vector<float>& xy, const std::vector<int>& label) {
    const std::size_t n = label.size();
    int agree = 0;
    for (std::size_t i = 0; i < n; ++i) {
        double best = 1e300;
        std::size_t nearest = i;
        for (std::size_t j = 0; j < n; ++j) {
            if (j == i) continue;
            const double dx = xy[2 * i] - xy[2 * j], dy = xy[2 * i + 1] - xy[2 * j + 1];
            if (dx * dx + dy * dy < best) best = dx * dx + dy * dy, nearest = j;
        }
        agree += label[nearest] == label[i];
    }
    return static_cast<double>(agree) / static_cast<double>(n);
}

// Mean distance between cluster centres over the mean distance of points to their centre.
double separation(const std::vector<float>& xy, const std::vector<int>& label, int clusters) {
    std::vector<double> cx(static_cast<std::size_t>(clusters)), cy(cx.size()), count(cx.size());
    for (std::size_t i = 0; i < label.size(); ++i) {
        const auto c = static_cast<std::size_t>(label[i]);
        cx[c] += xy[2 * i];
        cy[c] += xy[2 * i + 1];
        ++count[c];
    }
    for (std::size_t c = 0; c < cx.size(); ++c) cx[c] /= count[c], cy[c] /= count[c];
    double within = 0, between = 0;
    int pairs = 0;
    for (std::size_t i = 0; i < label.size(); ++i) {
        const auto c = static_cast<std::size_t>(label[i]);
        within += std::hypot(xy[2 * i] - cx[c], xy[2 * i + 1] - cy[c]);
    }
    within /= static_cast<double>(label.size());
    for (std::size_t a = 0; a < cx.size(); ++a)
        for (std::size_t b = a + 1; b < cx.size(); ++b, ++pairs) between += std::hypot(cx[a] - cx[b], cy[a] - cy[b]);
    return between / pairs / within;
}

}  // namespace

TEST(Projection, PcaFindsTheDirectionsOfMostVariance) {
    // Variance 100 along (1,1,0,…)/√2, 1 along the rest.
    Rng rng(5);
    const int dim = 8;
    std::vector<float> rows;
    for (int i = 0; i < 500; ++i) {
        const double big = rng.normal() * 10;
        for (int k = 0; k < dim; ++k) rows.push_back(static_cast<float>(rng.normal() + (k < 2 ? big / std::sqrt(2.0) : 0.0) + 7));
    }
    const auto r = explain::pca(rows.data(), 500, dim, 2);
    ASSERT_EQ(r.components, 2);
    ASSERT_EQ(r.coords.size(), 1000u);
    EXPECT_GT(r.explained[0], 0.85);
    EXPECT_LT(r.explained[1], 0.1);
    // The first coordinate is the big direction: it correlates with x0 + x1.
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < 500; ++i) {
        const double u = r.coords[2 * static_cast<std::size_t>(i)];
        const double v = rows[static_cast<std::size_t>(i * dim)] + rows[static_cast<std::size_t>(i * dim + 1)] - 14;
        sxy += u * v, sxx += u * u, syy += v * v;
    }
    EXPECT_GT(std::abs(sxy) / std::sqrt(sxx * syy), 0.99);
    // Fewer rows than components asked for: as many as there can be.
    EXPECT_EQ(explain::pca(rows.data(), 1, dim, 5).components, 1);
}

TEST(Projection, UmapSeparatesKnownClusters) {
    std::vector<int> label;
    const int clusters = 5, per = 80, dim = 40;
    const auto rows = clustered(clusters, per, dim, 1.0, label);
    const auto xy = explain::umap_2d(rows.data(), label.size(), dim);
    ASSERT_EQ(xy.size(), label.size() * 2);
    for (float v : xy) ASSERT_TRUE(std::isfinite(v));
    EXPECT_GT(neighbour_agreement(xy, label), 0.99);
    EXPECT_GT(separation(xy, label, clusters), 4.0);
    // Seeded: the same input gives the same map.
    EXPECT_EQ(explain::umap_2d(rows.data(), label.size(), dim), xy);
}

TEST(Projection, UmapKeepsAPlantedMislabelledClusterApart) {
    // What the map is for: a small group of one class's points sitting inside another's
    // cluster stays with that cluster (its neighbours), so it shows as an island of the wrong
    // colour.
    std::vector<int> cluster;
    const auto rows = clustered(2, 150, 20, 1.0, cluster, 11);
    const auto xy = explain::umap_2d(rows.data(), cluster.size(), 20);
    // Every point's 2-D nearest neighbour is in its own cluster, whatever its label.
    EXPECT_GT(neighbour_agreement(xy, cluster), 0.99);
}

TEST(Projection, TinyAndDegenerateInputs) {
    const std::vector<float> two = {0, 0, 1, 1};
    EXPECT_EQ(explain::umap_2d(two.data(), 2, 2).size(), 4u);
    EXPECT_TRUE(explain::umap_2d(nullptr, 0, 3).empty());
    // Identical points (exact copies) do not break the neighbour search or the layout.
    std::vector<float> same(30 * 4, 1.0f);
    for (float v : explain::umap_2d(same.data(), 30, 4)) EXPECT_TRUE(std::isfinite(v));
}

TEST(Projection, UmapStopsWithinAFewEpochs) {
    std::vector<int> label;
    const auto rows = clustered(3, 40, 10, 1.0, label);
    std::atomic<bool> stop{false};
    explain::UmapOptions o;
    o.epochs = 200;
    o.stop = &stop;
    int last = -1, calls = 0;
    o.progress = [&](int done, int total) {
        EXPECT_EQ(total, 200);
        last = done;
        ++calls;
        if (done >= 20) stop = true;   // the user presses Stop at epoch 20
    };
    EXPECT_THROW(explain::umap_2d(rows.data(), label.size(), 10, o), Cancelled);
    EXPECT_EQ(last, 20);   // seen at the next check, kStopCheckEpochs later: no progress after it
    EXPECT_EQ(calls, 20 / explain::kStopCheckEpochs + 1);
    // Set before it starts: the neighbour search already stops.
    o.progress = {};
    EXPECT_THROW(explain::umap_2d(rows.data(), label.size(), 10, o), Cancelled);
    // Not stopped: progress up to the end, and the same map as without stop or progress.
    stop = false;
    o.progress = [&](int done, int) { last = done; };
    const auto xy = explain::umap_2d(rows.data(), label.size(), 10, o);
    EXPECT_EQ(last, 200);
    explain::UmapOptions plain;
    plain.epochs = 200;
    EXPECT_EQ(xy, explain::umap_2d(rows.data(), label.size(), 10, plain));
}

TEST(Projection, TwentyThousandPointsInUnderAMinute) {
    if (!std::getenv("WHISKER_SLOW_TESTS")) GTEST_SKIP() << "set WHISKER_SLOW_TESTS=1 to time 20,000 points";
    std::vector<int> label;
    const auto rows = clustered(10, 2000, 512, 1.0, label);
    const auto t0 = std::chrono::steady_clock::now();
    const auto reduced = explain::pca(rows.data(), label.size(), 512, 50);
    const auto xy = explain::umap_2d(reduced.coords.data(), label.size(), reduced.components);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("PCA + UMAP of 20,000 x 512: %.1f s\n", seconds);
    EXPECT_LT(seconds, 60.0);
    EXPECT_GT(separation(xy, label, 10), 4.0);
}

TEST(Projection, DataMapOfEmbeddingsKeepsRecordsSplitsAndMistakes) {
    data::Dataset d;
    d.classes = {"a", "b"};
    explain::Embeddings e;
    e.dim = 6;
    std::vector<int> cluster;
    e.features = clustered(2, 20, 6, 0.5, cluster);
    for (std::size_t i = 0; i < cluster.size(); ++i) {
        data::ImageRecord im;
        im.path = "im" + std::to_string(i) + ".jpg";
        im.split = i % 5 == 0 ? data::Split::Test : i % 5 == 1 ? data::Split::Valid : data::Split::Train;
        if (im.split != data::Split::Test) im.labels = {cluster[i]};
        d.images.push_back(im);
        e.records.push_back(cluster.size() - 1 - i);   // rows need not be in manifest order
    }
    for (std::size_t i = 0; i < cluster.size(); ++i) e.predicted.push_back(i == 3 ? 1 - cluster[e.records[i]] : cluster[e.records[i]]);
    const auto map = explain::data_map_of(e, d);
    ASSERT_EQ(map.points.size(), cluster.size());
    int mistakes = 0;
    for (const auto& p : map.points) {
        EXPECT_EQ(p.split, d.images[p.record].split);
        EXPECT_EQ(p.actual, p.split == data::Split::Test ? -1 : d.images[p.record].labels[0]);
        mistakes += p.mistake();
    }
    EXPECT_EQ(mistakes, d.images[e.records[3]].split == data::Split::Test ? 0 : 1);
    EXPECT_NE(map.method.find("UMAP"), std::string::npos);
    EXPECT_GT(map.pca_explained, 0.5);
}

TEST(Projection, EmbeddingsOfEverySplitAreCachedPerLearnerState) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 24, 6);
    data::PrepareOptions po;
    po.project = dir / "p";
    po.source = dir / "dl";
    po.valid_per_class = 4;
    po.threads = 2;
    const data::Dataset d = data::prepare_dataset(po);
    project::SessionOptions so;
    so.base.threads = 2;
    project::Session session(po.project, so);
    project::LearnerSpec spec;
    spec.arch = "resnet18";
    spec.size = 32;
    spec.batch_size = 8;
    spec.pretrained = false;
    session.new_learner(spec);

    const auto e = explain::embeddings_of(session);
    EXPECT_EQ(e.rows(), d.images.size());   // train, valid and test
    EXPECT_EQ(e.dim, session.learner().model().head_inputs());
    EXPECT_EQ(e.origin, session.state());
    EXPECT_TRUE(fs::exists(explain::embeddings_cache_file(po.project, session.state())));
    const auto cached = explain::load_embeddings(po.project, session.state());
    ASSERT_TRUE(cached.has_value());
    EXPECT_EQ(cached->features, e.features);
    EXPECT_EQ(cached->records, e.records);
    EXPECT_EQ(cached->predicted, e.predicted);
    // Another state (another data fingerprint) does not read this cache.
    project::LearnerState other = session.state();
    other.data += "x";
    EXPECT_FALSE(explain::load_embeddings(po.project, other).has_value());

    const auto map = explain::data_map(session);
    EXPECT_EQ(map.points.size(), d.images.size());
    const auto again = explain::data_map(session);   // from the map cache
    ASSERT_EQ(again.points.size(), map.points.size());
    for (std::size_t i = 0; i < map.points.size(); ++i) {
        EXPECT_EQ(again.points[i].x, map.points[i].x);
        EXPECT_EQ(again.points[i].record, map.points[i].record);
    }
    explain::write_map_csv(dir / "map.csv", po.project, session.learner().dataset(), map);
    std::ifstream in(dir / "map.csv");
    std::string header;
    std::getline(in, header);
    EXPECT_EQ(header, "path,split,actual,predicted,mistake,x,y,pca_x,pca_y");
}

// Files in the project's explain cache whose names start with `prefix`.
static std::vector<std::string> cache_files(const fs::path& project, const std::string& prefix = "") {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(project / "cache" / "explain", ec))
        if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().filename().string());
    return out;
}

TEST(Projection, AStoppedMapLeavesNoHalfWrittenCache) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 16, 4);
    data::PrepareOptions po;
    po.project = dir / "p";
    po.source = dir / "dl";
    po.valid_per_class = 3;
    po.threads = 2;
    data::prepare_dataset(po);
    project::SessionOptions so;
    so.base.threads = 2;
    project::Session session(po.project, so);
    project::LearnerSpec spec;
    spec.arch = "resnet18";
    spec.size = 32;
    spec.batch_size = 8;
    spec.pretrained = false;
    session.new_learner(spec);

    // Stopped while the images are embedded, at the given stage and count (done >= at).
    std::atomic<bool> stop{false};
    auto stop_at = [&stop](const std::string& stage, long at) {
        return [&stop, stage, at](const std::string& s, long done, long) {
            if (s == stage && done >= at) stop = true;
        };
    };
    EXPECT_THROW(explain::data_map(session, stop_at("embedding train images", 1), &stop), Cancelled);
    EXPECT_TRUE(cache_files(po.project).empty());   // neither features nor map, nor a temporary file
    // Between the stages: the features are complete and kept, the map is not begun.
    stop = false;
    EXPECT_THROW(explain::data_map(session, stop_at("projecting to 2-D", 0), &stop), Cancelled);
    EXPECT_EQ(cache_files(po.project).size(), 1u);
    EXPECT_TRUE(fs::exists(explain::embeddings_cache_file(po.project, session.state())));
    // Inside UMAP's epochs (stage "projecting to 2-D", epochs done): no map written.
    stop = false;
    EXPECT_THROW(explain::data_map(session, stop_at("projecting to 2-D", 10), &stop), Cancelled);
    EXPECT_TRUE(cache_files(po.project, "map-").empty());
    // Computed again without a stop: from the kept features, the map written whole.
    stop = false;
    std::vector<std::string> stages;
    const auto map = explain::data_map(session, [&](const std::string& s, long, long) { stages.push_back(s); }, &stop);
    EXPECT_EQ(map.points.size(), session.learner().dataset().images.size());
    EXPECT_TRUE(std::none_of(stages.begin(), stages.end(), [](const std::string& s) { return s.rfind("embedding", 0) == 0; }));
    EXPECT_EQ(cache_files(po.project, "map-").size(), 1u);
    EXPECT_EQ(cache_files(po.project).size(), 2u);
}
