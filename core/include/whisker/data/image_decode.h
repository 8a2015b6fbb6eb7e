#pragma once
// Decoding image files into 8-bit RGB.
//
// JPEG goes through libjpeg-turbo's TurboJPEG API, which can decode straight to a reduced size
// in the DCT domain (by 1/2, 1/4 or 1/8) — much faster for large photos — whenever
// the result still has at least `min_shorter_side` pixels on its shorter side. PNG, BMP, WebP,
// TIFF (and CMYK JPEGs) go through OpenCV. Whatever the source (grayscale, alpha, 16-bit,
// CMYK), the result is 8-bit RGB, turned upright according to the EXIF orientation.
//
// A file that cannot be used raises ImageError whose what() is a reason a person can read in
// a report ("truncated JPEG data", "not an image: the file starts with text", ...).
// All functions are thread-safe.

#include "whisker/common/errors.h"

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace whisker::data {

class ImageError : public UserError {
public:
    explicit ImageError(const std::string& reason) : UserError(reason) {}
};

struct DecodeOptions {
    // 0 decodes at full resolution; otherwise JPEGs may be decoded smaller (DCT scaling) as
    // long as the shorter side stays >= this many pixels.
    int min_shorter_side = 0;
    // Images with a side smaller than this are rejected as unusable.
    int min_side = 8;
    // Images larger than this are rejected before any pixel is decoded (decompression bombs).
    std::uint64_t max_pixels = 20000ULL * 20000ULL;
    // Reduced-size JPEG decodes of baseline files use Whisker's decoder (jpeg_reduced_decode.h:
    // the same pixels as libjpeg-turbo, faster); false forces libjpeg-turbo (benchmarks, tests).
    bool allow_fast_jpeg = true;
};

struct DecodedImage {
    cv::Mat rgb;                 // CV_8UC3, RGB order, upright
    int source_width = 0;        // full-resolution size, upright
    int source_height = 0;
    int scale_num = 8;           // the DCT scaling used: scale_num/8 (8 = none; 4, 2 or 1)
};

// What a file holds, read from its header only (cheap): format and upright size.
struct ImageHeader {
    std::string format;          // "jpeg", "png", "bmp", "webp", "tiff"
    int width = 0;
    int height = 0;
};

DecodedImage decode_image(const std::string& bytes, const DecodeOptions& options = {});
DecodedImage decode_image_file(const std::filesystem::path& path, const DecodeOptions& options = {});
// The file's bytes, for decode_image; ImageError ("cannot read the file: ...") when unreadable.
// decode_image_file is read_image_file then decode_image.
std::string read_image_file(const std::filesystem::path& path);

// Identifies the format from the first bytes; "" when it is not a supported image.
std::string sniff_image_format(const std::string& bytes);

// EXIF orientation (1..8) of a JPEG, 1 when absent or unreadable.
int jpeg_exif_orientation(const std::string& bytes);

// Applies an EXIF orientation to an image in place (the same mapping OpenCV's imread uses).
void apply_exif_orientation(cv::Mat& image, int orientation);

}  // namespace whisker::data
