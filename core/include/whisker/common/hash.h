#pragma once
// SHA-256 (OpenSSL's libcrypto), as lowercase hex.

#include <filesystem>
#include <string>
#include <string_view>

namespace whisker {

std::string sha256_hex(std::string_view bytes);
// Streams the file; throws UserError if it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace whisker
