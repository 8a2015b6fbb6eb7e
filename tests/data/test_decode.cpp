#include "test_support.h"

#include "whisker/data/image_decode.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::data;

namespace {
std::string reason_for(const std::string& bytes, DecodeOptions o = {}) {
    try {
        decode_image(bytes, o);
    } catch (const ImageError& e) {
        return e.what();
    }
    return "";
}
cv::Mat opencv_rgb(const std::string& bytes) {
    cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
    cv::Mat bgr = cv::imdecode(buf, cv::IMREAD_COLOR), rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return rgb;
}
bool same(const cv::Mat& a, const cv::Mat& b) {
    return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}
}  // namespace

TEST(Decode, JpegMatchesOpenCVExactly) {
    // fastai decodes with cv2.imread; TurboJPEG at full scale must give the same pixels.
    const std::string jpeg = test::encode_image(test::pattern_image(301, 207, 3), ".jpg", 90);
    const DecodedImage d = decode_image(jpeg);
    EXPECT_EQ(d.rgb.cols, 301);
    EXPECT_EQ(d.rgb.rows, 207);
    EXPECT_EQ(d.scale_num, 8);
    EXPECT_TRUE(same(d.rgb, opencv_rgb(jpeg)));
}

TEST(Decode, DctScalingKeepsTheShorterSideLargeEnough) {
    const std::string jpeg = test::encode_image(test::pattern_image(2000, 1500, 1), ".jpg");
    DecodeOptions o;
    o.min_shorter_side = 246;   // 1.1 * 224
    const DecodedImage d = decode_image(jpeg, o);
    EXPECT_EQ(d.scale_num, 2);  // 1500 * 2/8 = 375 >= 246, while 1/8 gives 188 < 246
    EXPECT_EQ(d.rgb.cols, 500);
    EXPECT_EQ(d.rgb.rows, 375);
    EXPECT_EQ(d.source_width, 2000);
    EXPECT_EQ(d.source_height, 1500);
    // No scaling when the image is barely large enough.
    const std::string small = test::encode_image(test::pattern_image(300, 250, 1), ".jpg");
    EXPECT_EQ(decode_image(small, o).scale_num, 8);
}

TEST(Decode, OtherFormatsBecomeRgb8) {
    const cv::Mat img = test::pattern_image(40, 30, 5);
    for (const char* ext : {".png", ".bmp", ".tiff"}) {
        const DecodedImage d = decode_image(test::encode_image(img, ext));
        EXPECT_TRUE(same(d.rgb, img)) << ext;
    }
    const DecodedImage webp = decode_image(test::encode_image(img, ".webp"));
    EXPECT_EQ(webp.rgb.type(), CV_8UC3);
    EXPECT_EQ(webp.rgb.size(), img.size());
}

TEST(Decode, GrayAlphaAnd16BitBecomeRgb8) {
    cv::Mat gray(10, 12, CV_8UC1, cv::Scalar(77));
    std::vector<unsigned char> buf;
    cv::imencode(".png", gray, buf);
    DecodedImage d = decode_image(std::string(buf.begin(), buf.end()));
    ASSERT_EQ(d.rgb.type(), CV_8UC3);
    EXPECT_EQ(d.rgb.at<cv::Vec3b>(3, 4), cv::Vec3b(77, 77, 77));

    cv::Mat bgra(10, 12, CV_8UC4, cv::Scalar(10, 20, 30, 0));   // fully transparent
    cv::imencode(".png", bgra, buf);
    d = decode_image(std::string(buf.begin(), buf.end()));
    ASSERT_EQ(d.rgb.type(), CV_8UC3);
    EXPECT_EQ(d.rgb.at<cv::Vec3b>(0, 0), cv::Vec3b(30, 20, 10));  // RGB order, alpha dropped

    cv::Mat deep(10, 12, CV_16UC3, cv::Scalar(257 * 100, 65535, 0));  // BGR, 16-bit
    cv::imencode(".png", deep, buf);
    d = decode_image(std::string(buf.begin(), buf.end()));
    ASSERT_EQ(d.rgb.type(), CV_8UC3);
    EXPECT_EQ(d.rgb.at<cv::Vec3b>(5, 5), cv::Vec3b(0, 255, 100));
}

TEST(Decode, CmykJpegBecomesRgb) {
    const DecodedImage d = decode_image(test::cmyk_jpeg(32, 24));
    ASSERT_EQ(d.rgb.type(), CV_8UC3);
    EXPECT_EQ(d.rgb.cols, 32);
    EXPECT_EQ(d.rgb.rows, 24);
    // Mostly magenta + yellow ink: a red-orange colour, red clearly the strongest channel.
    const cv::Vec3b px = d.rgb.at<cv::Vec3b>(12, 16);
    EXPECT_GT(px[0], px[1] + 40) << int(px[0]) << "," << int(px[1]) << "," << int(px[2]);
    EXPECT_GT(px[0], px[2] + 40);
}

TEST(Decode, ExifOrientationIsHonouredLikeOpenCV) {
    const cv::Mat img = test::pattern_image(40, 20, 9);
    for (int orientation = 1; orientation <= 8; ++orientation) {
        const std::string jpeg = test::jpeg_with_exif_orientation(img, orientation);
        EXPECT_EQ(jpeg_exif_orientation(jpeg), orientation);
        const DecodedImage d = decode_image(jpeg);
        const cv::Mat reference = opencv_rgb(jpeg);  // cv::imdecode applies EXIF orientation too
        EXPECT_TRUE(same(d.rgb, reference)) << "orientation " << orientation;
        if (orientation >= 5) {
            EXPECT_EQ(d.rgb.cols, 20);
            EXPECT_EQ(d.source_width, 20);
            EXPECT_EQ(d.source_height, 40);
        }
    }
}

TEST(Decode, BadFilesGiveReasonsAPersonCanRead) {
    const std::string jpeg = test::encode_image(test::pattern_image(200, 150, 2), ".jpg");
    EXPECT_EQ(reason_for(""), "empty file (0 bytes)");
    EXPECT_NE(reason_for(jpeg.substr(0, jpeg.size() / 2)).find("truncated JPEG"), std::string::npos);
    EXPECT_EQ(reason_for("Hello, I am a text file.\n"), "not an image: the file contains text");
    EXPECT_NE(reason_for(std::string("\x00\x01\x02\x03\xfe\xff", 6)).find("not an image"), std::string::npos);
    EXPECT_NE(reason_for("GIF89a......").find("GIF"), std::string::npos);
    EXPECT_NE(reason_for(test::encode_image(test::pattern_image(1, 1), ".png")).find("too small: 1x1"), std::string::npos);
    EXPECT_NE(reason_for(jpeg.substr(0, 20)).find("JPEG"), std::string::npos);
    // A PNG header claiming 100000 x 100000 pixels is refused before decoding.
    std::string png = test::encode_image(test::pattern_image(16, 16), ".png");
    png[16] = 0; png[17] = 1; png[18] = static_cast<char>(0x86); png[19] = static_cast<char>(0xA0);
    png[20] = 0; png[21] = 1; png[22] = static_cast<char>(0x86); png[23] = static_cast<char>(0xA0);
    EXPECT_NE(reason_for(png).find("too large"), std::string::npos);
    // A corrupt PNG body.
    std::string bad_png = test::encode_image(test::pattern_image(64, 64), ".png");
    bad_png.resize(bad_png.size() / 2);
    EXPECT_FALSE(reason_for(bad_png).empty());
}

TEST(Decode, MissingFileIsAnImageError) {
    EXPECT_THROW(decode_image_file("/nonexistent/x.jpg"), ImageError);
}
