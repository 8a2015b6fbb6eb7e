#pragma once
// A native client for Kaggle competitions (see shared/spec/kaggle-api.md): list and download
// the data, check the daily limit, upload a submission, follow it until it is scored.
//
// It speaks the current RPC protocol (POST <origin>/v1/competitions.CompetitionApiService/
// <Method>, JSON) and falls back to the legacy REST paths (<origin>/api/v1/…, or
// https://www.kaggle.com/api/v1 for the default origin) when an RPC path answers a plain 404.
// The origin is https://api.kaggle.com unless ClientOptions::endpoint or $KAGGLE_API_ENDPOINT
// says otherwise. Connection errors, 5xx and 429 (Retry-After) are retried with backoff.
// Storage downloads and uploads never carry Kaggle credentials.
// All calls block and may run on a worker thread; `cancel` stops them (Cancelled).

#include "whisker/common/parallel.h"
#include "whisker/common/errors.h"
#include "whisker/common/http.h"
#include "whisker/kaggle/credentials.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace whisker::kaggle {

class KaggleError : public UserError {
public:
    KaggleError(int status, const std::string& what, const std::string& hint = {}) : UserError(what, hint), status_(status) {}
    int status() const { return status_; }

private:
    int status_;
};

struct DataFile {
    std::string name;
    std::uint64_t total_bytes = 0;
    std::string creation_date;
};

struct Submission {
    std::string ref;
    std::string date;
    std::string description;
    std::string file_name;
    std::string status = "PENDING";   // PENDING, COMPLETE or ERROR
    std::string public_score;         // as Kaggle sends it (a string); empty until scored
    std::string private_score;
    std::string error_description;
    std::uint64_t total_bytes = 0;
    bool finished() const { return status == "COMPLETE" || status == "ERROR"; }
};

struct SubmissionLimits {
    int num_today = 0;
    int num_total = 0;
    int num_allowed_now = 0;
    bool limited_by_total = false;
};

struct ClientOptions {
    std::string endpoint;                   // origin; empty = $KAGGLE_API_ENDPOINT or https://api.kaggle.com
    int max_attempts = 5;
    double first_backoff_seconds = 1.0;
    double poll_interval_seconds = 5.0;     // while waiting for a score
    double poll_timeout_seconds = 3600.0;
    const std::atomic<bool>* cancel = nullptr;
};

struct DownloadReport {
    std::filesystem::path file;             // <dir>/<competition>.zip
    bool skipped = false;                   // the local copy was complete and current
    std::uint64_t bytes = 0;
};

class Client {
public:
    explicit Client(Credentials credentials, ClientOptions options = {});

    static std::string default_endpoint();
    const std::string& endpoint() const { return origin_; }

    std::vector<DataFile> list_files(const std::string& competition);
    // Downloads the all-files archive into dir/<competition>.zip (resuming a partial file),
    // unless a complete, current copy is there and !force.
    DownloadReport download_all(const std::string& competition, const std::filesystem::path& dir, bool force,
                                const ProgressFn& progress = {});
    SubmissionLimits limits(const std::string& competition);
    // Upload (start upload -> PUT -> create submission). Returns the submission's ref ("" when
    // the legacy API gives none). Refuses when the daily limit is reached.
    std::string submit(const std::string& competition, const std::filesystem::path& file, const std::string& message,
                       const ProgressFn& progress = {});
    // Polls until the submission is COMPLETE or ERROR (or the timeout), calling on_poll each time.
    Submission wait_for_result(const std::string& competition, const std::string& ref, const std::string& description,
                               const std::function<void(const Submission&)>& on_poll = {});
    std::vector<Submission> submissions(const std::string& competition);

private:
    struct Reply;
    Reply call(const std::string& method, const std::string& body_json, const std::string& competition);
    Reply legacy(const std::string& http_method, const std::string& path, const std::string& form,
                 const std::string& competition);
    Reply send_with_retries(const std::function<Reply()>& once);
    bool rpc_missing(const Reply& reply);
    static Reply to_reply(const HttpResponse& response);
    std::string legacy_base() const;

    Credentials credentials_;
    ClientOptions options_;
    std::string origin_;
    bool legacy_ = false;   // the RPC paths answered 404 once: use REST from then on
};

// Percent-encodes everything but unreserved characters ('/' too), as the legacy API wants.
std::string percent_encode(const std::string& s);

}  // namespace whisker::kaggle
