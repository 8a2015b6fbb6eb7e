#pragma once
// The project's record of what was sent to Kaggle: PROJECT/submissions.json.
//
// Each submission keeps the exact file that was uploaded (a copy under PROJECT/submissions/),
// the message, the checkpoint the predictions came from (or an ensemble's members), the runs
// it belongs to, and Kaggle's verdict once it is scored. The workbench's Submit page and `whisker-cli kaggle submit --project` both append to
// it; merge() brings in scores Kaggle computed later, and submissions made elsewhere.
// Plain values; load/save are not synchronised (one writer at a time, saves are atomic).

#include "whisker/kaggle/client.h"

#include <filesystem>
#include <string>
#include <vector>

namespace whisker::kaggle {

struct SubmissionRecord {
    std::string date;            // local time it was sent, "2026-11-27 09:14:03"
    std::string file;            // the uploaded bytes, kept (relative to the project when inside it)
    std::string message;
    std::string checkpoint;      // checkpoint saved for it (PROJECT/models/<name>.*), "" when none
    std::string model;           // "resnet34 at 224 px, 5 epochs, TTA x4 (mean)"
    std::string ref;             // Kaggle's reference, "" when unknown
    std::string status;          // PENDING, COMPLETE, ERROR
    std::string public_score;
    std::string private_score;
    std::string error;           // Kaggle's error description
    // Where it came from (PROJECT/runs/, whisker/project/runs.h): the submission's own run
    // (kind "submission", 0 for older records and submissions made elsewhere), and the run
    // whose predictions were sent (a predict or ensemble run; 0 when not known).
    int run = 0;
    int source_run = 0;
    // An ensemble's members, one line each: "#3 resnet18 at 32 px, weight 2" (empty: one model).
    std::vector<std::string> members;
};

struct SubmissionHistory {
    static constexpr const char* kFileName = "submissions.json";

    std::string competition;     // the competition this project submits to ("" = not known yet)
    std::vector<SubmissionRecord> submissions;   // oldest first

    // An empty history when the project has none; throws UserError for a damaged file.
    static SubmissionHistory load(const std::filesystem::path& project);
    void save(const std::filesystem::path& project) const;

    // Updates the records Kaggle knows (matched by ref, else by message and file name) with
    // its status and scores, and appends submissions made elsewhere (no checkpoint).
    void merge(const std::vector<Submission>& from_kaggle);
    // Updates (matched by ref, or by date and file) or appends one record.
    void upsert(const SubmissionRecord& record);
};

// The local time now as "YYYY-MM-DD HH:MM:SS" (for records and file names).
std::string local_timestamp();

}  // namespace whisker::kaggle
