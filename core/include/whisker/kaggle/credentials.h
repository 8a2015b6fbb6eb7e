#pragma once
// Kaggle credentials, found exactly where the official Kaggle CLI looks.
//
// Order: an access token ($KAGGLE_API_TOKEN — the token itself or a file holding it — then
// <config>/access_token, <config>/access_token.txt), then $KAGGLE_USERNAME + $KAGGLE_KEY, then
// <config>/kaggle.json. The config folder is $KAGGLE_CONFIG_DIR, else ~/.kaggle, else (when
// ~/.kaggle does not exist) ${XDG_CONFIG_HOME:-~/.config}/kaggle.
// The key or token never appears in describe(), in an error message, or in a log line.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace whisker::kaggle {

struct Credentials {
    std::string username;          // empty for access tokens
    std::string secret;            // API key or access token: never print it
    bool is_token = false;
    std::string source;            // where they came from, e.g. "/root/.kaggle/kaggle.json"
    std::vector<std::string> warnings;  // e.g. the file is readable by other users

    // "Authorization: Bearer …" for tokens, else HTTP Basic username:key.
    std::string authorization_header() const;
    // Safe to show: "user 'alice' (from /root/.kaggle/kaggle.json)".
    std::string describe() const;
};

std::filesystem::path config_dir();
std::optional<Credentials> find_credentials();
// Like find_credentials, but throws UserError explaining how to set them up.
Credentials require_credentials();
// Writes <config>/kaggle.json with mode 0600 (atomically) and returns its path.
std::filesystem::path write_kaggle_json(const std::string& username, const std::string& key,
                                        const std::filesystem::path& dir = config_dir());
// The help shown when credentials are missing or rejected (HTTP 401).
std::string credentials_help();

}  // namespace whisker::kaggle
