#include "whisker/common/http.h"

#include <curl/curl.h>
#include <openssl/evp.h>

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
        curl_easy_setopt(curl.get(), CURLOPT_FILETIME, 1L);
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
            curl_off_t filetime = -1;
            curl_easy_getinfo(curl.get(), CURLINFO_FILETIME_T, &filetime);
            curl_off_t expected = -1;
            curl_easy_getinfo(curl.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected);
            const std::uint64_t have = fs::file_size(part, ec);
            if (expected >= 0 && have != t.offset + static_cast<std::uint64_t>(expected)) {
                last_error = "the file is " + std::to_string(have) + " bytes, the server announced " +
                             std::to_string(t.offset + static_cast<std::uint64_t>(expected));
                if (attempt < o.max_attempts) sleep_cancellable(wait, o.cancel);
                continue;
            }
            fs::rename(part, dest, ec);
            if (ec) throw UserError("cannot rename '" + part.string() + "': " + ec.message());
            result.bytes = fs::file_size(dest, ec);
            result.last_modified = static_cast<std::int64_t>(filetime);
            return result;
        }
        if (attempt < o.max_attempts) sleep_cancellable(wait, o.cancel);
    }
    throw UserError("downloading " + o.what + " failed after " + std::to_string(o.max_attempts) + " attempts (" + last_error +
                        ")",
                    "check the connection and run again: the download resumes where it stopped");
}

std::string HttpResponse::header(const std::string& lower_name) const {
    for (const auto& [k, v] : headers)
        if (k == lower_name) return v;
    return "";
}

namespace {
struct RequestState {
    HttpResponse* response;
    std::FILE* upload = nullptr;
    const HttpRequest* request;
    curl_off_t upload_size = 0;
};

std::size_t collect_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* st = static_cast<RequestState*>(user);
    st->response->body.append(data, size * n);
    return size * n;
}

std::size_t collect_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* st = static_cast<RequestState*>(user);
    std::string line(data, size * n);
    const auto colon = line.find(':');
    if (line.rfind("HTTP/", 0) == 0) st->response->headers.clear();  // a new response (e.g. after 100-continue)
    else if (colon != std::string::npos) {
        std::string name = line.substr(0, colon), value = line.substr(colon + 1);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
        while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
        st->response->headers.emplace_back(name, value);
    }
    return size * n;
}

std::size_t read_upload(char* buffer, std::size_t size, std::size_t n, void* user) {
    auto* st = static_cast<RequestState*>(user);
    return std::fread(buffer, 1, size * n, st->upload);
}

int request_progress(void* user, curl_off_t, curl_off_t, curl_off_t ultotal, curl_off_t ulnow) {
    auto* st = static_cast<RequestState*>(user);
    if (st->request->cancel && st->request->cancel->load()) return 1;
    if (st->request->upload_progress && st->upload && ultotal > 0)
        st->request->upload_progress({"uploading", static_cast<std::uint64_t>(ulnow), static_cast<std::uint64_t>(ultotal)});
    return 0;
}
}  // namespace

HttpResponse http_request(const HttpRequest& r) {
    global_init();
    HttpResponse response;
    RequestState st{&response, nullptr, &r};
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    curl_slist* headers = nullptr;
    for (const auto& h : r.headers) headers = curl_slist_append(headers, h.c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
    curl_easy_setopt(curl.get(), CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "whisker/" WHISKER_VERSION);
    curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, r.follow_redirects ? 1L : 0L);
    curl_easy_setopt(curl.get(), CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &st);
    curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, request_progress);
    curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &st);
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, r.timeout_seconds);
    curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    if (r.method == "POST") {
        curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
        curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, r.body.c_str());
        curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    } else if (r.method == "HEAD") {
        curl_easy_setopt(curl.get(), CURLOPT_NOBODY, 1L);
    } else if (r.method == "PUT") {
        st.upload = std::fopen(r.upload_file.c_str(), "rb");
        if (!st.upload) throw UserError("cannot open '" + r.upload_file.string() + "' to upload it");
        std::error_code ec;
        st.upload_size = static_cast<curl_off_t>(fs::file_size(r.upload_file, ec));
        curl_easy_setopt(curl.get(), CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl.get(), CURLOPT_READFUNCTION, read_upload);
        curl_easy_setopt(curl.get(), CURLOPT_READDATA, &st);
        curl_easy_setopt(curl.get(), CURLOPT_INFILESIZE_LARGE, st.upload_size);
    } else if (r.method != "GET") {
        curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, r.method.c_str());
    }
    const CURLcode rc = curl_easy_perform(curl.get());
    if (st.upload) std::fclose(st.upload);
    if (rc == CURLE_ABORTED_BY_CALLBACK && r.cancel && r.cancel->load()) throw Cancelled();
    if (rc != CURLE_OK) throw UserError(std::string("no answer from ") + r.url + ": " + curl_easy_strerror(rc),
                                        "check the network connection and try again");
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    return response;
}

std::string base64_encode(const std::string& bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

}  // namespace whisker
