#include "whisker/data/image_decode.h"

#include "whisker/common/files.h"
#include "whisker/data/jpeg_reduced_decode.h"

#include <libexif/exif-data.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <turbojpeg.h>

#include <cstring>
#include <memory>

namespace whisker::data {

namespace {

bool starts_with(const std::string& b, const char* magic, size_t n, size_t offset = 0) {
    return b.size() >= offset + n && std::memcmp(b.data() + offset, magic, n) == 0;
}

std::string describe_unknown_content(const std::string& bytes) {
    if (starts_with(bytes, "GIF8", 4)) return "unsupported image format: GIF (convert it to PNG or JPEG)";
    size_t printable = 0;
    const size_t n = std::min<size_t>(bytes.size(), 512);
    for (size_t i = 0; i < n; ++i) {
        const unsigned char ch = static_cast<unsigned char>(bytes[i]);
        if (ch == '\n' || ch == '\r' || ch == '\t' || (ch >= 32 && ch < 127) || ch >= 0x80) ++printable;
    }
    if (n > 0 && printable == n) return "not an image: the file contains text";
    return "not an image: unrecognised file content";
}

// Whisker's reduced decoder was measured faster than libjpeg-turbo where its transforms and
// colour conversion have SSE2 code (x86-64); elsewhere (ARM, where libjpeg-turbo has NEON code)
// it is unmeasured, so libjpeg-turbo keeps decoding there.
#if defined(__SSE2__)
constexpr bool kReducedDecoderIsFaster = true;
#else
constexpr bool kReducedDecoderIsFaster = false;
#endif

struct TjHandle {
    tjhandle h = tjInitDecompress();
    ~TjHandle() { if (h) tjDestroy(h); }
};
tjhandle thread_decompressor() {
    thread_local TjHandle handle;
    if (!handle.h) throw std::runtime_error("TurboJPEG could not be initialised");
    return handle.h;
}

void check_dimensions(int w, int h, const DecodeOptions& o) {
    if (w <= 0 || h <= 0) throw ImageError("invalid image dimensions " + std::to_string(w) + "x" + std::to_string(h));
    if (static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) > o.max_pixels)
        throw ImageError("image too large: " + std::to_string(w) + "x" + std::to_string(h) +
                         " pixels (more than " + std::to_string(o.max_pixels / 1000000) + " megapixels)");
    if (w < o.min_side || h < o.min_side)
        throw ImageError("image too small: " + std::to_string(w) + "x" + std::to_string(h) +
                         " pixels (at least " + std::to_string(o.min_side) + " pixels a side needed)");
}

// Reads width/height from PNG and BMP headers so absurd sizes are refused before decoding.
void check_header_dimensions(const std::string& b, const std::string& format, const DecodeOptions& o) {
    auto be32 = [&](size_t at) {
        return (static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) << 24) |
               (static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16) |
               (static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8) |
               static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3]));
    };
    auto le32 = [&](size_t at) {
        std::int32_t v;
        std::memcpy(&v, b.data() + at, 4);
        return v;
    };
    if (format == "png" && b.size() >= 24) {
        const auto w = be32(16), h = be32(20);
        if (w > 0x7fffffffu || h > 0x7fffffffu) throw ImageError("invalid PNG header");
        check_dimensions(static_cast<int>(w), static_cast<int>(h), o);
    } else if (format == "bmp" && b.size() >= 26) {
        const auto w = le32(18), h = le32(22);
        check_dimensions(std::abs(w), std::abs(h), o);
    }
}

