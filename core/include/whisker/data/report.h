#pragma once
// What a dataset holds, for `whisker-cli data report` and the GUI's Data page summary.

#include "whisker/data/dataset.h"

#include <array>
#include <map>
#include <string>
#include <vector>

namespace whisker::data {

struct SizeStats {
    std::size_t count = 0;
    int min_width = 0, max_width = 0, median_width = 0;
    int min_height = 0, max_height = 0, median_height = 0;
    double mean_aspect = 0.0;                 // width / height
    std::size_t smaller_than_size = 0;        // shorter side below the size asked about
};

struct DatasetSummary {
    std::vector<std::string> classes;
    // counts[class][split]; index classes.size() holds unlabelled (test) images.
    std::vector<std::array<std::size_t, 3>> counts;
    std::array<std::size_t, 3> totals{};
    std::size_t excluded = 0;
    std::map<std::string, std::size_t> formats;
    SizeStats sizes;
    std::size_t skipped = 0;
};

// `model_size` (e.g. 224) counts images whose shorter side is smaller (they will be upscaled).
DatasetSummary summarize(const Dataset& dataset, int model_size = 224);

// The human-readable report: counts per class and split, image sizes, warnings, and every
// skipped file with its reason.
std::string format_report(const Dataset& dataset, int model_size = 224);

}  // namespace whisker::data
