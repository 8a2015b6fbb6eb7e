#include "whisker/common/files.h"

#include "whisker/common/errors.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker {

namespace {
std::string errno_text() { return std::strerror(errno); }

fs::path unique_temp_name(const fs::path& target) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp-%08llx",
                  static_cast<unsigned long long>(rng() & 0xffffffffULL));
    return target.parent_path() / (target.filename().string() + suffix);
}
}  // namespace

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError("cannot open '" + path.string() + "': " + errno_text());
    std::string bytes;
    in.seekg(0, std::ios::end);
    const auto size = in.tellg();
    if (size < 0) throw UserError("cannot read '" + path.string() + "'");
    bytes.resize(static_cast<size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(bytes.data(), size))
        throw UserError("cannot read '" + path.string() + "': " + errno_text());
    return bytes;
}

void write_file_atomically(const fs::path& path, std::string_view bytes) {
    AtomicFile file(path);
    file.write(bytes);
    file.commit();
}

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
    std::error_code ec;
    if (target_.has_parent_path()) fs::create_directories(target_.parent_path(), ec);
    temp_ = unique_temp_name(target_);
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
        throw UserError("cannot create '" + temp_.string() + "': " + errno_text(),
                        "check that the folder exists and is writable");
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) {
        ::close(fd_);
        ::unlink(temp_.c_str());
    }
}

void AtomicFile::write(const void* data, std::size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd_, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw UserError("cannot write '" + target_.string() + "': " + errno_text(),
                            errno == ENOSPC ? "free some disk space and try again" : "");
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
}

void AtomicFile::commit() {
    if (fd_ < 0) throw std::logic_error("AtomicFile::commit called twice");
    if (::fsync(fd_) != 0 && errno != EINVAL)
        throw UserError("cannot flush '" + target_.string() + "': " + errno_text());
    ::close(fd_);
    fd_ = -1;
    if (::rename(temp_.c_str(), target_.c_str()) != 0) {
        const std::string why = errno_text();
        ::unlink(temp_.c_str());
        throw UserError("cannot replace '" + target_.string() + "': " + why);
    }
}

std::string relative_or_absolute(const fs::path& path, const fs::path& base) {
    std::error_code ec;
    const fs::path abs = fs::weakly_canonical(fs::absolute(path), ec);
    const fs::path abs_base = fs::weakly_canonical(fs::absolute(base), ec);
    const fs::path rel = abs.lexically_relative(abs_base);
    if (!rel.empty() && *rel.begin() != "..") return rel.generic_string();
    return abs.generic_string();
}

fs::path resolve_path(const std::string& stored, const fs::path& base) {
    fs::path p(stored);
    return p.is_absolute() ? p : base / p;
}

bool stat_file(const fs::path& path, FileStamp& out) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    out.size = static_cast<std::uint64_t>(st.st_size);
    out.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
    return true;
}

}  // namespace whisker