// Converts whatever OpenCV decoded (gray, BGR, BGRA; 8/16-bit, float) to 8-bit RGB.
cv::Mat to_rgb8(const cv::Mat& decoded) {
    cv::Mat m8;
    switch (decoded.depth()) {
        case CV_8U: m8 = decoded; break;
        case CV_16U: decoded.convertTo(m8, CV_8U, 1.0 / 257.0); break;
        case CV_32F:
        case CV_64F: decoded.convertTo(m8, CV_8U, 255.0); break;
        default: decoded.convertTo(m8, CV_8U); break;
    }
    cv::Mat rgb;
    switch (m8.channels()) {
        case 1: cv::cvtColor(m8, rgb, cv::COLOR_GRAY2RGB); break;
        case 3: cv::cvtColor(m8, rgb, cv::COLOR_BGR2RGB); break;
        case 4: cv::cvtColor(m8, rgb, cv::COLOR_BGRA2RGB); break;
        default: throw ImageError("unsupported number of channels: " + std::to_string(m8.channels()));
    }
    return rgb;
}

DecodedImage decode_with_opencv(const std::string& bytes, const std::string& format, const DecodeOptions& o) {
    check_header_dimensions(bytes, format, o);
    cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
    cv::Mat decoded;
    try {
        // ANYDEPTH|ANYCOLOR keeps 16-bit and gray as they are (we convert ourselves) and still
        // applies the EXIF orientation, unlike IMREAD_UNCHANGED.
        decoded = cv::imdecode(buf, cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR);
    } catch (const cv::Exception& e) {
        throw ImageError("corrupt " + format + " data (" + e.err + ")");
    }
    if (decoded.empty()) throw ImageError("corrupt or truncated " + format + " data");
    check_dimensions(decoded.cols, decoded.rows, o);
    DecodedImage out;
    out.rgb = to_rgb8(decoded);
    out.source_width = out.rgb.cols;
    out.source_height = out.rgb.rows;
    return out;
}

// Finds the APP1 "Exif" segment by walking the JPEG markers up to the image data.
bool find_exif_segment(const std::string& b, size_t& start, size_t& length) {
    size_t pos = 2;
    while (pos + 4 <= b.size()) {
        if (static_cast<unsigned char>(b[pos]) != 0xFF) return false;
        const unsigned char marker = static_cast<unsigned char>(b[pos + 1]);
        if (marker == 0xFF) { ++pos; continue; }
        if (marker == 0xDA || marker == 0xD9) return false;  // start of scan / end of image
        const size_t seg_len = (static_cast<unsigned char>(b[pos + 2]) << 8) | static_cast<unsigned char>(b[pos + 3]);
        if (seg_len < 2 || pos + 2 + seg_len > b.size()) return false;
        if (marker == 0xE1 && seg_len >= 8 && std::memcmp(b.data() + pos + 4, "Exif\0\0", 6) == 0) {
            start = pos + 4;
            length = seg_len - 2;
            return true;
        }
        pos += 2 + seg_len;
    }
    return false;
}

}  // namespace

std::string sniff_image_format(const std::string& b) {
    if (starts_with(b, "\xFF\xD8\xFF", 3)) return "jpeg";
    if (starts_with(b, "\x89PNG\r\n\x1a\n", 8)) return "png";
    if (starts_with(b, "BM", 2) && b.size() >= 26) return "bmp";
    if (starts_with(b, "RIFF", 4) && starts_with(b, "WEBP", 4, 8)) return "webp";
    if (starts_with(b, "II*\0", 4) || starts_with(b, "MM\0*", 4)) return "tiff";
    return "";
}

