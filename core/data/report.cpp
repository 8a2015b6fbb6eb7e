#include "whisker/data/report.h"

#include <fmt/format.h>

#include <algorithm>

namespace whisker::data {

namespace {
int median(std::vector<int> v) {
    if (v.empty()) return 0;
    std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
    return v[v.size() / 2];
}
}  // namespace

DatasetSummary summarize(const Dataset& d, int model_size) {
    DatasetSummary s;
    s.classes = d.classes;
    s.counts.assign(d.classes.size() + 1, {0, 0, 0});
    std::vector<int> widths, heights;
    double aspect_sum = 0;
    for (const auto& im : d.images) {
        if (im.excluded) { ++s.excluded; continue; }
        const auto split = static_cast<std::size_t>(im.split);
        if (im.labels.empty()) ++s.counts[d.classes.size()][split];
        for (int l : im.labels) ++s.counts[static_cast<std::size_t>(l)][split];
        ++s.totals[split];
        ++s.formats[im.format.empty() ? "?" : im.format];
        if (im.width > 0 && im.height > 0) {
            widths.push_back(im.width);
            heights.push_back(im.height);
            aspect_sum += static_cast<double>(im.width) / im.height;
            if (std::min(im.width, im.height) < model_size) ++s.sizes.smaller_than_size;
        }
    }
    s.sizes.count = widths.size();
    if (!widths.empty()) {
        s.sizes.min_width = *std::min_element(widths.begin(), widths.end());
        s.sizes.max_width = *std::max_element(widths.begin(), widths.end());
        s.sizes.min_height = *std::min_element(heights.begin(), heights.end());
        s.sizes.max_height = *std::max_element(heights.begin(), heights.end());
        s.sizes.median_width = median(widths);
        s.sizes.median_height = median(heights);
        s.sizes.mean_aspect = aspect_sum / static_cast<double>(widths.size());
    }
    s.skipped = d.skipped.size();
    return s;
}

std::string format_report(const Dataset& d, int model_size) {
    const DatasetSummary s = summarize(d, model_size);
    std::string out;
    out += fmt::format("Source: {} ({})\n", d.source, d.source_kind);
    if (d.split.from_source) out += "Split: the source's own valid/ folder\n";
    else if (d.split.valid_per_class) out += fmt::format("Split: {} validation images per class, seed {}\n", *d.split.valid_per_class, d.split.seed);
    else if (d.split.valid_frac) out += fmt::format("Split: {:.0f}% of each class for validation, seed {}\n", *d.split.valid_frac * 100, d.split.seed);
    out += fmt::format("{} classes{}\n\n", d.classes.size(), d.multi_label ? " (multi-label)" : "");

    std::size_t name_w = 5;
    for (const auto& c : d.classes) name_w = std::max(name_w, c.size());
    if (s.totals[2] > 0) name_w = std::max<std::size_t>(name_w, 12);
    out += fmt::format("{:<{}}  {:>8}  {:>8}  {:>8}\n", "class", name_w, "train", "valid", "test");
    for (std::size_t c = 0; c < d.classes.size(); ++c)
        out += fmt::format("{:<{}}  {:>8}  {:>8}  {:>8}\n", d.classes[c], name_w, s.counts[c][0], s.counts[c][1], "");
    const auto& unl = s.counts[d.classes.size()];
    if (unl[2] > 0) out += fmt::format("{:<{}}  {:>8}  {:>8}  {:>8}\n", "(unlabelled)", name_w, "", "", unl[2]);
    out += fmt::format("{:<{}}  {:>8}  {:>8}  {:>8}\n", "total", name_w, s.totals[0], s.totals[1], s.totals[2]);
    if (s.excluded) out += fmt::format("({} images excluded by you are not counted)\n", s.excluded);

    out += "\nImage sizes (width x height, pixels):\n";
    if (s.sizes.count) {
        out += fmt::format("  min {} x {}, median {} x {}, max {} x {}; mean aspect {:.2f}\n", s.sizes.min_width,
                           s.sizes.min_height, s.sizes.median_width, s.sizes.median_height, s.sizes.max_width,
                           s.sizes.max_height, s.sizes.mean_aspect);
        out += fmt::format("  {} of {} have a shorter side below {} px and will be upscaled\n", s.sizes.smaller_than_size,
                           s.sizes.count, model_size);
    }
    std::string formats;
    for (const auto& [f, n] : s.formats) formats += fmt::format("{}{} {}", formats.empty() ? "" : ", ", n, f);
    out += "  formats: " + formats + "\n";

    if (!d.warnings.empty()) {
        out += fmt::format("\nWarnings ({}):\n", d.warnings.size());
        for (const auto& w : d.warnings) out += "  " + w + "\n";
    }
    if (d.skipped.empty()) out += "\nSkipped files: none\n";
    else {
        out += fmt::format("\nSkipped files ({}):\n", d.skipped.size());
        for (const auto& sk : d.skipped) out += fmt::format("  {}\n      {}\n", sk.path, sk.reason);
    }
    return out;
}

}  // namespace whisker::data
