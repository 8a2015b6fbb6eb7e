#include "whisker/kaggle/submission_history.h"

#include "whisker/common/local_time.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"

#include <nlohmann/json.hpp>

#include <ctime>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::kaggle {

std::string local_timestamp() { return local_time_text(); }

SubmissionHistory SubmissionHistory::load(const fs::path& project) {
    SubmissionHistory h;
    const fs::path file = project / kFileName;
    std::error_code ec;
    if (!fs::exists(file, ec)) return h;
    try {
        const json j = json::parse(read_file(file));
        h.competition = j.value("competition", "");
        for (const auto& e : j.value("submissions", json::array())) {
            SubmissionRecord r;
            r.date = e.value("date", "");
            r.file = e.value("file", "");
            r.message = e.value("message", "");
            r.checkpoint = e.value("checkpoint", "");
            r.model = e.value("model", "");
            r.ref = e.value("ref", "");
            r.status = e.value("status", "");
            r.public_score = e.value("public_score", "");
            r.private_score = e.value("private_score", "");
            r.error = e.value("error", "");
            r.run = e.value("run", 0);
            r.source_run = e.value("source_run", 0);
            r.members = e.value("members", std::vector<std::string>{});
            h.submissions.push_back(std::move(r));
        }
    } catch (const json::exception& e) {
        throw UserError(file.string() + " is damaged: " + e.what(), "fix or delete it (it only records past submissions)");
    }
    return h;
}

void SubmissionHistory::save(const fs::path& project) const {
    json subs = json::array();
    for (const auto& r : submissions) {
        json e{{"date", r.date}, {"file", r.file}, {"message", r.message}, {"checkpoint", r.checkpoint},
               {"model", r.model}, {"ref", r.ref}, {"status", r.status}, {"public_score", r.public_score},
               {"private_score", r.private_score}, {"error", r.error}};
        if (r.run > 0) e["run"] = r.run;
        if (r.source_run > 0) e["source_run"] = r.source_run;
        if (!r.members.empty()) e["members"] = r.members;
        subs.push_back(std::move(e));
    }
    write_file_atomically(project / kFileName, json{{"competition", competition}, {"submissions", subs}}.dump(1));
}

namespace {
void apply(SubmissionRecord& r, const Submission& s) {
    if (r.ref.empty()) r.ref = s.ref;
    r.status = s.status;
    r.public_score = s.public_score;
    r.private_score = s.private_score;
    r.error = s.error_description;
}
}  // namespace

void SubmissionHistory::merge(const std::vector<Submission>& from_kaggle) {
    for (const auto& s : from_kaggle) {
        SubmissionRecord* match = nullptr;
        for (auto& r : submissions)
            if (!s.ref.empty() && r.ref == s.ref) match = &r;
        if (!match)
            for (auto& r : submissions)
                if (r.ref.empty() && r.message == s.description && fs::path(r.file).filename() == fs::path(s.file_name).filename())
                    match = &r;
        if (match) {
            apply(*match, s);
            continue;
        }
        SubmissionRecord r;
        r.date = s.date;
        r.file = s.file_name;
        r.message = s.description;
        apply(r, s);
        submissions.push_back(std::move(r));
    }
}

void SubmissionHistory::upsert(const SubmissionRecord& record) {
    for (auto& r : submissions)
        if ((!record.ref.empty() && r.ref == record.ref) || (r.date == record.date && r.file == record.file)) {
            r = record;
            return;
        }
    submissions.push_back(record);
}

}  // namespace whisker::kaggle
