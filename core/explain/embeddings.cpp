#include "whisker/explain/embeddings.h"

#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/explain/projection.h"
#include "whisker/models/checkpoint.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

namespace fs = std::filesystem;

namespace whisker::explain {

namespace {

constexpr int kPcaDims = 50;

std::string state_key(const project::LearnerState& s) { return sha256_hex(s.weights + "|" + s.data).substr(0, 20); }

fs::path map_cache_file(const fs::path& project, const project::LearnerState& s) {
    return project / "cache" / "explain" / ("map-" + state_key(s) + ".json");
}

template <class T>
std::vector<T> to_vector(const at::Tensor& t) {
    const at::Tensor c = t.contiguous();
    return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

int first_label(const data::ImageRecord& im) { return im.split == data::Split::Test || im.labels.empty() ? -1 : im.labels[0]; }

}  // namespace

fs::path embeddings_cache_file(const fs::path& project, const project::LearnerState& s) {
    return project / "cache" / "explain" / ("embeddings-" + state_key(s) + ".safetensors");
}

std::optional<Embeddings> load_embeddings(const fs::path& project, const project::LearnerState& state) {
    const fs::path file = embeddings_cache_file(project, state);
    std::error_code ec;
    if (!fs::exists(file, ec)) return std::nullopt;
    try {
        std::map<std::string, std::string> meta;
        const auto sd = models::read_safetensors(file, &meta);
        if (meta["weights"] != state.weights || meta["data"] != state.data) return std::nullopt;
        Embeddings e;
        e.origin = state;
        e.model = meta["model"];
        const at::Tensor features = models::find_tensor(sd, "features").to(at::kFloat);
        e.dim = static_cast<int>(features.size(1));
        e.features = to_vector<float>(features);
        for (auto r : to_vector<std::int64_t>(models::find_tensor(sd, "records").to(at::kLong))) e.records.push_back(static_cast<std::size_t>(r));
        for (auto p : to_vector<std::int64_t>(models::find_tensor(sd, "predicted").to(at::kLong))) e.predicted.push_back(static_cast<int>(p));
        if (e.predicted.size() != e.records.size() || e.features.size() != e.records.size() * static_cast<std::size_t>(e.dim))
            return std::nullopt;
        return e;
    } catch (const std::exception&) {
        return std::nullopt;   // damaged: computed again
    }
}

Embeddings embeddings_of(project::Session& session, const train::ProgressCallback& progress, const std::atomic<bool>* stop) {
    train::Learner& learner = session.learner();
    const project::LearnerState state = session.state();
    if (auto cached = load_embeddings(session.project(), state)) return *cached;

    Embeddings e;
    e.origin = state;
    e.model = session.describe_learner();
    auto& model = learner.model();
    e.dim = model.head_inputs();
    torch::NoGradGuard no_grad;
    model.eval();   // BatchNorm running statistics, no dropout; the next fit sets train mode again
    const data::Dataset& dataset = learner.dataset();
    struct Pass {
        data::View view;
        data::Split split;
        const char* stage;
    };
    const Pass passes[] = {{data::View::Fix, data::Split::Train, "embedding train images"},
                           {data::View::Valid, data::Split::Valid, "embedding valid images"},
                           {data::View::Test, data::Split::Test, "embedding test images"}};
    std::vector<at::Tensor> features, predicted;
    for (const Pass& pass : passes) {
        if (dataset.count(pass.split) == 0) continue;
        auto& loader = learner.data_loader(pass.view);
        loader.start_epoch(0);
        long done = 0;
        const auto total = static_cast<long>(loader.batches_per_epoch());
        if (progress) progress(pass.stage, 0, total);
        while (auto batch = loader.next()) {
            if (stop && stop->load()) throw Cancelled();
            ++done;
            if (batch->images.size(0) > 0) {
                // fp32 whatever the training precision: the map should not move with it.
                const at::Tensor f = model.pooled_features(batch->images.to(learner.device())).to(at::kFloat);
                predicted.push_back(model.forward_head(f).argmax(1).to(at::kCPU));
                features.push_back(f.to(at::kCPU));
                e.records.insert(e.records.end(), batch->records.begin(), batch->records.end());
            }
            if (progress) progress(pass.stage, done, total);
        }
    }
    if (features.empty()) throw UserError("the dataset has no images in use to embed", "prepare the dataset again");
    const at::Tensor all = at::cat(features).contiguous();
    const at::Tensor preds = at::cat(predicted).to(at::kLong);
    e.features = to_vector<float>(all);
    for (auto p : to_vector<std::int64_t>(preds)) e.predicted.push_back(static_cast<int>(p));
    std::vector<std::int64_t> recs(e.records.begin(), e.records.end());
    try {
        models::write_safetensors(embeddings_cache_file(session.project(), state),
                                  {{"features", all}, {"predicted", preds}, {"records", at::tensor(recs, at::kLong)}},
                                  {{"weights", state.weights}, {"data", state.data}, {"model", e.model}});
    } catch (const UserError&) {
        // A read-only project still gets its map; it is computed again next time.
    }
    return e;
}

DataMap data_map_of(const Embeddings& e, const data::Dataset& dataset, const train::ProgressCallback& progress,
                    const std::atomic<bool>* stop) {
    const auto throw_if_stopped = [stop] {
        if (stop && stop->load()) throw Cancelled();
    };
    DataMap m;
    m.origin = e.origin;
    m.model = e.model;
    const std::size_t n = e.rows();
    throw_if_stopped();
    if (progress) progress("projecting to 2-D", 0, 0);
    const PcaResult reduced = pca(e.features.data(), n, e.dim, kPcaDims);
    throw_if_stopped();
    UmapOptions o;
    o.stop = stop;
    if (progress) o.progress = [&progress](int done, int total) { progress("projecting to 2-D", done, total); };
    const std::vector<float> xy = umap_2d(reduced.coords.data(), n, reduced.components, o);
    m.method = fmt::format("UMAP ({} neighbours, min_dist {}) of the first {} principal components", o.neighbours, o.min_dist,
                           reduced.components);
    if (reduced.explained.size() >= 2) m.pca_explained = reduced.explained[0] + reduced.explained[1];
    else if (!reduced.explained.empty()) m.pca_explained = reduced.explained[0];
    const auto pc = static_cast<std::size_t>(std::max(1, reduced.components));
    for (std::size_t i = 0; i < n; ++i) {
        MapPoint p;
        p.record = e.records[i];
        p.x = xy[2 * i];
        p.y = xy[2 * i + 1];
        if (reduced.components > 0) p.pca_x = reduced.coords[i * pc];
        if (reduced.components > 1) p.pca_y = reduced.coords[i * pc + 1];
        p.predicted = e.predicted[i];
        if (p.record < dataset.images.size()) {
            p.split = dataset.images[p.record].split;
            p.actual = first_label(dataset.images[p.record]);
        }
        m.points.push_back(p);
    }
    return m;
}

DataMap data_map(project::Session& session, const train::ProgressCallback& progress, const std::atomic<bool>* stop) {
    const project::LearnerState state = session.state();
    const data::Dataset& dataset = session.learner().dataset();
    const fs::path file = map_cache_file(session.project(), state);
    std::error_code ec;
    if (fs::exists(file, ec)) {
        try {
            const auto j = nlohmann::json::parse(read_file(file));
            if (j.at("weights") == state.weights && j.at("data") == state.data) {
                DataMap m;
                m.origin = state;
                m.model = j.at("model");
                m.method = j.at("method");
                m.pca_explained = j.at("pca_explained");
                const auto recs = j.at("records").get<std::vector<std::size_t>>();
                const auto xs = j.at("x").get<std::vector<float>>(), ys = j.at("y").get<std::vector<float>>();
                const auto px = j.at("pca_x").get<std::vector<float>>(), py = j.at("pca_y").get<std::vector<float>>();
                const auto pred = j.at("predicted").get<std::vector<int>>();
                bool ok = xs.size() == recs.size() && ys.size() == recs.size() && px.size() == recs.size() &&
                          py.size() == recs.size() && pred.size() == recs.size();
                for (std::size_t i = 0; ok && i < recs.size(); ++i) {
                    if (recs[i] >= dataset.images.size()) {
                        ok = false;
                        break;
                    }
                    MapPoint p{recs[i], xs[i], ys[i], px[i], py[i], dataset.images[recs[i]].split,
                               first_label(dataset.images[recs[i]]), pred[i]};
                    m.points.push_back(p);
                }
                if (ok) return m;
            }
        } catch (const std::exception&) {
            // damaged: computed again
        }
    }
    const Embeddings e = embeddings_of(session, progress, stop);
    // A map that finishes is written whole (atomically); a stopped one writes nothing.
    DataMap m = data_map_of(e, dataset, progress, stop);
    nlohmann::json j;
    j["weights"] = state.weights;
    j["data"] = state.data;
    j["model"] = m.model;
    j["method"] = m.method;
    j["pca_explained"] = m.pca_explained;
    std::vector<std::size_t> recs;
    std::vector<float> xs, ys, px, py;
    std::vector<int> pred;
    for (const auto& p : m.points) {
        recs.push_back(p.record);
        xs.push_back(p.x);
        ys.push_back(p.y);
        px.push_back(p.pca_x);
        py.push_back(p.pca_y);
        pred.push_back(p.predicted);
    }
    j["records"] = recs;
    j["x"] = xs;
    j["y"] = ys;
    j["pca_x"] = px;
    j["pca_y"] = py;
    j["predicted"] = pred;
    try {
        write_file_atomically(file, j.dump());
    } catch (const UserError&) {
        // read-only project: the map is still shown
    }
    return m;
}

void write_map_csv(const fs::path& file, const fs::path& project, const data::Dataset& dataset, const DataMap& map) {
    auto name = [&](int k) {
        return k >= 0 && k < static_cast<int>(dataset.classes.size()) ? dataset.classes[static_cast<std::size_t>(k)] : std::string();
    };
    std::string out = "path,split,actual,predicted,mistake,x,y,pca_x,pca_y\n";
    for (const auto& p : map.points) {
        const auto& im = dataset.images[p.record];
        out += fmt::format("{},{},{},{},{},{:.5f},{:.5f},{:.5f},{:.5f}\n", csv_escape(dataset.resolve(project, im).string()),
                           data::split_name(p.split), csv_escape(name(p.actual)), csv_escape(name(p.predicted)),
                           p.mistake() ? 1 : 0, p.x, p.y, p.pca_x, p.pca_y);
    }
    write_file_atomically(file, out);
}

}  // namespace whisker::explain
