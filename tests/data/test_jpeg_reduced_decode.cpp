// Whisker's reduced-scale JPEG decoder against libjpeg-turbo: the same pixels on every layout it
// takes, libjpeg-turbo for everything else, and damaged files decoded or refused exactly as
// libjpeg-turbo alone decodes or refuses them.
#include "test_support.h"

#include "whisker/data/image_decode.h"
#include "whisker/data/jpeg_reduced_decode.h"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <turbojpeg.h>

#include <random>

using namespace whisker;
using namespace whisker::data;

namespace {

cv::Mat photo_like(int w, int h, int seed) { return test::photo_like_image(w, h, seed); }

// Compressed by libjpeg-turbo with the given chroma subsampling (TJSAMP_*), quality and flags.
std::string turbo_jpeg(const cv::Mat& rgb, int subsampling, int quality, int flags = 0) {
    tjhandle tj = tjInitCompress();
    unsigned char* buffer = nullptr;
    unsigned long size = 0;
    cv::Mat source = rgb;
    int format = TJPF_RGB;
    if (subsampling == TJSAMP_GRAY) {
        cv::cvtColor(rgb, source, cv::COLOR_RGB2GRAY);
        format = TJPF_GRAY;
    }
    const int rc = tjCompress2(tj, source.data, source.cols, static_cast<int>(source.step), source.rows, format,
                               &buffer, &size, subsampling, quality, flags);
    std::string out;
    if (rc == 0) out.assign(reinterpret_cast<const char*>(buffer), size);
    tjFree(buffer);
    tjDestroy(tj);
    if (out.empty()) throw std::runtime_error("tjCompress2 failed");
    return out;
}

// Through OpenCV (its libjpeg): 4:2:0, with restart markers every `interval` MCUs, progressive
// or with optimised Huffman tables.
std::string opencv_jpeg(const cv::Mat& rgb, int quality, int restart_interval, bool progressive = false,
                        bool optimise = false) {
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    std::vector<unsigned char> buf;
    std::vector<int> params = {cv::IMWRITE_JPEG_QUALITY, quality, cv::IMWRITE_JPEG_RST_INTERVAL, restart_interval,
                               cv::IMWRITE_JPEG_PROGRESSIVE, progressive ? 1 : 0, cv::IMWRITE_JPEG_OPTIMIZE,
                               optimise ? 1 : 0};
    if (!cv::imencode(".jpg", bgr, buf, params)) throw std::runtime_error("imencode failed");
    return std::string(reinterpret_cast<const char*>(buf.data()), buf.size());
}

// libjpeg-turbo's own decode at scale_num/8; empty when it reports an error or a warning.
cv::Mat turbo_decode(const std::string& jpeg, int scale_num) {
    tjhandle tj = tjInitDecompress();
    int w = 0, h = 0, subsampling = 0, colourspace = 0;
    const auto* src = reinterpret_cast<const unsigned char*>(jpeg.data());
    cv::Mat out;
    if (tjDecompressHeader3(tj, src, jpeg.size(), &w, &h, &subsampling, &colourspace) == 0) {
        const tjscalingfactor sf{scale_num, 8};
        out.create(TJSCALED(h, sf), TJSCALED(w, sf), CV_8UC3);
        if (tjDecompress2(tj, src, jpeg.size(), out.data, out.cols, static_cast<int>(out.step), out.rows, TJPF_RGB, 0) != 0)
            out.release();
    }
    tjDestroy(tj);
    return out;
}

bool identical(const cv::Mat& a, const cv::Mat& b) {
    return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

void expect_same_as_turbo(const std::string& jpeg, int scale_num, const std::string& what) {
    cv::Mat mine;
    ASSERT_TRUE(decode_jpeg_reduced(reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size(), scale_num, mine))
        << what << " was left to libjpeg-turbo";
    const cv::Mat theirs = turbo_decode(jpeg, scale_num);
    ASSERT_FALSE(theirs.empty()) << what;
    EXPECT_TRUE(identical(mine, theirs)) << what << ": " << mine.cols << "x" << mine.rows << " vs " << theirs.cols
                                         << "x" << theirs.rows << ", largest difference "
                                         << (mine.size() == theirs.size() ? cv::norm(mine, theirs, cv::NORM_INF) : -1);
}

// decode_image's outcome as text: the pixels' checksum, or the error it raises.
std::string outcome(const std::string& jpeg, bool fast) {
    DecodeOptions o;
    o.min_shorter_side = 100;  // 1/4 of a 600x450 file
    o.allow_fast_jpeg = fast;
    try {
        const DecodedImage d = decode_image(jpeg, o);
        std::uint64_t h = 1469598103934665603ull;
        for (int y = 0; y < d.rgb.rows; ++y) {
            const std::uint8_t* row = d.rgb.ptr<std::uint8_t>(y);
            for (int x = 0; x < d.rgb.cols * 3; ++x) h = (h ^ row[x]) * 1099511628211ull;
        }
        return std::to_string(d.rgb.cols) + "x" + std::to_string(d.rgb.rows) + " " + std::to_string(h);
    } catch (const ImageError& e) {
        return std::string("error: ") + e.what();
    }
}

}  // namespace

TEST(JpegReducedDecode, SamePixelsAsLibjpegTurboOnEveryLayoutItTakes) {
    struct Size { int w, h; };
    // Large photos, sides that are not multiples of an MCU, tiny and very narrow images.
    const Size sizes[] = {{2000, 1500}, {1001, 753}, {517, 1033}, {37, 29}, {8, 8}, {3, 70}, {1, 1}};
    const int layouts[] = {TJSAMP_420, TJSAMP_444, TJSAMP_GRAY};
    const char* layout_names[] = {"4:2:0", "4:4:4", "gray"};
    int seed = 0;
    for (const Size& s : sizes) {
        for (int l = 0; l < 3; ++l) {
            for (int quality : {40, 90, 100}) {
                if (s.w * s.h > 1000000 && quality != 90) continue;  // the large one once per layout
                const std::string jpeg = turbo_jpeg(photo_like(s.w, s.h, ++seed), layouts[l], quality);
                for (int scale_num : {1, 2}) {
                    expect_same_as_turbo(jpeg, scale_num,
                                         std::to_string(s.w) + "x" + std::to_string(s.h) + " " + layout_names[l] +
                                             " q" + std::to_string(quality) + " at " + std::to_string(scale_num) + "/8");
                }
            }
        }
    }
}

TEST(JpegReducedDecode, RestartMarkersAndOptimisedTablesFromAnotherEncoder) {
    // OpenCV's libjpeg writes JFIF 4:2:0 with restart markers when asked; 1 MCU per interval is
    // the most demanding case (a marker after every MCU).
    for (int interval : {1, 3, 64}) {
        const std::string jpeg = opencv_jpeg(photo_like(611, 389, interval), 85, interval);
        for (int scale_num : {1, 2})
            expect_same_as_turbo(jpeg, scale_num, "restart interval " + std::to_string(interval));
    }
    // Optimised (per-image) Huffman tables: other code lengths than the standard tables'.
    for (int scale_num : {1, 2})
        expect_same_as_turbo(opencv_jpeg(photo_like(640, 480, 7), 95, 0, false, true), scale_num,
                             "optimised Huffman tables");
}

TEST(JpegReducedDecode, LeavesOtherFilesToLibjpegTurbo) {
    const cv::Mat img = photo_like(400, 300, 3);
    struct Case { std::string name, jpeg; int scale_num; };
    const Case cases[] = {
        {"progressive", opencv_jpeg(img, 90, 0, true), 2},
        {"4:2:2 (needs upsampling)", turbo_jpeg(img, TJSAMP_422, 90), 2},
        {"4:4:0", turbo_jpeg(img, TJSAMP_440, 90), 2},
        {"1/2 scale", turbo_jpeg(img, TJSAMP_420, 90), 4},
        {"full scale", turbo_jpeg(img, TJSAMP_420, 90), 8},
        {"not a JPEG", test::encode_image(img, ".png"), 2},
        {"empty", "", 2},
    };
    for (const Case& c : cases) {
        cv::Mat out;
        EXPECT_FALSE(decode_jpeg_reduced(reinterpret_cast<const unsigned char*>(c.jpeg.data()), c.jpeg.size(),
                                         c.scale_num, out))
            << c.name;
    }
    // Through decode_image, the files it leaves come out as libjpeg-turbo makes them.
    for (const Case& c : cases) {
        if (c.jpeg.empty() || c.name == "not a JPEG") continue;
        EXPECT_EQ(outcome(c.jpeg, true), outcome(c.jpeg, false)) << c.name;
    }
}

TEST(JpegReducedDecode, DamagedFilesAreDecodedOrRefusedExactlyAsLibjpegTurboAloneDoes) {
    // Whatever the damage, decode_image must give what it gave before this decoder existed:
    // the same pixels, or the same error. Truncations, flipped bits, stray bytes and lost
    // markers, in files with and without restart markers.
    const std::string plain = turbo_jpeg(photo_like(600, 450, 11), TJSAMP_420, 90);
    const std::string restarts = opencv_jpeg(photo_like(600, 450, 12), 90, 4);
    std::mt19937 rng(42);
    int checked = 0, refused = 0, decoded_here = 0;
    for (const std::string* original : {&plain, &restarts}) {
        const std::string& good = *original;
        ASSERT_EQ(outcome(good, true), outcome(good, false));
        const size_t scan_start = good.size() / 10;  // past the headers in these files
        std::vector<std::string> damaged;
        for (size_t cut : {good.size() - 1, good.size() - 2, good.size() - 3, good.size() / 2, scan_start + 5})
            damaged.push_back(good.substr(0, cut));
        for (int i = 0; i < 60; ++i) {
            std::string d = good;
            const size_t at = scan_start + rng() % (good.size() - scan_start - 2);
            switch (i % 4) {
                case 0: d[at] = static_cast<char>(d[at] ^ (1 << (rng() % 8))); break;  // a flipped bit
                case 1: d[at] = static_cast<char>(0xFF); break;                        // a stray 0xFF
                case 2: d.insert(at, 1, static_cast<char>(rng() % 256)); break;         // an extra byte
                case 3: d.erase(at, 1 + rng() % 16); break;                             // lost bytes
            }
            damaged.push_back(d);
        }
        // A restart marker replaced by data, and one with the wrong number.
        const size_t rst = good.find("\xFF\xD1", scan_start);
        if (rst != std::string::npos) {
            std::string d = good;
            d[rst + 1] = '\x00';
            damaged.push_back(d);
            d = good;
            d[rst + 1] = '\xD5';
            damaged.push_back(d);
        }
        // Garbage between the data and the end marker, and no end marker at all.
        std::string tail = good;
        tail.insert(tail.size() - 2, "\x12\x34\x56");
        damaged.push_back(tail);
        damaged.push_back(good.substr(0, good.size() - 2));
        for (const std::string& d : damaged) {
            const std::string fast = outcome(d, true), turbo = outcome(d, false);
            EXPECT_EQ(fast, turbo) << "damaged file " << checked;
            ++checked;
            refused += turbo.rfind("error", 0) == 0;
            cv::Mat out;
            decoded_here += decode_jpeg_reduced(reinterpret_cast<const unsigned char*>(d.data()), d.size(), 2, out);
        }
    }
    EXPECT_GT(refused, 20) << "the damage should make libjpeg-turbo refuse many of these";
    EXPECT_LT(refused, checked) << "and accept some (flipped bits that still decode)";
    EXPECT_GT(decoded_here, 5) << "some damaged files that still decode should go through this decoder";
}

TEST(JpegReducedDecode, UsedForLargePhotosThroughDecodeImage) {
    // decode_image at 1/4: the same image with and without this decoder (and EXIF orientation
    // applied after it as before).
    const std::string jpeg = turbo_jpeg(photo_like(1200, 900, 5), TJSAMP_420, 92);
    DecodeOptions fast, turbo;
    fast.min_shorter_side = turbo.min_shorter_side = 224;
    turbo.allow_fast_jpeg = false;
    const DecodedImage a = decode_image(jpeg, fast), b = decode_image(jpeg, turbo);
    EXPECT_EQ(a.scale_num, 2);
    EXPECT_EQ(b.scale_num, 2);
    EXPECT_EQ(a.source_width, 1200);
    EXPECT_TRUE(identical(a.rgb, b.rgb));
}
