#include "whisker/explain/duplicates.h"

#include "../common/union_find.h"

#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/data/image_decode.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <unordered_map>

namespace fs = std::filesystem;

namespace whisker::explain {

namespace {

// A descriptor whose values spread less than this (grey levels, RMS) is a flat image.
constexpr float kFlatRms = 2.0f;

constexpr char kCacheMagic[] = "whisker-duplicates-1\n";

fs::path cache_file(const fs::path& project) { return project / "cache" / "duplicates" / "fingerprints.bin"; }

struct CachedPrint {
    FileStamp stamp;
    ImageFingerprint print;
};

template <class T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
    put(out, static_cast<std::uint32_t>(s.size()));
    out += s;
}

class Reader {
public:
    explicit Reader(const std::string& bytes) : b_(bytes) {}
    template <class T>
    T get() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, b_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string get_string() {
        const auto n = get<std::uint32_t>();
        need(n);
        std::string s = b_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    void get_floats(float* out, std::size_t n) {
        need(n * sizeof(float));
        std::memcpy(out, b_.data() + pos_, n * sizeof(float));
        pos_ += n * sizeof(float);
    }
    bool at_end() const { return pos_ == b_.size(); }
    std::size_t pos_ = 0;

private:
    void need(std::size_t n) const {
        if (pos_ + n > b_.size()) throw std::runtime_error("truncated");
    }
    const std::string& b_;
};

// path -> (stamp, fingerprint); an unreadable or foreign cache is simply empty.
std::unordered_map<std::string, CachedPrint> read_cache(const fs::path& file) {
    std::unordered_map<std::string, CachedPrint> out;
    std::error_code ec;
    if (!fs::exists(file, ec)) return out;
    try {
        const std::string bytes = read_file(file);
        if (bytes.compare(0, sizeof(kCacheMagic) - 1, kCacheMagic) != 0) return {};
        Reader r(bytes);
        r.pos_ = sizeof(kCacheMagic) - 1;
        if (r.get<std::uint32_t>() != static_cast<std::uint32_t>(kDescriptorSize)) return {};
        const auto n = r.get<std::uint64_t>();
        for (std::uint64_t i = 0; i < n; ++i) {
            CachedPrint c;
            const std::string path = r.get_string();
            c.stamp.size = r.get<std::uint64_t>();
            c.stamp.mtime_ns = r.get<std::int64_t>();
            c.print.pixels = r.get_string();
            c.print.error = r.get_string();
            r.get_floats(c.print.descriptor.data(), c.print.descriptor.size());
            out.emplace(path, std::move(c));
        }
    } catch (const std::exception&) {
        return {};   // damaged: rebuilt
    }
    return out;
}

void write_cache(const fs::path& file, const std::vector<std::pair<std::string, CachedPrint>>& entries) {
    std::string out = kCacheMagic;
    put(out, static_cast<std::uint32_t>(kDescriptorSize));
    put(out, static_cast<std::uint64_t>(entries.size()));
    for (const auto& [path, c] : entries) {
        put_string(out, path);
        put(out, c.stamp.size);
        put(out, c.stamp.mtime_ns);
        put_string(out, c.print.pixels);
        put_string(out, c.print.error);
        out.append(reinterpret_cast<const char*>(c.print.descriptor.data()), c.print.descriptor.size() * sizeof(float));
    }
    write_file_atomically(file, out);
}

std::string label_text(const data::Dataset& d, const data::ImageRecord& im) {
    if (im.labels.empty()) return "-";
    std::string s;
    for (int l : im.labels) {
        if (!s.empty()) s += "+";
        s += l >= 0 && l < static_cast<int>(d.classes.size()) ? d.classes[static_cast<std::size_t>(l)] : std::to_string(l);
    }
    return s;
}

std::string mark_text(const data::Dataset& d, const data::ImageRecord& im) {
    if (im.excluded) return "excluded";
    if (im.relabelled()) {
        data::ImageRecord was = im;
        was.labels = im.original_labels;
        return "relabelled from " + label_text(d, was);
    }
    return "";
}

bool labelled(const data::ImageRecord& im) { return im.split != data::Split::Test && !im.labels.empty(); }

}  // namespace

bool ImageFingerprint::flat() const {
    return std::all_of(descriptor.begin(), descriptor.end(), [](float v) { return v == 0.0f; });
}

ImageFingerprint fingerprint_pixels(const unsigned char* rgb, int width, int height) {
    ImageFingerprint f;
    const std::size_t bytes = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3;
    std::string data = fmt::format("{}x{}:", width, height);
    data.append(reinterpret_cast<const char*>(rgb), bytes);
    f.pixels = sha256_hex(data);
    // The thumbnail: each cell the average of its area (cv::INTER_AREA), so resizing the
    // source changes it little; centring and scaling to unit length make it indifferent to
    // brightness and contrast changes of recompression.
    const cv::Mat image(height, width, CV_8UC3, const_cast<unsigned char*>(rgb));
    cv::Mat small;
    cv::resize(image, small, cv::Size(kThumbnailSide, kThumbnailSide), 0, 0, cv::INTER_AREA);
    small.convertTo(small, CV_32FC3);
    const float* v = small.ptr<float>(0);
    double mean = 0;
    for (int i = 0; i < kDescriptorSize; ++i) mean += v[i];
    mean /= kDescriptorSize;
    double norm = 0;
    for (int i = 0; i < kDescriptorSize; ++i) {
        f.descriptor[static_cast<std::size_t>(i)] = static_cast<float>(v[i] - mean);
        norm += (v[i] - mean) * (v[i] - mean);
    }
    norm = std::sqrt(norm);
    if (norm / std::sqrt(static_cast<double>(kDescriptorSize)) < kFlatRms) {
        f.descriptor.fill(0.0f);
    } else {
        for (auto& x : f.descriptor) x = static_cast<float>(x / norm);
    }
    return f;
}

ImageFingerprint fingerprint_file(const fs::path& file) {
    try {
        const data::DecodedImage d = data::decode_image_file(file);
        const cv::Mat rgb = d.rgb.isContinuous() ? d.rgb : d.rgb.clone();
        return fingerprint_pixels(rgb.ptr<unsigned char>(0), rgb.cols, rgb.rows);
    } catch (const std::exception& e) {
        ImageFingerprint f;
        f.error = e.what();
        return f;
    }
}

double descriptor_similarity(const ImageFingerprint& a, const ImageFingerprint& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.descriptor.size(); ++i) s += static_cast<double>(a.descriptor[i]) * b.descriptor[i];
    return s;
}

