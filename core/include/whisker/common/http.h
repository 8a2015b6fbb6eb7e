#pragma once
// File downloads over HTTP(S) with libcurl: resumable, retried, cancellable.
//
// The bytes go to "<dest>.part"; an interrupted download is resumed from there with a Range
// request (a server that ignores Range restarts it cleanly), and the file is renamed to
// `dest` only when complete. Connection errors, stalls, 5xx, 408 and 429 are retried with
// exponential backoff (429 honours Retry-After); other 4xx fail at once with HttpError.
// Redirects are followed; custom headers such as Authorization are never logged and never
// sent to another host after a redirect. Thread-safe: each call uses its own handle.

#include "whisker/common/errors.h"
#include "whisker/common/parallel.h"

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

namespace whisker {

class HttpError : public UserError {
public:
    HttpError(int status, const std::string& what, const std::string& hint, std::string body)
        : UserError(what, hint), status_(status), body_(std::move(body)) {}
    int status() const { return status_; }
    const std::string& body() const { return body_; }  // the server's error text (truncated)

private:
    int status_;
    std::string body_;
};

struct DownloadOptions {
    std::string what = "the file";          // named in progress and error messages
    std::vector<std::string> headers;       // extra request headers ("Name: value")
    ProgressFn progress;                    // bytes done / total (total 0 when unknown)
    const std::atomic<bool>* cancel = nullptr;
    int max_attempts = 5;
    double first_backoff_seconds = 1.0;     // doubles after each failed attempt
    long connect_timeout_seconds = 30;
    long stall_timeout_seconds = 60;        // abort (and retry) when no byte arrives this long
};

struct DownloadResult {
    std::uint64_t bytes = 0;     // size of the finished file
    int attempts = 0;
    bool resumed = false;        // a previous partial download was continued
    std::int64_t last_modified = -1;  // the server's Last-Modified (Unix time), -1 if not sent
};

DownloadResult download_file(const std::string& url, const std::filesystem::path& dest,
                             const DownloadOptions& options = {});

// One HTTP request, no retries: the caller decides what to retry. Redirects are not followed
// unless asked (so a Location can be read and followed without credentials).
struct HttpRequest {
    std::string method = "GET";            // GET, POST, PUT, HEAD
    std::string url;
    std::vector<std::string> headers;      // "Name: value"
    std::string body;                      // for POST
    std::filesystem::path upload_file;     // for PUT: streamed from disk
    bool follow_redirects = false;
    long timeout_seconds = 120;
    ProgressFn upload_progress;
    const std::atomic<bool>* cancel = nullptr;
};
struct HttpResponse {
    int status = 0;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
    std::string header(const std::string& lower_name) const;   // "" when absent
};
// Throws UserError when no response arrived (connection refused, timeout), Cancelled on cancel.
HttpResponse http_request(const HttpRequest& request);

// Standard base64 (for HTTP Basic credentials).
std::string base64_encode(const std::string& bytes);

}  // namespace whisker
