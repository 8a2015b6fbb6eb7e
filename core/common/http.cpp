#include "whisker/common/http.h"

#include <curl/curl.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <strings.h>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker {

namespace {

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
    std::FILE* file = nullptr;
    CURL* curl = nullptr;
    std::uint64_t offset = 0;       // bytes already in the .part file when this attempt began
    std::uint64_t received = 0;     // body bytes written this attempt
    bool checked_status = false;
    bool writing_error_body = false;
    bool restarted = false;         // server ignored Range: file truncated to 0
    std::string error_body;
    long retry_after = -1;
    bool write_failed = false;
    int write_errno = 0;
    const DownloadOptions* options = nullptr;
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string line(data, size * n);
    if (line.size() > 12 && strncasecmp(line.c_str(), "retry-after:", 12) == 0) {
        try {
            t->retry_after = std::stol(line.substr(12));
        } catch (...) {
            t->retry_after = -1;
        }
    }
    return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const std::size_t bytes = size * n;
    if (!t->checked_status) {
        t->checked_status = true;
        long status = 0;
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 400) t->writing_error_body = true;
        else if (status == 200 && t->offset > 0) {
            // The server sent the whole file instead of the range: start over.
            if (std::fflush(t->file) != 0 || ftruncate(fileno(t->file), 0) != 0) return 0;
            std::fseek(t->file, 0, SEEK_SET);
            t->offset = 0;
            t->restarted = true;
        }
    }
    if (t->writing_error_body) {
        if (t->error_body.size() < 4096) t->error_body.append(data, std::min<std::size_t>(bytes, 4096 - t->error_body.size()));
        return bytes;
    }
    if (std::fwrite(data, 1, bytes, t->file) != bytes) {
        t->write_failed = true;
        t->write_errno = errno;
        return 0;  // makes curl abort with CURLE_WRITE_ERROR
    }
    t->received += bytes;
    return bytes;
}

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(user);
    const DownloadOptions& o = *t->options;
    if (o.cancel && o.cancel->load()) return 1;
    if (o.progress && !t->writing_error_body) {
        const std::uint64_t done = t->offset + static_cast<std::uint64_t>(now);
        const std::uint64_t all = total > 0 ? t->offset + static_cast<std::uint64_t>(total) : 0;
        o.progress({"downloading " + o.what, done, all});
    }
    return 0;
}

void sleep_cancellable(double seconds, const std::atomic<bool>* cancel) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
        if (cancel && cancel->load()) throw Cancelled();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

std::string status_hint(long status) {
    if (status == 401) return "the server wants credentials: check them";
    if (status == 403) return "the server refused access: check your permissions";
    if (status == 404) return "the address is wrong or the file was removed";
    return "";
}

}  // namespace

DownloadResult download_file(const std::string& url, const fs::path& dest, const DownloadOptions& o) {
    global_init();
    std::error_code ec;
    if (dest.has_parent_path()) fs::create_directories(dest.parent_path(), ec);
    const fs::path part = dest.string() + ".part";
    DownloadResult result;
    std::string last_error;
    for (int attempt = 1; attempt <= o.max_attempts; ++attempt) {
        result.attempts = attempt;
        if (o.cancel && o.cancel->load()) throw Cancelled();
        std::FILE* file = std::fopen(part.c_str(), "ab");
        if (!file) throw UserError("cannot write '" + part.string() + "': " + std::strerror(errno));
        std::fseek(file, 0, SEEK_END);
        Transfer t;
        t.file = file;
        t.offset = static_cast<std::uint64_t>(std::ftell(file));
        t.options = &o;
        if (t.offset > 0) result.resumed = true;

        std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
        t.curl = curl.get();
        curl_slist* headers = nullptr;
        for (const auto& h : o.headers) headers = curl_slist_append(headers, h.c_str());
        curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 8L);
        curl_easy_setopt(curl.get(), CURLOPT_UNRESTRICTED_AUTH, 0L);
        curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "whisker/" WHISKER_VERSION);
        curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &t);
        curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, o.connect_timeout_seconds);
        curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, o.stall_timeout_seconds);
        curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
        // A plain Range request (not CURLOPT_RESUME_FROM, which fails outright when a server
        // ignores ranges): a 200 answer restarts the file in on_body instead.
        const std::string range = std::to_string(t.offset) + "-";
        if (t.offset > 0) curl_easy_setopt(curl.get(), CURLOPT_RANGE, range.c_str());

        const CURLcode rc = curl_easy_perform(curl.get());
        curl_slist_free_all(headers);
        long status = 0;
        curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
        const bool closed_ok = std::fclose(file) == 0;

        if (rc == CURLE_ABORTED_BY_CALLBACK && o.cancel && o.cancel->load()) throw Cancelled();  // .part kept
        if (t.write_failed || !closed_ok)
            throw UserError("cannot write '" + part.string() + "': " + std::strerror(t.write_errno ? t.write_errno : errno),
                            t.write_errno == ENOSPC ? "the disk is full: free some space and run again to resume" : "");

        double wait = o.first_backoff_seconds * std::pow(2.0, attempt - 1);
        if (rc != CURLE_OK) {
            last_error = curl_easy_strerror(rc);
        } else if (status == 416 && t.offset > 0) {
            // The partial file is not a prefix of what the server has: start over.
            fs::remove(part, ec);
            result.resumed = false;
            last_error = "the server could not resume the partial download";
            wait = 0;
        } else if (status >= 500 || status == 408 || status == 429) {
            last_error = "HTTP " + std::to_string(status);
            if (status == 429 && t.retry_after >= 0) wait = std::min<double>(static_cast<double>(t.retry_after), 120.0);
        } else if (status >= 400) {
            throw HttpError(static_cast<int>(status),
                            "downloading " + o.what + " failed: HTTP " + std::to_string(status) + " from " + url,
                            status_hint(status), t.error_body);
        } else {
            fs::rename(part, dest, ec);
            if (ec) throw UserError("cannot rename '" + part.string() + "': " + ec.message());
            result.bytes = fs::file_size(dest, ec);
            return result;
        }
        if (attempt < o.max_attempts) sleep_cancellable(wait, o.cancel);
    }
    throw UserError("downloading " + o.what + " failed after " + std::to_string(o.max_attempts) + " attempts (" + last_error +
                        ")",
                    "check the connection and run again: the download resumes where it stopped");
}

}  // namespace whisker
