#pragma once
// Checking a submission file against the competition's sample_submission.csv before it is
// uploaded, so a malformed file is refused here with a precise message instead of costing one
// of the day's submissions.

#include <filesystem>
#include <string>
#include <vector>

namespace whisker::kaggle {

struct SubmissionCheck {
    std::vector<std::string> problems;   // empty when the file is fine
    std::size_t rows = 0;
    bool ok() const { return problems.empty(); }
    std::string summary() const;         // the problems, one per line
};

// Reads .csv or gzip-compressed (.gz) files. Checks: same header as the sample; every id of
// the sample exactly once and no other; in columns where the sample holds numbers, numbers
// within [min_value, max_value]. At most a few examples of each kind of problem are listed.
SubmissionCheck check_submission(const std::filesystem::path& file, const std::filesystem::path& sample,
                                 double min_value = 0.0, double max_value = 1.0);

// The text of a .csv, or of a gzip-compressed .gz file (decompressed).
std::string read_text_maybe_gzip(const std::filesystem::path& file);

}  // namespace whisker::kaggle