std::string DuplicateGroup::kinds() const {
    std::vector<std::string> k;
    if (labels_differ) k.push_back("labels differ");
    if (inflates_validation) k.push_back("inflates validation");
    if (test_leak) k.push_back("test leak");
    if (repeated) k.push_back("repeated");
    if (k.empty()) return "resolved";
    std::string s;
    for (const auto& x : k) s += (s.empty() ? "" : ", ") + x;
    return s;
}

std::size_t DuplicateReport::count_inflating() const {
    return static_cast<std::size_t>(std::count_if(groups.begin(), groups.end(), [](const auto& g) { return g.inflates_validation; }));
}
std::size_t DuplicateReport::count_label_conflicts() const {
    return static_cast<std::size_t>(std::count_if(groups.begin(), groups.end(), [](const auto& g) { return g.labels_differ; }));
}
std::size_t DuplicateReport::count_test_leaks() const {
    return static_cast<std::size_t>(std::count_if(groups.begin(), groups.end(), [](const auto& g) { return g.test_leak; }));
}
std::size_t DuplicateReport::count_unresolved() const {
    return static_cast<std::size_t>(std::count_if(groups.begin(), groups.end(), [](const auto& g) { return !g.resolved(); }));
}
const DuplicateGroup* DuplicateReport::group(int id) const {
    for (const auto& g : groups)
        if (g.id == id) return &g;
    return nullptr;
}

void update_kinds(const data::Dataset& d, std::vector<DuplicateGroup>& groups) {
    for (auto& g : groups) {
        std::set<data::Split> splits;
        std::set<std::vector<int>> labels;
        int active = 0;
        for (std::size_t r : g.records) {
            const auto& im = d.images[r];
            if (im.excluded) continue;
            ++active;
            splits.insert(im.split);
            if (labelled(im)) {
                auto l = im.labels;
                std::sort(l.begin(), l.end());
                labels.insert(l);
            }
        }
        g.inflates_validation = splits.count(data::Split::Train) && splits.count(data::Split::Valid);
        g.labels_differ = labels.size() > 1;
        g.test_leak = splits.count(data::Split::Test) && (splits.count(data::Split::Train) || splits.count(data::Split::Valid));
        g.repeated = active >= 2 && splits.size() == 1;
    }
}

