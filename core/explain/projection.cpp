#include "whisker/explain/projection.h"

#include "whisker/common/errors.h"
#include "whisker/common/random.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace whisker::explain {

PcaResult pca(const float* rows, std::size_t n, int dim, int components) {
    PcaResult r;
    if (n == 0 || dim <= 0) return r;
    const int k = std::max(0, std::min({components, dim, static_cast<int>(n)}));
    r.components = k;
    if (k == 0) return r;
    // Centred data in double: the covariance of thousands of rows loses digits in float.
    at::Tensor x = at::from_blob(const_cast<float*>(rows), {static_cast<long>(n), dim}, at::kFloat).to(at::kDouble);
    x = x - x.mean(0, true);
    const at::Tensor cov = at::mm(x.t(), x) / std::max<double>(1.0, static_cast<double>(n) - 1);
    const auto [values, vectors] = at::linalg_eigh(cov);   // ascending eigenvalues
    const double total = std::max(1e-300, values.sum().item<double>());
    at::Tensor basis = vectors.flip({1}).slice(1, 0, k).contiguous();   // [dim, k], largest first
    const at::Tensor top = values.flip({0}).slice(0, 0, k);
    // Fix each component's sign (eigenvectors are defined up to it): its largest entry is positive.
    for (int c = 0; c < k; ++c) {
        const at::Tensor col = basis.select(1, c);
        const auto idx = col.abs().argmax().item<std::int64_t>();
        if (col[idx].item<double>() < 0) basis.select(1, c).mul_(-1);
    }
    const at::Tensor coords = at::mm(x, basis).to(at::kFloat).contiguous();
    r.coords.assign(coords.data_ptr<float>(), coords.data_ptr<float>() + coords.numel());
    for (int c = 0; c < k; ++c) r.explained.push_back(std::max(0.0, top[c].item<double>()) / total);
    return r;
}

namespace {

// UMAP's curve 1 / (1 + a d^(2b)) fitted to the target membership of min_dist/spread (1 below
// min_dist, then exp(-(d - min_dist) / spread)), by a coarse-to-fine grid search.
std::pair<double, double> fit_ab(double min_dist, double spread = 1.0) {
    if (std::abs(min_dist - 0.1) < 1e-12 && spread == 1.0) return {1.576943460405378, 0.8950608781227859};   // umap-learn's
    std::vector<double> xs, ys;
    for (int i = 1; i <= 300; ++i) {
        const double d = 3.0 * spread * i / 300.0;
        xs.push_back(d);
        ys.push_back(d < min_dist ? 1.0 : std::exp(-(d - min_dist) / spread));
    }
    auto error = [&](double a, double b) {
        double e = 0;
        for (std::size_t i = 0; i < xs.size(); ++i) {
            const double f = 1.0 / (1.0 + a * std::pow(xs[i], 2 * b));
            e += (f - ys[i]) * (f - ys[i]);
        }
        return e;
    };
    double best_a = 1.5, best_b = 0.9, best = error(best_a, best_b);
    double la = std::log(best_a), step_la = 2.0, step_b = 0.5;
    for (int round = 0; round < 6; ++round) {
        const double ca = la, cb = best_b;
        for (int i = -10; i <= 10; ++i)
            for (int j = -10; j <= 10; ++j) {
                const double a = std::exp(ca + step_la * i / 10), b = cb + step_b * j / 10;
                if (b <= 0.05) continue;
                const double e = error(a, b);
                if (e < best) {
                    best = e;
                    best_a = a;
                    best_b = b;
                    la = std::log(a);
                }
            }
        step_la /= 4;
        step_b /= 4;
    }
    return {best_a, best_b};
}

void throw_if_stopped(const std::atomic<bool>* stop) {
    if (stop && stop->load()) throw Cancelled();
}

// Exact k nearest neighbours (Euclidean) of every row, itself left out: indices and distances.
void nearest_neighbours(const at::Tensor& x, int k, std::vector<std::int64_t>& idx, std::vector<float>& dist,
                        const std::atomic<bool>* stop) {
    const long n = x.size(0);
    idx.assign(static_cast<std::size_t>(n * k), 0);
    dist.assign(static_cast<std::size_t>(n * k), 0.0f);
    const at::Tensor sq = (x * x).sum(1);
    const long block = 1024;
    for (long start = 0; start < n; start += block) {
        throw_if_stopped(stop);
        const long end = std::min(start + block, n);
        const at::Tensor xb = x.slice(0, start, end);
        at::Tensor d2 = sq.slice(0, start, end).unsqueeze(1) + sq.unsqueeze(0) - 2 * at::mm(xb, x.t());
        d2.clamp_min_(0);
        // A row is never its own neighbour (an exact copy elsewhere still is one).
        const at::Tensor rows = at::arange(end - start, at::kLong);
        d2.index_put_({rows, rows + start}, std::numeric_limits<float>::infinity());
        const auto [values, indices] = d2.topk(k, 1, /*largest=*/false, /*sorted=*/true);
        const at::Tensor v = values.sqrt().contiguous();
        const at::Tensor ix = indices.contiguous();
        std::copy(v.data_ptr<float>(), v.data_ptr<float>() + v.numel(), dist.begin() + start * k);
        std::copy(ix.data_ptr<std::int64_t>(), ix.data_ptr<std::int64_t>() + ix.numel(), idx.begin() + start * k);
    }
}

struct Edge {
    std::uint32_t head, tail;
    float weight;
};

inline float clip4(float v) { return std::max(-4.0f, std::min(4.0f, v)); }

}  // namespace

