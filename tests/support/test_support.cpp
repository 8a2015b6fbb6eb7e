#include "test_support.h"

#include "whisker/sample/sample_competition.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <turbojpeg.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>
#include <random>
#include <stdexcept>

namespace fs = std::filesystem;

namespace whisker::test {

TempDir::TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        fs::path p = fs::temp_directory_path() / ("whisker-test-" + std::to_string(rd()));
        if (fs::create_directory(p)) {
            path_ = p;
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

void write_sample(const fs::path& dir, int train_images, int test_images) {
    sample::SampleOptions o;
    o.train_images = train_images;
    o.test_images = test_images;
    sample::write_sample_competition(dir, o);
}

cv::Mat pattern_image(int w, int h, int seed) {
    cv::Mat m(h, w, CV_8UC3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            m.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>((x * 7 + seed * 31) % 256),
                                              static_cast<uchar>((y * 5 + seed * 17) % 256),
                                              static_cast<uchar>(((x + y) * 3 + seed) % 256));
    return m;
}

cv::Mat photo_like_image(int w, int h, int seed) {
    cv::Mat img = pattern_image(w, h, seed);
    cv::GaussianBlur(img, img, cv::Size(0, 0), 3.0);
    cv::Mat grain(h, w, CV_8UC3);
    cv::RNG rng(static_cast<std::uint64_t>(seed) + 1);
    rng.fill(grain, cv::RNG::NORMAL, 0, 18);
    cv::Mat out;
    cv::add(img, grain, out, cv::noArray(), CV_8UC3);
    cv::circle(out, cv::Point(w / 3, h / 2), std::max(1, std::min(w, h) / 4), cv::Scalar(250, 250, 250), -1);
    return out;
}

std::string encode_image(const cv::Mat& rgb, const std::string& ext, int q) {
    cv::Mat bgr;
    if (rgb.channels() == 3) cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    else bgr = rgb;
    std::vector<unsigned char> buf;
    std::vector<int> params;
    if (ext == ".jpg" || ext == ".jpeg") params = {cv::IMWRITE_JPEG_QUALITY, q};
    if (!cv::imencode(ext, bgr, buf, params)) throw std::runtime_error("cannot encode " + ext);
    return std::string(reinterpret_cast<const char*>(buf.data()), buf.size());
}

void write_bytes(const fs::path& path, const std::string& bytes) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_image(const fs::path& path, const cv::Mat& rgb, int q) {
    write_bytes(path, encode_image(rgb, path.extension().string(), q));
}

std::string jpeg_with_exif_orientation(const cv::Mat& rgb, int orientation) {
    const std::string jpeg = encode_image(rgb, ".jpg");
    // APP1: "Exif\0\0", little-endian TIFF header, IFD0 with one SHORT entry (0x0112).
    std::string exif("Exif\0\0", 6);
    exif += std::string("II*\0\x08\0\0\0", 8);
    exif += std::string("\x01\0", 2);                                   // one entry
    exif += std::string("\x12\x01\x03\0\x01\0\0\0", 8);                 // tag, SHORT, count 1
    exif += static_cast<char>(orientation);
    exif += std::string("\0\0\0", 3);                                   // value, padded to 4
    exif += std::string("\0\0\0\0", 4);                                 // no next IFD
    const std::size_t len = exif.size() + 2;
    std::string segment = "\xFF\xE1";
    segment += static_cast<char>((len >> 8) & 0xFF);
    segment += static_cast<char>(len & 0xFF);
    segment += exif;
    return jpeg.substr(0, 2) + segment + jpeg.substr(2);
}

std::string cmyk_jpeg(int w, int h) {
    std::vector<unsigned char> cmyk(static_cast<std::size_t>(w) * h * 4);
    // Adobe (Photoshop) CMYK JPEGs store the inks inverted: 255 means no ink.
    for (int i = 0; i < w * h; ++i) {
        cmyk[4 * i + 0] = 255 - 30;    // C
        cmyk[4 * i + 1] = 255 - 200;   // M
        cmyk[4 * i + 2] = 255 - 220;   // Y
        cmyk[4 * i + 3] = 255 - 10;    // K
    }
    tjhandle tj = tjInitCompress();
    unsigned char* out = nullptr;
    unsigned long size = 0;
    if (tjCompress2(tj, cmyk.data(), w, 0, h, TJPF_CMYK, &out, &size, TJSAMP_444, 90, 0) != 0) {
        tjDestroy(tj);
        throw std::runtime_error("cannot write a CMYK JPEG");
    }
    std::string bytes(reinterpret_cast<const char*>(out), size);
    tjFree(out);
    tjDestroy(tj);
    return bytes;
}

BadTreeCounts write_bad_tree(const fs::path& root) {
    BadTreeCounts n;
    auto good = [&](const fs::path& p, int w, int h, int seed, int& counter) {
        write_image(p, pattern_image(w, h, seed));
        ++counter;
    };
    for (int i = 0; i < 6; ++i) good(root / "train/cat" / ("cat" + std::to_string(i) + ".jpg"), 120 + i, 90, i, n.train_good);
    for (int i = 0; i < 6; ++i) good(root / "train/dog" / ("dog" + std::to_string(i) + ".png"), 100, 130 + i, 10 + i, n.train_good);
    for (int i = 0; i < 3; ++i) good(root / "train/bird" / ("bird" + std::to_string(i) + ".bmp"), 64, 64, 20 + i, n.train_good);
    good(root / "train/cat/chat noir été ü.jpg", 150, 100, 40, n.train_good);              // spaces, non-ASCII
    // A very large image: 6000x4000 (decoded reduced, thanks to DCT scaling).
    good(root / "train/dog/huge.jpg", 6000, 4000, 41, n.train_good);
    good(root / "train/dog/webp image.webp", 90, 70, 42, n.train_good);
    good(root / "train/cat/scan.tiff", 80, 60, 43, n.train_good);

    // The problems.
    write_bytes(root / "train/cat/empty.jpg", "");
    const std::string jpeg = encode_image(pattern_image(200, 150, 50), ".jpg");
    write_bytes(root / "train/cat/truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
    write_bytes(root / "train/dog/notes.jpg", "These are my notes about the dogs.\nNot an image at all.\n");
    write_image(root / "train/dog/tiny.png", pattern_image(1, 1, 3));
    n.bad = 4;
    fs::create_directories(root / "train/horse");                                      // empty class folder

    for (int i = 0; i < 2; ++i) good(root / "valid/cat" / ("vcat" + std::to_string(i) + ".jpg"), 110, 90, 60 + i, n.valid_good);
    for (int i = 0; i < 2; ++i) good(root / "valid/dog" / ("vdog" + std::to_string(i) + ".jpg"), 90, 110, 70 + i, n.valid_good);
    // (no valid/bird: a class missing from valid)
    for (int i = 0; i < 3; ++i) good(root / "test" / (std::to_string(i + 1) + ".jpg"), 100, 100, 80 + i, n.test_good);
    return n;
}

BackgroundServer::BackgroundServer(const std::vector<std::string>& argv) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        _exit(127);
    }
    close(out[1]);
    std::FILE* f = fdopen(out[0], "r");
    char line[128] = {};
    if (!std::fgets(line, sizeof line, f) || std::sscanf(line, "PORT %d", &port_) != 1) {
        std::fclose(f);
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        throw std::runtime_error("test server did not start: " + argv.at(0));
    }
    std::fclose(f);
}

BackgroundServer::~BackgroundServer() {
    if (pid_ > 0) {
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
    }
}

ScopedEnv::ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) {
        had_old_ = true;
        old_ = old;
    }
    if (value.empty()) unsetenv(name);
    else setenv(name, value.c_str(), 1);
}

ScopedEnv::~ScopedEnv() {
    if (had_old_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
}

fs::path tests_dir() { return WHISKER_TESTS_DIR; }

bool have_python_torchvision() {
    static const bool ok = std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
    return ok;
}

}  // namespace whisker::test
