#pragma once
// An optional on-disk cache of images pre-shrunk for a model size, what fastai's
// `data.resize(int(sz*1.3))` did: decoding a 1.3*sz image instead of a full photo makes every
// later epoch cheaper. Entries live in PROJECT/cache/resized-<side>/ with an index that
// records each source file's size and modification time, so an entry whose source changed is
// ignored (and rebuilt by the next build()). Images already small enough are not copied.
// Cached images are re-encoded as JPEG (quality 95), so they differ slightly from the source:
// the cache is a speed option, off by default.
// lookup() is thread-safe after construction; build() must not run concurrently with lookups
// on the same object.

#include "whisker/common/parallel.h"

#include <atomic>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace whisker::data {

class ResizeCache {
public:
    // Shorter side fastai used for the cache: round(1.3 * size).
    static int side_for(int model_size);

    ResizeCache(std::filesystem::path project, int shorter_side);

    // The file to decode for `source`: its cached copy when present and current, else `source`.
    std::filesystem::path lookup(const std::filesystem::path& source) const;

    struct BuildResult {
        std::size_t written = 0;     // (re)encoded now
        std::size_t current = 0;     // already up to date
        std::size_t small = 0;       // small enough: the source itself is used
        std::size_t failed = 0;      // could not be decoded (the source is used, and reported by it)
    };
    BuildResult build(const std::vector<std::filesystem::path>& sources, int threads = 0,
                      const ProgressFn& progress = {}, const std::atomic<bool>* cancel = nullptr);

    const std::filesystem::path& folder() const { return folder_; }
    int shorter_side() const { return side_; }

private:
    struct Entry {
        std::uint64_t size = 0;
        std::int64_t mtime_ns = 0;
        std::string file;            // empty: the source is small enough, use it directly
    };
    void save_index() const;

    std::filesystem::path folder_;
    int side_;
    std::unordered_map<std::string, Entry> index_;   // key: absolute source path
};

}  // namespace whisker::data
