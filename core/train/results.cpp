#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/train/learner.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace fs = std::filesystem;

namespace whisker::train {

double Predictions::accuracy() const {
    std::size_t n = 0, ok = 0;
    for (std::size_t i = 0; i < actual.size(); ++i)
        if (actual[i] >= 0) {
            ++n;
            ok += actual[i] == predicted[i];
        }
    return n ? static_cast<double>(ok) / static_cast<double>(n) : 0.0;
}

double Predictions::log_loss() const {
    double sum = 0;
    std::size_t n = 0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        if (actual[i] < 0) continue;
        at::Tensor p = probs[static_cast<long>(i)].to(at::kDouble).clamp(1e-15, 1 - 1e-15);
        p = p / p.sum();
        sum += -std::log(p[actual[i]].item<double>());
        ++n;
    }
    return n ? sum / static_cast<double>(n) : 0.0;
}

std::vector<std::vector<int>> Predictions::confusion_matrix(int c) const {
    std::vector<std::vector<int>> cm(static_cast<std::size_t>(c), std::vector<int>(static_cast<std::size_t>(c), 0));
    for (std::size_t i = 0; i < actual.size(); ++i)
        if (actual[i] >= 0) ++cm[static_cast<std::size_t>(actual[i])][static_cast<std::size_t>(predicted[i])];
    return cm;
}

std::vector<std::tuple<int, int, int>> Predictions::most_confused(int c, int min_count) const {
    const auto cm = confusion_matrix(c);
    std::vector<std::tuple<int, int, int>> out;
    for (int a = 0; a < c; ++a)
        for (int p = 0; p < c; ++p)
            if (a != p && cm[static_cast<std::size_t>(a)][static_cast<std::size_t>(p)] >= min_count)
                out.emplace_back(a, p, cm[static_cast<std::size_t>(a)][static_cast<std::size_t>(p)]);
    std::stable_sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return std::get<2>(x) > std::get<2>(y); });
    return out;
}

std::vector<std::size_t> Predictions::top_losses(std::size_t k) const {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < losses.size(); ++i)
        if (!std::isnan(losses[i])) idx.push_back(i);
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return losses[a] > losses[b]; });
    if (idx.size() > k) idx.resize(k);
    return idx;
}

std::vector<Predictions::ClassMetrics> Predictions::per_class(int c) const {
    std::vector<ClassMetrics> out(static_cast<std::size_t>(std::max(c, 0)));
    std::vector<int> correct(out.size(), 0);
    for (std::size_t i = 0; i < actual.size(); ++i) {
        if (actual[i] < 0 || actual[i] >= c || predicted[i] < 0 || predicted[i] >= c) continue;
        ++out[static_cast<std::size_t>(actual[i])].support;
        ++out[static_cast<std::size_t>(predicted[i])].predicted;
        if (actual[i] == predicted[i]) ++correct[static_cast<std::size_t>(actual[i])];
    }
    for (std::size_t k = 0; k < out.size(); ++k) {
        if (out[k].predicted) out[k].precision = static_cast<double>(correct[k]) / out[k].predicted;
        if (out[k].support) out[k].recall = static_cast<double>(correct[k]) / out[k].support;
    }
    return out;
}

int Predictions::num_classes() const { return probs.defined() && probs.dim() == 2 ? static_cast<int>(probs.size(1)) : 0; }

std::vector<float> Predictions::probability_matrix() const {
    if (!probs.defined() || probs.numel() == 0) return {};
    const at::Tensor p = probs.to(at::kCPU, at::kFloat).contiguous();
    const float* data = p.data_ptr<float>();
    return std::vector<float>(data, data + p.numel());
}

void write_predictions_csv(const fs::path& path, const fs::path& project, const data::Dataset& d, const Predictions& p,
                           bool mistakes_only) {
    const int c = p.num_classes();
    const std::vector<float> probs = p.probability_matrix();
    auto prob = [&](std::size_t row, int k) { return probs[row * static_cast<std::size_t>(c) + static_cast<std::size_t>(k)]; };
    auto class_name = [&](int k) { return k >= 0 && k < static_cast<int>(d.classes.size()) ? d.classes[static_cast<std::size_t>(k)] : std::string(); };
    std::string out = "path,id,actual,predicted,probability,probability_actual,loss";
    for (const auto& cls : d.classes) out += "," + csv_escape("p_" + cls);
    out += "\n";
    std::vector<std::size_t> rows(p.records.size());
    std::iota(rows.begin(), rows.end(), 0);
    // Highest loss first; unlabelled rows (NaN loss) last, in their order.
    std::stable_sort(rows.begin(), rows.end(), [&](std::size_t a, std::size_t b) {
        const bool na = std::isnan(p.losses[a]), nb = std::isnan(p.losses[b]);
        if (na != nb) return nb;
        return !na && p.losses[a] > p.losses[b];
    });
    for (std::size_t row : rows) {
        const int actual = p.actual[row], predicted = p.predicted[row];
        if (mistakes_only && (actual < 0 || actual == predicted)) continue;
        const auto& im = d.images[p.records[row]];
        out += csv_escape(d.resolve(project, im).string()) + "," + csv_escape(im.id()) + "," + csv_escape(class_name(actual)) +
               "," + csv_escape(class_name(predicted));
        out += fmt::format(",{:.6g},{},{}", prob(row, predicted), actual >= 0 ? fmt::format("{:.6g}", prob(row, actual)) : "",
                           std::isnan(p.losses[row]) ? std::string() : fmt::format("{:.6g}", p.losses[row]));
        for (int k = 0; k < c; ++k) out += fmt::format(",{:.6g}", prob(row, k));
        out += "\n";
    }
    write_file_atomically(path, out);
}

