#pragma once
// Zip archives (QuaZip underneath; this header is Qt-free).
//
// Extraction is defensive: entries that would land outside the target folder (".." parts,
// absolute paths, symbolic links) make the whole extraction fail before anything is written,
// with an error naming every such entry. Each file is written to "<name>.part" and renamed
// when complete, so an interrupted or failed extraction (full disk, cancel) never leaves a
// truncated file under the final name; re-running skips files that are already there with
// the right size and CRC-32. Functions are reentrant; one archive per call.

#include "whisker/common/parallel.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace whisker {

struct ArchiveEntry {
    std::string name;               // as stored, '/' separated
    std::uint64_t size = 0;         // uncompressed bytes
    std::uint32_t crc32 = 0;
    bool is_directory = false;
    bool is_symlink = false;
};

// Lists the entries. Throws UserError for a missing, unreadable or corrupt archive.
std::vector<ArchiveEntry> list_archive(const std::filesystem::path& zip);

// True when `name` is safe to extract: relative, no ".." component, no drive or backslash
// tricks. Symbolic links are judged separately (never safe).
bool is_safe_entry_name(const std::string& name);

struct ExtractOptions {
    // Only entries for which this returns true are extracted (all when empty).
    std::function<bool(const ArchiveEntry&)> filter;
    ProgressFn progress;                       // bytes done / total
    const std::atomic<bool>* cancel = nullptr; // set to stop; throws Cancelled
};

struct ExtractResult {
    std::vector<std::filesystem::path> files;  // every extracted-or-intact file, in archive order
    std::size_t written = 0;                   // files written this time
    std::size_t already_intact = 0;            // files skipped because they were complete
};

// Extracts into `dest` (created if needed). Throws UserError on unsafe entries, corrupt data
// (CRC mismatch), or write failures such as a full disk; Cancelled when cancelled.
ExtractResult extract_archive(const std::filesystem::path& zip, const std::filesystem::path& dest,
                              const ExtractOptions& options = {});

// Writes a zip archive atomically: entries are added in order, then commit() renames the
// finished archive into place. Entry timestamps are fixed (2017-01-01) so the same content
// gives the same bytes.
class ZipWriter {
public:
    explicit ZipWriter(std::filesystem::path target);
    ~ZipWriter();
    ZipWriter(const ZipWriter&) = delete;
    ZipWriter& operator=(const ZipWriter&) = delete;

    // `compress`: deflate when true, stored when false (JPEGs gain nothing from deflate).
    void add(const std::string& name, const std::string& bytes, bool compress = false);
    void commit();

private:
    struct Impl;
    Impl* impl_;
};

// CRC-32 (zlib) of a file on disk; used to check extracted files.
std::uint32_t file_crc32(const std::filesystem::path& path);

}  // namespace whisker
