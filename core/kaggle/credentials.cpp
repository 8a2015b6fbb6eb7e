#include "whisker/kaggle/credentials.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/http.h"

#include <nlohmann/json.hpp>

#include "whisker/common/environment.h"

#include <cstdlib>
#include <sys/stat.h>

namespace fs = std::filesystem;

namespace whisker::kaggle {

namespace {
std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
    return s;
}
void warn_if_readable_by_others(const fs::path& file, Credentials& c) {
    struct stat st {};
    if (::stat(file.c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
        c.warnings.push_back("Your Kaggle API key is readable by other users on this system! To fix this, run 'chmod 600 " +
                             file.string() + "'");
}
}  // namespace

std::string Credentials::authorization_header() const {
    if (is_token) return "Authorization: Bearer " + secret;
    return "Authorization: Basic " + base64_encode(username + ":" + secret);
}

std::string Credentials::describe() const {
    if (is_token) return "an access token (from " + source + ")";
    return "user '" + username + "' (from " + source + ")";
}

fs::path config_dir() {
    const std::string explicit_dir = environment_variable("KAGGLE_CONFIG_DIR");
    if (!explicit_dir.empty()) return explicit_dir;
    const fs::path home = environment_variable("HOME");
    const fs::path dot = home / ".kaggle";
    std::error_code ec;
    if (fs::exists(dot, ec)) return dot;
    fs::path xdg = environment_variable("XDG_CONFIG_HOME");
    if (xdg.empty()) xdg = home / ".config";
    return xdg / "kaggle";
}

std::optional<Credentials> find_credentials() {
    const fs::path dir = config_dir();
    std::error_code ec;
    // 1. access tokens
    if (const std::string t = environment_variable("KAGGLE_API_TOKEN"); !t.empty()) {
        Credentials c;
        c.is_token = true;
        if (fs::is_regular_file(t, ec)) {
            c.secret = trim(read_file(t));
            c.source = t;
            warn_if_readable_by_others(t, c);
        } else {
            c.secret = t;
            c.source = "$KAGGLE_API_TOKEN";
        }
        if (!c.secret.empty()) return c;
    }
    for (const char* name : {"access_token", "access_token.txt"}) {
        const fs::path f = dir / name;
        if (!fs::is_regular_file(f, ec)) continue;
        Credentials c;
        c.is_token = true;
        c.secret = trim(read_file(f));
        c.source = f.string();
        warn_if_readable_by_others(f, c);
        if (!c.secret.empty()) return c;
    }
    // 2. environment
    if (!environment_variable("KAGGLE_USERNAME").empty() && !environment_variable("KAGGLE_KEY").empty()) {
        Credentials c;
        c.username = environment_variable("KAGGLE_USERNAME");
        c.secret = environment_variable("KAGGLE_KEY");
        c.source = "$KAGGLE_USERNAME/$KAGGLE_KEY";
        return c;
    }
    // 3. kaggle.json
    const fs::path json_file = dir / "kaggle.json";
    if (fs::is_regular_file(json_file, ec)) {
        Credentials c;
        try {
            const auto j = nlohmann::json::parse(read_file(json_file));
            c.username = j.at("username").get<std::string>();
            c.secret = j.at("key").get<std::string>();
        } catch (const std::exception&) {
            throw UserError("'" + json_file.string() + "' is not a valid kaggle.json (expected {\"username\": …, \"key\": …})",
                            credentials_help());
        }
        c.source = json_file.string();
        warn_if_readable_by_others(json_file, c);
        return c;
    }
    return std::nullopt;
}

Credentials require_credentials() {
    auto c = find_credentials();
    if (!c) throw UserError("no Kaggle credentials found", credentials_help());
    return *c;
}

std::string credentials_help() {
    return "create an API token on https://www.kaggle.com/settings (Account > API > Create New Token) and save "
           "kaggle.json as " + (config_dir() / "kaggle.json").string() +
           " (chmod 600), or run 'whisker-cli kaggle login', or set KAGGLE_USERNAME and KAGGLE_KEY";
}

fs::path write_kaggle_json(const std::string& username, const std::string& key, const fs::path& dir) {
    if (username.empty() || key.empty()) throw UserError("both the Kaggle username and the API key are needed");
    std::error_code ec;
    fs::create_directories(dir, ec);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    const fs::path file = dir / "kaggle.json";
    AtomicFile f(file);
    ::chmod(f.temp_path().c_str(), 0600);  // never readable by others, not even for a moment
    f.write(nlohmann::json{{"username", username}, {"key", key}}.dump() + "\n");
    f.commit();
    return file;
}

}  // namespace whisker::kaggle