void write_submission(const fs::path& path, const data::Dataset& d, const Predictions& test, double clip, bool labels) {
    if (test.records.empty()) throw UserError("no test predictions to write");
    const auto c = static_cast<long>(d.classes.size());
    std::string out;
    if (labels) out = "id,label\n";
    else if (c == 2) out = "id,label\n";
    else {
        out = "id";
        for (const auto& cls : d.classes) out += "," + csv_escape(cls);
        out += "\n";
    }
    const at::Tensor probs = test.probs.to(at::kDouble).contiguous();
    // Sort rows by id (numerically when the ids are numbers, as Kaggle's samples are).
    std::vector<std::size_t> order(test.records.size());
    std::iota(order.begin(), order.end(), 0);
    auto numeric = [](const std::string& s, double& v) {
        char* end = nullptr;
        v = std::strtod(s.c_str(), &end);
        return !s.empty() && end && *end == '\0';
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const std::string ia = d.images[test.records[a]].id(), ib = d.images[test.records[b]].id();
        double va, vb;
        if (numeric(ia, va) && numeric(ib, vb)) return va < vb;
        return ia < ib;
    });
    auto prob = [&](std::size_t row, long k) {
        double v = probs[static_cast<long>(row)][k].item<double>();
        if (clip > 0) v = std::clamp(v, clip, 1 - clip);
        return v;
    };
    for (std::size_t row : order) {
        out += csv_escape(d.images[test.records[row]].id());
        if (labels) out += "," + csv_escape(d.classes[static_cast<std::size_t>(test.predicted[row])]);
        else if (c == 2) out += fmt::format(",{:.6g}", prob(row, 1));
        else
            for (long k = 0; k < c; ++k) out += fmt::format(",{:.6g}", prob(row, k));
        out += "\n";
    }
    if (path.extension() == ".gz") {
        AtomicFile f(path);
        // gzip in memory (deflate with a gzip wrapper), then one atomic write.
        z_stream zs{};
        deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
        std::string gzbytes(deflateBound(&zs, static_cast<uLong>(out.size())) + 64, '\0');
        zs.next_in = reinterpret_cast<Bytef*>(out.data());
        zs.avail_in = static_cast<uInt>(out.size());
        zs.next_out = reinterpret_cast<Bytef*>(gzbytes.data());
        zs.avail_out = static_cast<uInt>(gzbytes.size());
        deflate(&zs, Z_FINISH);
        gzbytes.resize(zs.total_out);
        deflateEnd(&zs);
        f.write(gzbytes);
        f.commit();
    } else {
        write_file_atomically(path, out);
    }
}

std::string epoch_table_header(bool ema_columns) {
    const std::string ema =
        ema_columns ? fmt::format("  {:>12}  {:>12}  {:>12}", "ema_val_loss", "ema_accuracy", "ema_log_loss") : "";
    return fmt::format("{:>5}  {:>9}  {:>9}  {:>9}  {:>9}{}  {:>7}  {:>7}\n", "epoch", "trn_loss", "val_loss", "accuracy",
                       "log_loss", ema, "time", "left");
}

std::string epoch_table_row(const EpochRecord& r, bool ema_columns) {
    std::string ema;
    if (ema_columns)
        ema = r.has_ema ? fmt::format("  {:>12.6f}  {:>12.6f}  {:>12.6f}", r.ema_val_loss, r.ema_accuracy, r.ema_log_loss)
                        : fmt::format("  {:>12}  {:>12}  {:>12}", "-", "-", "-");
    return fmt::format("{:>5}  {:>9.6f}  {:>9.6f}  {:>9.6f}  {:>9.6f}{}  {:>6.1f}s  {:>6.0f}s\n", r.epoch, r.trn_loss, r.val_loss,
                       r.accuracy, r.log_loss, ema, r.seconds, r.eta_seconds);
}

}  // namespace whisker::train