std::vector<DuplicateGroup> group_duplicates(const data::Dataset& d, const std::vector<ImageFingerprint>& prints,
                                             double threshold) {
    const std::size_t n = d.images.size();
    if (prints.size() != n) throw std::invalid_argument("group_duplicates: one fingerprint per image expected");
    UnionFind uf(n);
    std::vector<bool> exact_edge(n, false);   // joined to another image by identical pixels
    std::unordered_map<std::string, std::size_t> first_with;
    for (std::size_t i = 0; i < n; ++i) {
        if (!prints[i].readable()) continue;
        const auto [it, fresh] = first_with.emplace(prints[i].pixels, i);
        if (!fresh) {
            uf.join(it->second, i);
            exact_edge[i] = exact_edge[it->second] = true;
        }
    }
    // Near copies: all pairs, as blocks of a matrix product (flat and unreadable images have
    // zero descriptors and never reach the threshold).
    if (threshold <= 1.0 && n > 1) {
        std::vector<float> all(n * kDescriptorSize);
        for (std::size_t i = 0; i < n; ++i)
            std::copy(prints[i].descriptor.begin(), prints[i].descriptor.end(), all.begin() + static_cast<long>(i * kDescriptorSize));
        const at::Tensor x = at::from_blob(all.data(), {static_cast<long>(n), kDescriptorSize}, at::kFloat);
        const long block = 1024;
        for (long start = 0; start < static_cast<long>(n); start += block) {
            const long end = std::min<long>(start + block, static_cast<long>(n));
            // Rows [start, end) against columns [start, n): each pair once (j > i).
            const at::Tensor sims = at::mm(x.slice(0, start, end), x.slice(0, start).t());
            const at::Tensor hits = at::nonzero(sims >= static_cast<float>(threshold - 1e-6)).contiguous();
            const auto* h = hits.data_ptr<std::int64_t>();
            for (long k = 0; k < hits.size(0); ++k) {
                const auto i = static_cast<std::size_t>(start + h[2 * k]);
                const auto j = static_cast<std::size_t>(start + h[2 * k + 1]);
                if (j > i) uf.join(i, j);
            }
        }
    }
    std::map<std::size_t, std::vector<std::size_t>> members;
    for (std::size_t i = 0; i < n; ++i) members[uf.find(i)].push_back(i);
    std::vector<DuplicateGroup> groups;
    for (auto& [root, recs] : members) {
        if (recs.size() < 2) continue;
        DuplicateGroup g;
        std::stable_sort(recs.begin(), recs.end(), [&](std::size_t a, std::size_t b) {
            const auto& x = d.images[a];
            const auto& y = d.images[b];
            if (x.split != y.split) return static_cast<int>(x.split) < static_cast<int>(y.split);
            return x.path < y.path;
        });
        g.records = recs;
        g.exact = std::all_of(recs.begin(), recs.end(), [&](std::size_t r) { return prints[r].pixels == prints[recs[0]].pixels; });
        for (std::size_t r : recs)
            if (r != recs[0])
                g.min_similarity = std::min(g.min_similarity, prints[r].pixels == prints[recs[0]].pixels
                                                                  ? 1.0
                                                                  : descriptor_similarity(prints[recs[0]], prints[r]));
        groups.push_back(std::move(g));
    }
    // Numbered in manifest order of each group's earliest image: the same data gives the same
    // numbers, whatever the marks.
    std::sort(groups.begin(), groups.end(), [](const DuplicateGroup& a, const DuplicateGroup& b) {
        return *std::min_element(a.records.begin(), a.records.end()) < *std::min_element(b.records.begin(), b.records.end());
    });
    for (std::size_t i = 0; i < groups.size(); ++i) groups[i].id = static_cast<int>(i) + 1;
    update_kinds(d, groups);
    return groups;
}

