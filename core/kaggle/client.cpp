#include "whisker/kaggle/client.h"

#include "whisker/common/http.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include "whisker/common/environment.h"

#include <cstdlib>
#include <random>
#include <sys/stat.h>
#include <thread>
#include <utime.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::kaggle {

namespace {

constexpr const char* kService = "competitions.CompetitionApiService";

void sleep_cancellable(double seconds, const std::atomic<bool>* cancel) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
        if (cancel && cancel->load()) throw Cancelled();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

std::string str(const json& j, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return "";
    if (j[key].is_string()) return j[key].get<std::string>();
    return j[key].dump();
}
std::uint64_t u64(const json& j, const char* key) {
    if (!j.contains(key)) return 0;
    if (j[key].is_string()) return std::stoull(j[key].get<std::string>());  // int64 may arrive as a string
    return j[key].get<std::uint64_t>();
}
int integer(const json& j, const char* key) { return static_cast<int>(u64(j, key)); }

std::string upper(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

Submission parse_submission(const json& j) {
    Submission s;
    s.ref = str(j, "ref");
    s.date = str(j, "date");
    s.description = str(j, "description");
    s.file_name = str(j, "fileName");
    const std::string status = upper(str(j, "status"));
    s.status = status.empty() ? "PENDING" : status;  // default values are left out on the wire
    s.public_score = str(j, "publicScore");
    s.private_score = str(j, "privateScore");
    s.error_description = str(j, "errorDescription");
    s.total_bytes = u64(j, "totalBytes");
    return s;
}


}  // namespace

struct Client::Reply {
    int status = 0;
    json body;
    std::string raw;
    std::string location;
    long retry_after = -1;
};

std::string percent_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
        else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string Client::default_endpoint() {
    const std::string e = environment_variable("KAGGLE_API_ENDPOINT");
    return e.empty() ? "https://api.kaggle.com" : e;
}

Client::Client(Credentials credentials, ClientOptions options)
    : credentials_(std::move(credentials)), options_(std::move(options)) {
    origin_ = options_.endpoint.empty() ? default_endpoint() : options_.endpoint;
    while (!origin_.empty() && origin_.back() == '/') origin_.pop_back();
}

std::string Client::legacy_base() const {
    if (origin_ == "https://api.kaggle.com") return "https://www.kaggle.com/api/v1";
    return origin_ + "/api/v1";
}

Client::Reply Client::send_with_retries(const std::function<Reply()>& once) {
    std::string last;
    for (int attempt = 1;; ++attempt) {
        Reply r;
        try {
            r = once();
        } catch (const Cancelled&) {
            throw;
        } catch (const UserError& e) {  // no answer at all
            last = e.what();
            if (attempt >= options_.max_attempts)
                throw KaggleError(0, "Kaggle did not answer: " + last, "check the network connection and try again");
            sleep_cancellable(std::min(options_.first_backoff_seconds * std::pow(2.0, attempt - 1), 60.0), options_.cancel);
            continue;
        }
        const bool retry = r.status >= 500 || r.status == 429 || r.status == 408;
        if (!retry || attempt >= options_.max_attempts) return r;
        double wait = std::min(options_.first_backoff_seconds * std::pow(2.0, attempt - 1), 60.0);
        if (r.status == 429 && r.retry_after >= 0) wait = std::min<double>(static_cast<double>(r.retry_after), 120.0);
        sleep_cancellable(wait, options_.cancel);
    }
}

namespace {
[[noreturn]] void throw_for(int status, const std::string& raw, const json& body, const std::string& url,
                            const Credentials& creds, const std::string& competition) {
    std::string message = body.is_object() && body.contains("message") ? str(body, "message") : "";
    if (status == 401)
        throw KaggleError(status, "Kaggle refused the credentials of " + creds.describe() +
                                      (message.empty() ? "" : ": " + message),
                          credentials_help());
    if (status == 403 && (message.find("rules") != std::string::npos || message.empty()) && !competition.empty())
        throw KaggleError(status,
                          message.empty() ? "You must accept this competition's rules before you'll be able to download files."
                                          : message,
                          "accept the rules at https://www.kaggle.com/c/" + competition + "/rules, then run again");
    if (status == 404 && !competition.empty())
        throw KaggleError(status, message.empty() ? "competition '" + competition + "' not found" : message,
                          "check the competition's name (the last part of its URL, e.g. dogs-vs-cats-redux-kernels-edition)");
    if (message.empty()) message = std::to_string(status) + " error for url: " + url + (raw.empty() ? "" : " (" + raw.substr(0, 200) + ")");
    throw KaggleError(status, message);
}
}  // namespace

Client::Reply Client::to_reply(const HttpResponse& resp) {
    Reply out;
    out.status = resp.status;
    out.raw = resp.body;
    out.location = resp.header("location");
    const std::string ra = resp.header("retry-after");
    if (!ra.empty()) out.retry_after = std::atol(ra.c_str());
    out.body = json::parse(resp.body, nullptr, false);
    return out;
}

Client::Reply Client::call(const std::string& method, const std::string& body_json, const std::string& competition) {
    const std::string url = origin_ + "/v1/" + kService + "/" + method;
    Reply r = send_with_retries([&] {
        HttpRequest req;
        req.method = "POST";
        req.url = url;
        req.headers = {credentials_.authorization_header(), "Content-Type: application/json", "Accept: application/json"};
        req.body = body_json;
        req.cancel = options_.cancel;
        return to_reply(http_request(req));
    });
    if (r.status >= 400 && !(r.status == 404 && !(r.body.is_object() && r.body.contains("message"))))
        throw_for(r.status, r.raw, r.body, url, credentials_, competition);
    return r;
}

Client::Reply Client::legacy(const std::string& http_method, const std::string& path, const std::string& form,
                             const std::string& competition) {
    const std::string url = legacy_base() + path;
    Reply r = send_with_retries([&] {
        HttpRequest req;
        req.method = http_method;
        req.url = url;
        req.headers = {credentials_.authorization_header()};
        if (http_method == "POST") {
            req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
            req.body = form;
        }
        req.cancel = options_.cancel;
        return to_reply(http_request(req));
    });
    if (r.status >= 400) throw_for(r.status, r.raw, r.body, url, credentials_, competition);
    return r;
}

bool Client::rpc_missing(const Reply& r) {
    // call() lets only a plain 404 (no JSON message) through: the server has no RPC API.
    if (r.status == 404) legacy_ = true;
    return legacy_;
}

std::vector<DataFile> Client::list_files(const std::string& competition) {
    std::vector<DataFile> files;
    if (!legacy_) {
        std::string token;
        do {
            json req{{"competitionName", competition}};
            if (!token.empty()) req["pageToken"] = token;
            Reply r = call("ListDataFiles", req.dump(), competition);
            if (rpc_missing(r)) break;
            for (const auto& f : r.body.value("files", json::array()))
                files.push_back({str(f, "name"), u64(f, "totalBytes"), str(f, "creationDate")});
            token = str(r.body, "nextPageToken");
        } while (!token.empty());
        if (!legacy_) return files;
    }
    Reply r = legacy("GET", "/competitions/data/list/" + percent_encode(competition), "", competition);
    for (const auto& f : r.body.is_array() ? r.body : json::array())
        files.push_back({str(f, "name"), u64(f, "totalBytes"), str(f, "creationDate")});
    return files;
}

DownloadReport Client::download_all(const std::string& competition, const fs::path& dir, bool force,
                                    const ProgressFn& progress) {
    Reply r;
    if (!legacy_) {
        r = call("DownloadDataFiles", json{{"competitionName", competition}}.dump(), competition);
        rpc_missing(r);
    }
    if (legacy_) r = legacy("GET", "/competitions/data/download-all/" + percent_encode(competition), "", competition);
    if (r.location.empty() || r.status < 300 || r.status >= 400)
        throw KaggleError(r.status, "Kaggle did not redirect to the competition's archive (HTTP " + std::to_string(r.status) + ")");
    std::string location = r.location;
    if (location.rfind("http", 0) != 0) location = origin_ + location;  // relative redirect

    DownloadReport report;
    report.file = dir / (competition + ".zip");
    // Ask the storage host (without credentials) what it has, to skip a current local copy.
    HttpRequest head;
    head.method = "HEAD";
    head.url = location;
    head.cancel = options_.cancel;
    std::int64_t remote_size = -1;
    std::int64_t remote_time = -1;
    try {
        const HttpResponse h = http_request(head);
        if (h.status == 200) {
            const std::string len = h.header("content-length");
            if (!len.empty()) remote_size = std::atoll(len.c_str());
            const std::string lm = h.header("last-modified");
            if (!lm.empty()) remote_time = static_cast<std::int64_t>(curl_getdate(lm.c_str(), nullptr));
        }
    } catch (const UserError&) {
        // No HEAD answer: download anyway.
    }
    std::error_code ec;
    if (!force && remote_size >= 0 && fs::is_regular_file(report.file, ec) &&
        static_cast<std::int64_t>(fs::file_size(report.file, ec)) == remote_size) {
        struct stat st {};
        if (::stat(report.file.c_str(), &st) == 0 && (remote_time < 0 || st.st_mtime >= remote_time)) {
            report.skipped = true;
            report.bytes = static_cast<std::uint64_t>(remote_size);
            return report;
        }
    }
    if (force) fs::remove(report.file.string() + ".part", ec);
    DownloadOptions o;
    o.what = competition + ".zip";
    o.progress = progress;
    o.cancel = options_.cancel;
    o.max_attempts = options_.max_attempts;
    o.first_backoff_seconds = options_.first_backoff_seconds;
    // No Kaggle credentials go to the storage host.
    const DownloadResult d = download_file(location, report.file, o);
    report.bytes = d.bytes;
    if (remote_size >= 0 && static_cast<std::int64_t>(d.bytes) != remote_size) {
        fs::remove(report.file, ec);
        throw KaggleError(0, "the downloaded archive has " + std::to_string(d.bytes) + " bytes, " +
                                 std::to_string(remote_size) + " were announced; it was deleted",
                          "run again");
    }
    const std::int64_t mtime = d.last_modified >= 0 ? d.last_modified : remote_time;
    if (mtime >= 0) {
        struct utimbuf times {static_cast<time_t>(mtime), static_cast<time_t>(mtime)};
        ::utime(report.file.c_str(), &times);
    }
    return report;
}

SubmissionLimits Client::limits(const std::string& competition) {
    SubmissionLimits l;
    Reply r = call("GetSubmissionLimits", json{{"competitionName", competition}}.dump(), competition);
    if (r.status == 404) {
        l.num_allowed_now = 1;  // the legacy API has no limits call: let the upload decide
        return l;
    }
    l.num_today = integer(r.body, "numToday");
    l.num_total = integer(r.body, "numTotal");
    l.num_allowed_now = integer(r.body, "numAllowedNow");
    l.limited_by_total = r.body.value("limitedByTotal", false);
    return l;
}

std::string Client::submit(const std::string& competition, const fs::path& file, const std::string& message,
                           const ProgressFn& progress) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) throw UserError("'" + file.string() + "' does not exist");
    const SubmissionLimits lim = limits(competition);
    if (lim.num_allowed_now <= 0)
        throw KaggleError(0, "the submission limit is reached: " + std::to_string(lim.num_today) + " submissions today" +
                                 (lim.limited_by_total ? " (the competition's total limit)" : ""),
                          "try again after the daily limit resets (midnight UTC)");
    const auto size = fs::file_size(file);
    struct stat st {};
    ::stat(file.c_str(), &st);
    std::string token, create_url;
    if (!legacy_) {
        Reply r = call("StartSubmissionUpload",
                       json{{"competitionName", competition},
                            {"contentLength", size},
                            {"lastModifiedEpochSeconds", static_cast<std::int64_t>(st.st_mtime)},
                            {"fileName", file.filename().string()}}
                           .dump(),
                       competition);
        if (!rpc_missing(r)) {
            token = str(r.body, "token");
            create_url = str(r.body, "createUrl");
        }
    }
    if (legacy_) {
        Reply r = legacy("POST",
                         "/competitions/" + percent_encode(competition) + "/submissions/url/" + std::to_string(size) + "/" +
                             std::to_string(static_cast<std::int64_t>(st.st_mtime)),
                         "fileName=" + percent_encode(file.filename().string()), competition);
        token = str(r.body, "token");
        create_url = str(r.body, "createUrl");
    }
    if (token.empty() || create_url.empty()) throw KaggleError(0, "Kaggle did not return an upload address");
    if (create_url.rfind("http", 0) != 0) create_url = origin_ + create_url;

    HttpRequest put;
    put.method = "PUT";
    put.url = create_url;
    put.upload_file = file;
    put.upload_progress = progress;
    put.cancel = options_.cancel;
    put.timeout_seconds = 3600;
    const HttpResponse up = http_request(put);  // no Kaggle credentials, no Content-Type
    if (up.status != 200 && up.status != 201)
        throw KaggleError(up.status, "the upload of " + file.filename().string() + " failed (HTTP " + std::to_string(up.status) + ")",
                          "nothing was submitted; try again");

    if (!legacy_) {
        Reply r = call("CreateSubmission",
                       json{{"competitionName", competition}, {"blobFileTokens", token}, {"submissionDescription", message}}.dump(),
                       competition);
        return str(r.body, "ref");
    }
    legacy("POST", "/competitions/submissions/submit/" + percent_encode(competition),
           "blobFileTokens=" + percent_encode(token) + "&submissionDescription=" + percent_encode(message), competition);
    return "";
}

