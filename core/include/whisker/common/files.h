#pragma once
// File helpers: atomic writes and whole-file reads.
//
// Every file Whisker writes that a user may rely on (manifests, caches, CSVs, checkpoints)
// goes through write_file_atomically or AtomicFile: the bytes go to a temporary file in the
// same folder, are flushed to disk, and the temporary file is renamed over the target, so a
// crash leaves either the old file or the new one, never a half-written one.
// All functions are thread-safe for distinct paths.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace whisker {

// Reads a whole file. Throws UserError naming the file if it cannot be opened or read.
std::string read_file(const std::filesystem::path& path);

// Writes `bytes` to `path` atomically (creating parent folders). Throws UserError on failure
// (disk full, no permission), leaving any previous file untouched.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Streams a file that is renamed into place by commit(); destroyed without commit(), it
// removes its temporary file and leaves the target untouched.
class AtomicFile {
public:
    explicit AtomicFile(std::filesystem::path target);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, std::size_t size);
    void write(std::string_view text) { write(text.data(), text.size()); }
    // Flushes, syncs and renames over the target. Throws UserError on any failure.
    void commit();
    const std::filesystem::path& temp_path() const { return temp_; }

private:
    std::filesystem::path target_;
    std::filesystem::path temp_;
    int fd_ = -1;
};

// `path` relative to `base` when it lies inside base, else absolute; '/' separators.
std::string relative_or_absolute(const std::filesystem::path& path,
                                 const std::filesystem::path& base);
// Inverse of relative_or_absolute.
std::filesystem::path resolve_path(const std::string& stored, const std::filesystem::path& base);

// A cheap fingerprint of a file's identity: size and modification time (ns).
struct FileStamp {
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const FileStamp& o) const { return size == o.size && mtime_ns == o.mtime_ns; }
    bool operator!=(const FileStamp& o) const { return !(*this == o); }
};
// Returns false when the file does not exist.
bool stat_file(const std::filesystem::path& path, FileStamp& out);

}  // namespace whisker