std::vector<float> umap_2d(const float* rows, std::size_t n, int dim, const UmapOptions& o) {
    std::vector<float> out(n * 2, 0.0f);
    if (n == 0) return out;
    if (n < 3 || dim <= 0) {
        for (std::size_t i = 0; i < n; ++i) out[2 * i] = static_cast<float>(i);
        return out;
    }
    const at::Tensor x = at::from_blob(const_cast<float*>(rows), {static_cast<long>(n), dim}, at::kFloat);
    const int k = std::max(2, std::min(o.neighbours, static_cast<int>(n) - 1));
    std::vector<std::int64_t> knn;
    std::vector<float> knn_dist;
    nearest_neighbours(x, k, knn, knn_dist, o.stop);
    throw_if_stopped(o.stop);

    // Fuzzy membership of each neighbour: exp(-(d - rho) / sigma), sigma such that the row's
    // memberships sum to log2(k) (umap-learn's smooth_knn_dist, local_connectivity 1).
    const double target = std::log2(static_cast<double>(k));
    std::vector<Edge> directed;
    directed.reserve(n * static_cast<std::size_t>(k));
    for (std::size_t i = 0; i < n; ++i) {
        const float* d = &knn_dist[i * static_cast<std::size_t>(k)];
        float rho = 0;
        for (int j = 0; j < k; ++j)
            if (d[j] > 0) {
                rho = d[j];
                break;
            }
        double lo = 0, hi = std::numeric_limits<double>::infinity(), sigma = 1;
        for (int it = 0; it < 64; ++it) {
            double sum = 0;
            for (int j = 0; j < k; ++j) sum += std::exp(-std::max(0.0, static_cast<double>(d[j]) - rho) / sigma);
            if (std::abs(sum - target) < 1e-5) break;
            if (sum > target) {
                hi = sigma;
                sigma = (lo + hi) / 2;
            } else {
                lo = sigma;
                sigma = std::isinf(hi) ? sigma * 2 : (lo + hi) / 2;
            }
        }
        double mean_d = 0;
        for (int j = 0; j < k; ++j) mean_d += d[j];
        mean_d /= k;
        sigma = std::max(sigma, 1e-3 * mean_d);
        for (int j = 0; j < k; ++j) {
            const double w = std::exp(-std::max(0.0, static_cast<double>(d[j]) - rho) / sigma);
            directed.push_back({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(knn[i * static_cast<std::size_t>(k) + static_cast<std::size_t>(j)]),
                                static_cast<float>(w)});
        }
    }
    // Symmetric graph: the fuzzy union w(i,j) + w(j,i) - w(i,j) w(j,i), both directions kept.
    for (auto& e : directed)
        if (e.head > e.tail) std::swap(e.head, e.tail), e.weight = -e.weight - 2;   // mark: came from the other side
    std::sort(directed.begin(), directed.end(), [](const Edge& a, const Edge& b) {
        return a.head != b.head ? a.head < b.head : a.tail < b.tail;
    });
    std::vector<Edge> edges;
    for (std::size_t s = 0; s < directed.size();) {
        std::size_t e = s;
        double forward = 0, backward = 0;
        while (e < directed.size() && directed[e].head == directed[s].head && directed[e].tail == directed[s].tail) {
            const float w = directed[e].weight;
            if (w >= 0) forward = std::max<double>(forward, w);
            else backward = std::max<double>(backward, -w - 2);
            ++e;
        }
        const auto w = static_cast<float>(forward + backward - forward * backward);
        edges.push_back({directed[s].head, directed[s].tail, w});
        edges.push_back({directed[s].tail, directed[s].head, w});
        s = e;
    }
    const int epochs = o.epochs > 0 ? o.epochs : (n < 10000 ? 500 : 200);
    float max_w = 0;
    for (const auto& e : edges) max_w = std::max(max_w, e.weight);
    // Edges too weak to be sampled once in all epochs are left out (as umap-learn does).
    edges.erase(std::remove_if(edges.begin(), edges.end(), [&](const Edge& e) { return e.weight < max_w / epochs; }),
                edges.end());

    // Start from the first two principal components, scaled to a 10-unit box.
    const PcaResult start = pca(rows, n, dim, 2);
    std::vector<float> y(n * 2, 0.0f);
    float extent = 1e-12f;
    for (std::size_t i = 0; i < n; ++i)
        for (int c = 0; c < start.components; ++c) extent = std::max(extent, std::abs(start.coords[i * static_cast<std::size_t>(start.components) + static_cast<std::size_t>(c)]));
    Rng rng(o.seed);
    for (std::size_t i = 0; i < n; ++i)
        for (int c = 0; c < 2; ++c) {
            const float v = c < start.components ? start.coords[i * static_cast<std::size_t>(start.components) + static_cast<std::size_t>(c)] : 0.0f;
            y[2 * i + static_cast<std::size_t>(c)] = 10.0f * v / extent + static_cast<float>(rng.uniform(-1e-4, 1e-4));
        }

    const auto [a, b] = fit_ab(o.min_dist);
    const auto fa = static_cast<float>(a), fb = static_cast<float>(b);
    const std::size_t m = edges.size();
    std::vector<float> per_sample(m), next_sample(m), per_negative(m), next_negative(m);
    for (std::size_t e = 0; e < m; ++e) {
        per_sample[e] = max_w / edges[e].weight;
        next_sample[e] = per_sample[e];
        per_negative[e] = per_sample[e] / static_cast<float>(std::max(1, o.negative_samples));
        next_negative[e] = per_negative[e];
    }
    std::uint64_t state = o.seed * 0x9E3779B97F4A7C15ULL + 1;
    auto random_point = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<std::size_t>(state % n);
    };
    for (int epoch = 0; epoch < epochs; ++epoch) {
        if (epoch % kStopCheckEpochs == 0) {
            throw_if_stopped(o.stop);
            if (o.progress) o.progress(epoch, epochs);
        }
        const float alpha = 1.0f - static_cast<float>(epoch) / static_cast<float>(epochs);
        const auto now = static_cast<float>(epoch);
        for (std::size_t e = 0; e < m; ++e) {
            if (next_sample[e] > now) continue;
            float* cur = &y[2 * edges[e].head];
            float* oth = &y[2 * edges[e].tail];
            float dx = cur[0] - oth[0], dy = cur[1] - oth[1];
            float d2 = dx * dx + dy * dy;
            if (d2 > 0) {
                const float coeff = -2.0f * fa * fb * std::pow(d2, fb - 1.0f) / (fa * std::pow(d2, fb) + 1.0f);
                const float gx = clip4(coeff * dx) * alpha, gy = clip4(coeff * dy) * alpha;
                cur[0] += gx;
                cur[1] += gy;
                oth[0] -= gx;
                oth[1] -= gy;
            }
            next_sample[e] += per_sample[e];
            const int negatives = static_cast<int>((now - next_negative[e]) / per_negative[e]);
            for (int s = 0; s < negatives; ++s) {
                const std::size_t other = random_point();
                if (other == edges[e].head) continue;
                const float* neg = &y[2 * other];
                dx = cur[0] - neg[0];
                dy = cur[1] - neg[1];
                d2 = dx * dx + dy * dy;
                float gx = 4.0f, gy = 4.0f;
                if (d2 > 0) {
                    const float coeff = 2.0f * fb / ((0.001f + d2) * (fa * std::pow(d2, fb) + 1.0f));
                    gx = clip4(coeff * dx);
                    gy = clip4(coeff * dy);
                }
                cur[0] += gx * alpha;
                cur[1] += gy * alpha;
            }
            next_negative[e] += static_cast<float>(std::max(0, negatives)) * per_negative[e];
        }
    }
    if (o.progress) o.progress(epochs, epochs);
    return y;
}

}  // namespace whisker::explain