std::vector<Submission> Client::submissions(const std::string& competition) {
    std::vector<Submission> out;
    if (!legacy_) {
        Reply r = call("ListSubmissions", json{{"competitionName", competition}, {"page", -1}, {"pageSize", 20}}.dump(),
                       competition);
        if (!rpc_missing(r)) {
            for (const auto& s : r.body.value("submissions", json::array())) out.push_back(parse_submission(s));
            return out;
        }
    }
    Reply r = legacy("GET", "/competitions/submissions/list/" + percent_encode(competition), "", competition);
    for (const auto& s : r.body.is_array() ? r.body : json::array()) out.push_back(parse_submission(s));
    return out;
}

Submission Client::wait_for_result(const std::string& competition, const std::string& ref, const std::string& description,
                                   const std::function<void(const Submission&)>& on_poll) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(options_.poll_timeout_seconds);
    for (;;) {
        Submission s;
        bool found = false;
        if (!ref.empty() && !legacy_) {
            Reply r = call("GetSubmission", json{{"ref", ref}}.dump(), "");
            if (!rpc_missing(r)) {
                s = parse_submission(r.body);
                found = true;
            }
        }
        if (!found) {
            for (const auto& candidate : submissions(competition))
                if ((!ref.empty() && candidate.ref == ref) || (ref.empty() && candidate.description == description)) {
                    s = candidate;
                    found = true;
                    break;
                }
        }
        if (found && on_poll) on_poll(s);
        if (found && s.finished()) return s;
        if (std::chrono::steady_clock::now() > deadline)
            throw KaggleError(0, "the submission was not scored within " + std::to_string(static_cast<int>(options_.poll_timeout_seconds)) +
                                     " s", "see its state later with: whisker-cli kaggle submissions " + competition);
        sleep_cancellable(options_.poll_interval_seconds, options_.cancel);
    }
}

}  // namespace whisker::kaggle