int jpeg_exif_orientation(const std::string& bytes) {
    size_t start = 0, length = 0;
    if (!find_exif_segment(bytes, start, length)) return 1;
    std::unique_ptr<ExifData, void (*)(ExifData*)> exif(
        exif_data_new_from_data(reinterpret_cast<const unsigned char*>(bytes.data() + start),
                                static_cast<unsigned int>(length)),
        exif_data_unref);
    if (!exif) return 1;
    ExifEntry* entry = exif_content_get_entry(exif->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (!entry || entry->format != EXIF_FORMAT_SHORT || entry->components < 1) return 1;
    const int v = exif_get_short(entry->data, exif_data_get_byte_order(exif.get()));
    return (v >= 1 && v <= 8) ? v : 1;
}

void apply_exif_orientation(cv::Mat& img, int orientation) {
    switch (orientation) {
        case 2: cv::flip(img, img, 1); break;
        case 3: cv::flip(img, img, -1); break;
        case 4: cv::flip(img, img, 0); break;
        case 5: cv::transpose(img, img); break;
        case 6: cv::transpose(img, img); cv::flip(img, img, 1); break;
        case 7: cv::transpose(img, img); cv::flip(img, img, -1); break;
        case 8: cv::transpose(img, img); cv::flip(img, img, 0); break;
        default: break;
    }
}

DecodedImage decode_image(const std::string& bytes, const DecodeOptions& o) {
    if (bytes.empty()) throw ImageError("empty file (0 bytes)");
    const std::string format = sniff_image_format(bytes);
    if (format.empty()) throw ImageError(describe_unknown_content(bytes));
    if (format != "jpeg") return decode_with_opencv(bytes, format, o);

    tjhandle tj = thread_decompressor();
    const auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
    const auto src_size = static_cast<unsigned long>(bytes.size());
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj, src, src_size, &w, &h, &subsamp, &colorspace) != 0)
        throw ImageError(std::string("corrupt JPEG header (") + tjGetErrorStr2(tj) + ")");
    if (w <= 0 || h <= 0) throw ImageError("truncated JPEG: the file ends inside its header");
    check_dimensions(w, h, o);
    if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
        return decode_with_opencv(bytes, format, o);  // TurboJPEG cannot convert CMYK to RGB

    // The smallest of 1/8, 1/4, 1/2 whose result keeps the shorter side >= min_shorter_side.
    // libjpeg-turbo has SIMD inverse DCTs for these; the other M/8 factors run scalar code
    // and measured slower than a full-size decode (bench_image_pipeline).
    int scale_num = 8;
    if (o.min_shorter_side > 0) {
        const int shorter = std::min(w, h);
        for (int m : {1, 2, 4}) {
            const tjscalingfactor sf{m, 8};
            if (TJSCALED(shorter, sf) >= o.min_shorter_side) { scale_num = m; break; }
        }
    }
    const tjscalingfactor sf{scale_num, 8};
    const int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
    DecodedImage out;
    out.scale_num = scale_num;
    // At 1/4 and 1/8 (large photos) the common JPEGs go through Whisker's own decoder, faster
    // and with the same pixels; anything it does not take (or damaged data) comes back here.
    const bool reduced = kReducedDecoderIsFaster && (scale_num == 1 || scale_num == 2) && o.allow_fast_jpeg &&
                         decode_jpeg_reduced(src, bytes.size(), scale_num, out.rgb);
    if (!reduced) out.rgb.create(sh, sw, CV_8UC3);
    if (!reduced && tjDecompress2(tj, src, src_size, out.rgb.data, sw, static_cast<int>(out.rgb.step), sh, TJPF_RGB, 0) != 0) {
        const std::string why = tjGetErrorStr2(tj);
        if (why.find("Premature end") != std::string::npos)
            throw ImageError("truncated JPEG: the file ends before the image data does (" + why + ")");
        throw ImageError("corrupt JPEG data (" + why + ")");
    }
    const int orientation = jpeg_exif_orientation(bytes);
    apply_exif_orientation(out.rgb, orientation);
    const bool swapped = orientation >= 5;
    out.source_width = swapped ? h : w;
    out.source_height = swapped ? w : h;
    return out;
}

std::string read_image_file(const std::filesystem::path& path) {
    try {
        return read_file(path);
    } catch (const UserError& e) {
        throw ImageError(std::string("cannot read the file: ") + e.what());
    }
}

DecodedImage decode_image_file(const std::filesystem::path& path, const DecodeOptions& options) {
    return decode_image(read_image_file(path), options);
}

}  // namespace whisker::data