DuplicateReport find_duplicates(const fs::path& project, const data::Dataset& d, const DuplicateOptions& o) {
    if (!(o.threshold > 0)) throw UserError(fmt::format("the similarity threshold must be above 0 (got {})", o.threshold),
                                            "use a value like 0.98; above 1 finds exact copies only");
    const std::size_t n = d.images.size();
    std::vector<fs::path> files(n);
    std::vector<FileStamp> stamps(n);
    for (std::size_t i = 0; i < n; ++i) {
        files[i] = d.resolve(project, d.images[i]);
        stat_file(files[i], stamps[i]);
    }
    auto cache = o.use_cache ? read_cache(cache_file(project)) : std::unordered_map<std::string, CachedPrint>{};
    std::vector<ImageFingerprint> prints(n);
    std::vector<std::size_t> todo;
    for (std::size_t i = 0; i < n; ++i) {
        const auto it = cache.find(d.images[i].path);
        if (it != cache.end() && it->second.stamp == stamps[i] && it->second.print.error.empty()) prints[i] = it->second.print;
        else todo.push_back(i);
    }
    std::atomic<std::uint64_t> done{0};
    const std::string stage = "fingerprinting images";
    if (o.progress) o.progress({stage, 0, todo.size()});
    parallel_for(
        todo.size(), o.threads,
        [&](std::size_t k) {
            const std::size_t i = todo[k];
            prints[i] = fingerprint_file(files[i]);
            const auto now = ++done;
            if (o.progress && (now % 64 == 0 || now == todo.size())) o.progress({stage, now, todo.size()});
        },
        o.cancel);
    if (o.use_cache && !todo.empty()) {
        std::vector<std::pair<std::string, CachedPrint>> entries;
        entries.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            if (prints[i].readable()) entries.push_back({d.images[i].path, CachedPrint{stamps[i], prints[i]}});
        try {
            write_cache(cache_file(project), entries);
        } catch (const UserError&) {
            // A read-only project still gets its report; the next scan decodes again.
        }
    }
    if (o.progress) o.progress({"comparing images", 0, 0});
    DuplicateReport report;
    report.threshold = o.threshold;
    report.images = n;
    for (std::size_t i = 0; i < n; ++i)
        if (!prints[i].readable()) report.unreadable.push_back({d.images[i].path, prints[i].error});
    report.groups = group_duplicates(d, prints, o.threshold);
    return report;
}

// ---- actions ----

std::vector<std::string> keep_group_in_split(data::Dataset& d, const DuplicateGroup& g, data::Split split) {
    if (split == data::Split::Test) throw UserError("a group can be kept in train or valid, not in test",
                                                    "choose train (the usual choice) or valid");
    std::vector<std::string> changed;
    bool any_in_split = false;
    for (std::size_t r : g.records) any_in_split |= d.images[r].split == split && !d.images[r].excluded;
    if (!any_in_split)
        throw UserError(fmt::format("group {} has no image in use in {}", g.id, data::split_name(split)),
                        "keep it in the split its images are in");
    for (std::size_t r : g.records) {
        auto& im = d.images[r];
        if (im.split == split || im.split == data::Split::Test || im.excluded) continue;
        d.set_excluded(im.path, true);
        changed.push_back(im.path);
    }
    return changed;
}

std::vector<std::string> relabel_group(data::Dataset& d, const DuplicateGroup& g, int label) {
    if (label < 0 || label >= static_cast<int>(d.classes.size()))
        throw UserError(fmt::format("there is no class number {}", label));
    std::vector<std::string> changed;
    for (std::size_t r : g.records) {
        auto& im = d.images[r];
        if (!labelled(im) || im.labels == std::vector<int>{label}) continue;
        d.relabel(im.path, {label});
        changed.push_back(im.path);
    }
    return changed;
}

std::vector<std::string> exclude_group(data::Dataset& d, const DuplicateGroup& g, bool keep_one) {
    std::vector<std::string> changed;
    bool kept = !keep_one;
    for (std::size_t r : g.records) {
        auto& im = d.images[r];
        if (im.split == data::Split::Test || im.excluded) continue;
        if (!kept) {
            kept = true;
            continue;
        }
        d.set_excluded(im.path, true);
        changed.push_back(im.path);
    }
    return changed;
}

std::vector<std::string> undo_group(data::Dataset& d, const DuplicateGroup& g) {
    std::vector<std::string> changed;
    for (std::size_t r : g.records) {
        auto& im = d.images[r];
        if (!im.excluded && !im.relabelled()) continue;
        d.clear_marks(im.path);
        changed.push_back(im.path);
    }
    return changed;
}

// ---- output ----

