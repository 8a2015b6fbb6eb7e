#include "whisker/data/resize_cache.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/image_decode.h"
#include "whisker/data/transforms.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <functional>
#include <mutex>

namespace fs = std::filesystem;

namespace whisker::data {

namespace {
std::string key_of(const fs::path& p) { return fs::absolute(p).lexically_normal().string(); }
}  // namespace

int ResizeCache::side_for(int model_size) { return static_cast<int>(std::lround(model_size * 1.3)); }

ResizeCache::ResizeCache(fs::path project, int side)
    : folder_(project / "cache" / ("resized-" + std::to_string(side))), side_(side) {
    const fs::path index_file = folder_ / "index.json";
    if (!fs::exists(index_file)) return;
    try {
        const auto j = nlohmann::json::parse(read_file(index_file));
        for (const auto& [key, e] : j.at("entries").items())
            index_[key] = Entry{e.at("size").get<std::uint64_t>(), e.at("mtime_ns").get<std::int64_t>(),
                                e.value("file", "")};
    } catch (const std::exception&) {
        index_.clear();  // a damaged index only costs a rebuild
    }
}

fs::path ResizeCache::lookup(const fs::path& source) const {
    const auto it = index_.find(key_of(source));
    if (it == index_.end()) return source;
    FileStamp st;
    if (!stat_file(source, st) || st.size != it->second.size || st.mtime_ns != it->second.mtime_ns) return source;
    if (it->second.file.empty()) return source;
    return folder_ / it->second.file;
}

ResizeCache::BuildResult ResizeCache::build(const std::vector<fs::path>& sources, int threads,
                                            const ProgressFn& progress, const std::atomic<bool>* cancel) {
    BuildResult result;
    std::mutex m;
    std::atomic<std::uint64_t> done{0};
    std::error_code ec;
    fs::create_directories(folder_, ec);
    if (ec) throw UserError("cannot create cache folder '" + folder_.string() + "': " + ec.message());
    parallel_for(sources.size(), threads, [&](std::size_t i) {
        const fs::path& src = sources[i];
        const std::string key = key_of(src);
        FileStamp st;
        const bool exists = stat_file(src, st);
        {
            std::lock_guard<std::mutex> lock(m);
            auto it = index_.find(key);
            if (exists && it != index_.end() && it->second.size == st.size && it->second.mtime_ns == st.mtime_ns &&
                (it->second.file.empty() || fs::exists(folder_ / it->second.file))) {
                ++result.current;
                ++done;
                return;
            }
        }
        Entry entry{st.size, st.mtime_ns, {}};
        try {
            DecodeOptions opts;
            opts.min_shorter_side = side_;
            const DecodedImage img = decode_image_file(src, opts);
            if (std::min(img.source_width, img.source_height) > side_) {
                const cv::Mat small = scale_min(img.rgb, side_);
                cv::Mat bgr;
                cv::cvtColor(small, bgr, cv::COLOR_RGB2BGR);
                std::vector<unsigned char> jpeg;
                cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, 95});
                entry.file = fmt::format("{:016x}.jpg", std::hash<std::string>{}(key));
                write_file_atomically(folder_ / entry.file,
                                      std::string_view(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()));
            }
        } catch (const ImageError&) {
            std::lock_guard<std::mutex> lock(m);
            ++result.failed;
            ++done;
            return;
        }
        std::lock_guard<std::mutex> lock(m);
        (entry.file.empty() ? result.small : result.written)++;
        index_[key] = entry;
        const auto n = ++done;
        if (progress && (n % 64 == 0 || n == sources.size())) progress({"shrinking images", n, sources.size()});
    }, cancel);
    save_index();
    return result;
}

void ResizeCache::save_index() const {
    nlohmann::json entries = nlohmann::json::object();
    for (const auto& [key, e] : index_) {
        nlohmann::json j{{"size", e.size}, {"mtime_ns", e.mtime_ns}};
        if (!e.file.empty()) j["file"] = e.file;
        entries[key] = std::move(j);
    }
    nlohmann::json root{{"shorter_side", side_}, {"entries", std::move(entries)}};
    write_file_atomically(folder_ / "index.json", root.dump());
}

}  // namespace whisker::data
