#pragma once
// Shared helpers for Whisker's tests: temporary folders and crafted image files.

#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <cstdlib>
#include <string>
#include <vector>

namespace whisker::test {

// A fresh folder under the system temp dir, removed (with its contents) on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& p) const { return path_ / p; }

private:
    std::filesystem::path path_;
};

// Writes a small built-in sample competition (train.zip, test.zip, sample_submission.csv).
void write_sample(const std::filesystem::path& dir, int train_images, int test_images);

// An RGB image whose pixels follow a simple pattern (distinct per position), CV_8UC3.
cv::Mat pattern_image(int width, int height, int seed = 0);
// Photograph-like content: smooth shapes plus grain, so that JPEG blocks carry many AC
// coefficients of every size (long Huffman codes and large values included), as camera files
// do. CV_8UC3, RGB.
cv::Mat photo_like_image(int width, int height, int seed = 0);

// Encodes an RGB image (converted to BGR for OpenCV) in the format the extension names.
std::string encode_image(const cv::Mat& rgb, const std::string& ext, int jpeg_quality = 95);
void write_image(const std::filesystem::path& path, const cv::Mat& rgb, int jpeg_quality = 95);
void write_bytes(const std::filesystem::path& path, const std::string& bytes);

// A JPEG carrying an EXIF APP1 segment with the given orientation (1..8).
std::string jpeg_with_exif_orientation(const cv::Mat& rgb, int orientation);
// A CMYK JPEG (Adobe-style, as Photoshop writes them) made with TurboJPEG.
std::string cmyk_jpeg(int width, int height);

// Writes a folder tree train/<class>/, valid/<class>/, test/ full of problems:
// zero-byte, truncated JPEG, text named .jpg, 1x1 image, a very large image, a file name
// with spaces and non-ASCII characters, an empty class folder, a class missing from valid,
// plus good images of several formats. Returns the number of good images written.
struct BadTreeCounts {
    int train_good = 0;
    int valid_good = 0;
    int test_good = 0;
    int bad = 0;
};
BadTreeCounts write_bad_tree(const std::filesystem::path& root);

// Runs a helper program (e.g. a Python test server) in the background and stops it on
// destruction. The program must print "PORT <n>" on its first line of output.
class BackgroundServer {
public:
    explicit BackgroundServer(const std::vector<std::string>& argv);
    ~BackgroundServer();
    BackgroundServer(const BackgroundServer&) = delete;
    BackgroundServer& operator=(const BackgroundServer&) = delete;
    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

private:
    int pid_ = -1;
    int port_ = 0;
};

// Sets (or, with "", unsets) an environment variable for the lifetime of the object.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value);
    ~ScopedEnv();
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    bool had_old_ = false;
    std::string old_;
};

// Path of a file in the source tree's tests/ folder (WHISKER_TESTS_DIR is set by CMake).
std::filesystem::path tests_dir();
// True when Debian's python3 with torch and torchvision is available for reference files.
bool have_python_torchvision();

}  // namespace whisker::test

// Skips a test that needs python3-torchvision where it is missing — except under CI (CI=true),
// whose set-up installs it: there a missing package fails the test instead of hiding it.
#define WHISKER_REQUIRE_PYTHON_TORCHVISION()                                                      \
    do {                                                                                          \
        if (!whisker::test::have_python_torchvision()) {                                          \
            if (std::getenv("CI")) FAIL() << "python3-torchvision is missing under CI";           \
            GTEST_SKIP() << "python3-torchvision is not installed";                               \
        }                                                                                         \
    } while (0)

namespace whisker::test {

}  // namespace whisker::test