std::string format_duplicates(const data::Dataset& d, const DuplicateReport& rep, bool all) {
    std::string out = fmt::format(
        "Scanned {} images (near copies: similarity >= {:.3f}): {} groups of copies, {} to act on — {} inflate the "
        "validation score, {} with different labels, {} leak into test.\n",
        rep.images, rep.threshold, rep.groups.size(), rep.count_unresolved(), rep.count_inflating(),
        rep.count_label_conflicts(), rep.count_test_leaks());
    for (const auto& u : rep.unreadable) out += fmt::format("unreadable: {} ({})\n", u.path, u.reason);
    for (const auto& g : rep.groups) {
        if (g.resolved() && !all) continue;
        out += fmt::format("\nGroup {} · {} · {} images · {}\n", g.id,
                           g.exact ? "exact copies" : fmt::format("near copies (similarity >= {:.4f})", g.min_similarity),
                           g.records.size(), g.kinds());
        for (std::size_t r : g.records) {
            const auto& im = d.images[r];
            const std::string mark = mark_text(d, im);
            out += fmt::format("  {:<5}  {:<10}  {}{}\n", data::split_name(im.split), label_text(d, im), im.path,
                               mark.empty() ? "" : "  [" + mark + "]");
        }
        if (g.labels_differ)
            out += fmt::format("  → the same picture has different labels: at least one is wrong. Relabel them "
                               "(--relabel {}=CLASS) or exclude them (--exclude-all {}).\n",
                               g.id, g.id);
        if (g.inflates_validation)
            out += fmt::format("  → the model is validated on a picture it trains on, so the validation score is too "
                               "good. Keep the group in one split (--keep {}=train).\n",
                               g.id);
        if (g.test_leak)
            out += "  → a test image is also a training/validation image: its answer is known (a leak worth knowing).\n";
        if (g.repeated && !g.inflates_validation && !g.labels_differ && !g.test_leak)
            out += fmt::format("  → repeated within one split: it weighs more in training (--exclude {} keeps one).\n",
                               g.id);
        if (g.resolved()) out += fmt::format("  → resolved by your marks (--undo {} takes them back).\n", g.id);
    }
    if (rep.groups.empty()) out += "No copies found.\n";
    return out;
}

void write_duplicates_csv(const fs::path& file, const fs::path& project, const data::Dataset& d,
                          const DuplicateReport& rep) {
    std::string out = "group,kinds,exact,similarity,split,label,marked,path\n";
    for (const auto& g : rep.groups)
        for (std::size_t r : g.records) {
            const auto& im = d.images[r];
            out += fmt::format("{},{},{},{:.4f},{},{},{},{}\n", g.id, csv_escape(g.kinds()), g.exact ? 1 : 0, g.min_similarity,
                               data::split_name(im.split), csv_escape(label_text(d, im)), csv_escape(mark_text(d, im)),
                               csv_escape(d.resolve(project, im).string()));
        }
    write_file_atomically(file, out);
}

std::string duplicates_json(const data::Dataset& d, const DuplicateReport& rep) {
    using nlohmann::json;
    json j;
    j["threshold"] = rep.threshold;
    j["images"] = rep.images;
    j["inflate_validation"] = rep.count_inflating();
    j["labels_differ"] = rep.count_label_conflicts();
    j["test_leaks"] = rep.count_test_leaks();
    j["unresolved"] = rep.count_unresolved();
    json groups = json::array();
    for (const auto& g : rep.groups) {
        json members = json::array();
        for (std::size_t r : g.records) {
            const auto& im = d.images[r];
            members.push_back({{"path", im.path}, {"split", data::split_name(im.split)}, {"label", label_text(d, im)},
                               {"excluded", im.excluded}, {"relabelled", im.relabelled()}});
        }
        groups.push_back({{"id", g.id}, {"exact", g.exact}, {"min_similarity", g.min_similarity},
                          {"inflates_validation", g.inflates_validation}, {"labels_differ", g.labels_differ},
                          {"test_leak", g.test_leak}, {"repeated", g.repeated}, {"resolved", g.resolved()},
                          {"images", std::move(members)}});
    }
    j["groups"] = std::move(groups);
    json un = json::array();
    for (const auto& u : rep.unreadable) un.push_back({{"path", u.path}, {"reason", u.reason}});
    j["unreadable"] = std::move(un);
    return j.dump(2);
}

}  // namespace whisker::explain
