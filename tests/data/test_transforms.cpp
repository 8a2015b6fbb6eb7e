// The transforms against hand-computed values and against fastai 0.7's step-by-step recipe.
#include "test_support.h"

#include "whisker/data/transforms.h"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <set>
#include <vector>

using namespace whisker;
using namespace whisker::data;

namespace {
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

float norm(float v01, int channel) { return (v01 - kMean[channel]) / kStd[channel]; }

AugmentDraw no_augmentation(int size) {
    AugmentDraw d;
    d.scaled_size = size;
    return d;
}

// fastai 0.7 applied literally, one step after the other, on float images.
std::vector<float> reference_training(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    cv::Mat img = scale_min(to_float_rgb(rgb8), d.scaled_size);
    if (d.rotate) img = rotate_reflect(img, d.degrees);
    apply_lighting(img, d.brightness, d.contrast);
    if (d.flip) cv::flip(img.clone(), img, 1);
    const int r0 = random_crop_offset(img.rows, s.size, d.crop_r);
    const int c0 = random_crop_offset(img.cols, s.size, d.crop_c);
    const cv::Mat crop = img(cv::Rect(c0, r0, s.size, s.size));
    std::vector<float> out(3u * s.size * s.size);
    for (int y = 0; y < s.size; ++y)
        for (int x = 0; x < s.size; ++x)
            for (int k = 0; k < 3; ++k)
                out[(static_cast<std::size_t>(k) * s.size + y) * s.size + x] = norm(crop.at<cv::Vec3f>(y, x)[k], k);
    return out;
}
}  // namespace

TEST(Transforms, CropOffsetsFollowFastai) {
    EXPECT_EQ(center_crop_offset(224, 224), 0);
    EXPECT_EQ(center_crop_offset(225, 224), 1);   // ceil(0.5)
    EXPECT_EQ(center_crop_offset(257, 224), 17);  // ceil(16.5)
    EXPECT_EQ(random_crop_offset(300, 224, 0.0), 0);
    EXPECT_EQ(random_crop_offset(300, 224, 0.5), 38);
    EXPECT_EQ(random_crop_offset(300, 224, 0.999), 75);  // floor(75.924)
}

TEST(Transforms, ScaleMinSizes) {
    const cv::Mat a = scale_min(to_float_rgb(test::pattern_image(400, 200)), 100);
    EXPECT_EQ(a.cols, 200);
    EXPECT_EQ(a.rows, 100);
    const cv::Mat b = scale_min(to_float_rgb(test::pattern_image(333, 250)), 224);
    EXPECT_EQ(b.cols, 298);   // floor(333 * 0.896) = floor(298.368)
    EXPECT_EQ(b.rows, 224);
    const cv::Mat c = scale_min(to_float_rgb(test::pattern_image(100, 150)), 224);  // upscaling
    EXPECT_EQ(c.cols, 224);
    EXPECT_EQ(c.rows, 336);
}

namespace {
cv::Mat noise_image(int w, int h, int seed) {
    cv::Mat m(h, w, CV_8UC3);
    cv::RNG rng(static_cast<std::uint64_t>(seed));
    rng.fill(m, cv::RNG::UNIFORM, 0, 256);
    return m;
}
double max_abs_diff(const cv::Mat& a, const cv::Mat& b) {
    EXPECT_EQ(a.size(), b.size());
    EXPECT_EQ(a.type(), b.type());
    return a.size() == b.size() && a.type() == b.type() ? cv::norm(a, b, cv::NORM_INF) : 1e9;
}
}  // namespace

// The fast resize is cv::resize's INTER_AREA arithmetic on the 8-bit pixels: enlargements (the
// sample competition's small images at 224 px) and reductions (the photo's 1/4 DCT decode) give
// the float image scale_min(to_float_rgb()) gives. The tolerance 1e-6 (a few float ulps of
// values in [0,1]) allows another operation order than OpenCV's vector code; it is measured 0.
TEST(Transforms, ScaleMinFromU8EqualsScaleMinOfTheFloatImage) {
    struct Case { int w, h, target; };
    for (const Case c : {Case{170, 150, 224}, Case{150, 184, 246}, Case{131, 97, 200}, Case{9, 8, 224},
                         Case{223, 300, 224}, Case{500, 375, 246}, Case{131, 97, 64}, Case{64, 64, 64},
                         Case{100, 150, 224}, Case{1, 1, 5}})
        for (int seed : {1, 2}) {
            const cv::Mat img = seed == 1 ? test::pattern_image(c.w, c.h, 3) : noise_image(c.w, c.h, 4);
            const cv::Mat want = scale_min(to_float_rgb(img), c.target);
            const cv::Mat got = scale_min_from_u8(img, c.target);
            EXPECT_LE(max_abs_diff(got, want), 1e-6) << c.w << "x" << c.h << " -> " << c.target << " seed " << seed;
        }
}

// The fused rotation's window and mean equal rotate_reflect's image (its window, its mean): the
// same coordinates, weights and reflected border as cv::warpAffine, every angle fastai draws
// and beyond (quarter turns and more exercise the border). Same 1e-6 as above.
TEST(Transforms, RotateReflectWindowEqualsTheRotatedImagesWindowAndMean) {
    Rng rng(99);
    struct Case { int w, h, win; };
    for (const Case c : {Case{246, 290, 224}, Case{301, 247, 224}, Case{97, 131, 64}, Case{64, 64, 64}, Case{65, 80, 17}})
        for (int trial = 0; trial < 6; ++trial) {
            const double degrees = trial == 0 ? 10.0 : trial == 1 ? -37.5 : trial == 2 ? 90.0 : rng.uniform(-10.0, 10.0);
            const cv::Mat img = to_float_rgb(trial % 2 ? noise_image(c.w, c.h, trial) : test::pattern_image(c.w, c.h, trial));
            const cv::Mat full = rotate_reflect(img, degrees);
            const int x = static_cast<int>(rng.uniform_int(0, c.w - c.win)), y = static_cast<int>(rng.uniform_int(0, c.h - c.win));
            const cv::Rect window(x, y, c.win, c.win);
            const RotatedWindow got = rotate_reflect_window(img, degrees, window);
            EXPECT_LE(max_abs_diff(got.pixels, full(window)), 1e-6) << c.w << "x" << c.h << " " << degrees << " deg";
            const cv::Scalar m = cv::mean(full);
            EXPECT_NEAR(got.mean, (m[0] + m[1] + m[2]) / 3.0, 1e-7) << c.w << "x" << c.h << " " << degrees << " deg";
        }
    EXPECT_THROW(rotate_reflect_window(to_float_rgb(test::pattern_image(50, 40, 1)), 5.0, cv::Rect(30, 0, 30, 30)),
                 std::invalid_argument);
}

TEST(Transforms, LightingFormulaExact) {
    cv::Mat img(1, 2, CV_32FC3);
    img.at<cv::Vec3f>(0, 0) = {0.2f, 0.4f, 0.6f};
    img.at<cv::Vec3f>(0, 1) = {0.8f, 1.0f, 0.0f};
    // mean over all pixels and channels = 0.5; out = clip((x - 0.5) * 1.5 + 0.5 + 0.1, 0, 1)
    apply_lighting(img, 0.1, 1.5);
    const float expected[6] = {0.15f, 0.45f, 0.75f, 1.0f, 1.0f, 0.0f};
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(img.at<cv::Vec3f>(0, i / 3)[i % 3], expected[i], 1e-6) << i;
}

TEST(Transforms, ValidationOfAConstantImageIsTheNormalisedConstant) {
    cv::Mat img(250, 300, CV_8UC3, cv::Scalar(128, 64, 200));
    AugmentSettings s = AugmentSettings::side_on(224);
    std::vector<float> out(3 * 224 * 224);
    validation_transform(img, s, out.data());
    const float v[3] = {128 / 255.f, 64 / 255.f, 200 / 255.f};
    for (int k = 0; k < 3; ++k)
        for (int i = 0; i < 224 * 224; i += 997) EXPECT_NEAR(out[static_cast<std::size_t>(k) * 224 * 224 + i], norm(v[k], k), 1e-5);
}

TEST(Transforms, ValidationCentreCropUsesCeil) {
    for (int width : {232, 233}) {
        const cv::Mat img = test::pattern_image(width, 224, 4);
        AugmentSettings s = AugmentSettings::side_on(224);
        std::vector<float> out(3 * 224 * 224);
        validation_transform(img, s, out.data());
        const int off = width == 232 ? 4 : 5;  // ceil(8/2), ceil(9/2)
        for (int y = 0; y < 224; y += 37)
            for (int x = 0; x < 224; x += 29)
                for (int k = 0; k < 3; ++k)
                    ASSERT_NEAR(out[(static_cast<std::size_t>(k) * 224 + y) * 224 + x],
                                norm(img.at<cv::Vec3b>(y, x + off)[k] / 255.f, k), 1e-5)
                        << "width " << width << " y " << y << " x " << x;
    }
}

TEST(Transforms, FlipThenRandomCropLikeFastai) {
    const cv::Mat img = test::pattern_image(234, 224, 6);
    AugmentSettings s = AugmentSettings::side_on(224, 1.0);
    AugmentDraw d = no_augmentation(224);
    d.flip = true;
    d.crop_c = 0.35;  // floor(0.35 * 10) = 3 in the flipped image
    std::vector<float> out(3 * 224 * 224);
    training_transform(img, s, d, out.data());
    for (int y = 0; y < 224; y += 17)
        for (int x = 0; x < 224; x += 13)
            for (int k = 0; k < 3; ++k)
                ASSERT_NEAR(out[(static_cast<std::size_t>(k) * 224 + y) * 224 + x],
                            norm(img.at<cv::Vec3b>(y, 230 - x)[k] / 255.f, k), 1e-6);
}

TEST(Transforms, RotationIsAboutTheIntegerCentre) {
    const cv::Mat img = to_float_rgb(test::pattern_image(21, 21, 8));
    const cv::Mat rot = rotate_reflect(img, 180.0);
    for (int y = 0; y < 21; ++y)
        for (int x = 0; x < 21; ++x)
            for (int k = 0; k < 3; ++k)
                ASSERT_NEAR(rot.at<cv::Vec3f>(y, x)[k], img.at<cv::Vec3f>(20 - y, 20 - x)[k], 1e-4);
}

TEST(Transforms, RotationReflectsTheBorder) {
    const cv::Mat grey(120, 160, CV_32FC3, cv::Scalar(0.5, 0.5, 0.5));
    const cv::Mat rot = rotate_reflect(grey, 10.0);
    double lo, hi;
    cv::minMaxLoc(rot.reshape(1), &lo, &hi);
    EXPECT_NEAR(lo, 0.5, 1e-5);  // a constant border would have left black corners
    EXPECT_NEAR(hi, 0.5, 1e-5);
}

TEST(Transforms, LightingUsesTheMeanOfTheWholeImageNotTheCrop) {
    cv::Mat img(224, 448, CV_8UC3, cv::Scalar(0, 0, 0));
    img(cv::Rect(224, 0, 224, 224)).setTo(cv::Scalar(255, 255, 255));
    AugmentSettings s = AugmentSettings::side_on(224, 1.0);
    AugmentDraw d = no_augmentation(224);
    d.contrast = 0.5;
    d.crop_c = 0.0;  // the black half
    std::vector<float> out(3 * 224 * 224);
    training_transform(img, s, d, out.data());
    // mean 0.5: (0 - 0.5) * 0.5 + 0.5 = 0.25
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(out[static_cast<std::size_t>(k) * 224 * 224 + 1000], norm(0.25f, k), 1e-6);
}

TEST(Transforms, FusedTrainingPipelineEqualsTheStepByStepRecipe) {
    const cv::Mat img = test::pattern_image(371, 263, 11);
    AugmentSettings s = AugmentSettings::side_on(96, 1.1);
    Rng rng(123);
    int rotated = 0, flipped = 0;
    for (int trial = 0; trial < 25; ++trial) {
        const AugmentDraw d = draw_augmentation(s, rng);
        rotated += d.rotate;
        flipped += d.flip;
        std::vector<float> fused(3 * 96 * 96);
        training_transform(img, s, d, fused.data());
        const auto ref = reference_training(img, s, d);
        for (std::size_t i = 0; i < fused.size(); ++i) ASSERT_NEAR(fused[i], ref[i], 2e-6) << "trial " << trial << " i " << i;
    }
    EXPECT_GT(rotated, 0);
    EXPECT_GT(flipped, 0);
}

TEST(Transforms, WithoutAugmentationTrainingEqualsValidationOnASquareImage) {
    const cv::Mat img = test::pattern_image(64, 64, 12);
    AugmentSettings s = AugmentSettings::side_on(64, 1.0);
    s.preset = AugmentPreset::None;
    Rng rng(5);
    const AugmentDraw d = draw_augmentation(s, rng);
    std::vector<float> a(3 * 64 * 64), b(3 * 64 * 64);
    training_transform(img, s, d, a.data());
    validation_transform(img, s, b.data());
    EXPECT_EQ(a, b);
}

TEST(Transforms, DrawsHaveFastaiProbabilitiesAndRanges) {
    AugmentSettings s = AugmentSettings::side_on(224, 1.1);
    Rng rng(99);
    const int n = 20000;
    int rotate = 0, flip = 0, zoomed = 0, darker_contrast = 0;
    for (int i = 0; i < n; ++i) {
        const AugmentDraw d = draw_augmentation(s, rng);
        rotate += d.rotate;
        flip += d.flip;
        zoomed += d.scaled_size > 224;
        darker_contrast += d.contrast < 1.0;
        ASSERT_GE(d.degrees, -10.0);
        ASSERT_LE(d.degrees, 10.0);
        ASSERT_GE(d.brightness, -0.05);
        ASSERT_LE(d.brightness, 0.05);
        ASSERT_GE(d.contrast, 1.0 / 1.05 - 1e-12);
        ASSERT_LE(d.contrast, 1.05);
        ASSERT_GE(d.scaled_size, 224);
        ASSERT_LE(d.scaled_size, 246);  // int(1.1 * 224)
    }
    EXPECT_NEAR(rotate / double(n), 0.75, 0.015);
    EXPECT_NEAR(flip / double(n), 0.5, 0.015);
    // p = 0.75, and int(U(1,1.1)*224) > 224 unless U < 225/224
    EXPECT_NEAR(zoomed / double(n), 0.75 * (1 - (1.0 / 224) / 0.1), 0.015);
    EXPECT_NEAR(darker_contrast / double(n), 0.5, 0.015);
    // Same seed, same draws.
    Rng a(7), b(7);
    for (int i = 0; i < 10; ++i) {
        const AugmentDraw x = draw_augmentation(s, a), y = draw_augmentation(s, b);
        EXPECT_EQ(x.degrees, y.degrees);
        EXPECT_EQ(x.crop_c, y.crop_c);
    }
}

TEST(Transforms, TopDownIsBasicPlusRandomDihedral) {
    AugmentSettings s = AugmentSettings::side_on(32, 1.0);
    s.preset = AugmentPreset::TopDown;
    Rng rng(3);
    std::set<int> seen;
    int rotated = 0;
    for (int i = 0; i < 400; ++i) {
        const AugmentDraw d = draw_augmentation(s, rng);
        // transforms_top_down = transforms_basic + [RandomDihedral()]: RandomRotate(10) too;
        // the mirror image is the dihedral's, not RandomFlip's.
        rotated += d.rotate;
        EXPECT_FALSE(d.flip);
        seen.insert(d.dihedral);
    }
    EXPECT_NEAR(rotated / 400.0, 0.75, 0.07);
    EXPECT_EQ(seen.size(), 8u);
    // Dihedral 2 = one quarter turn anticlockwise (np.rot90).
    const cv::Mat img = test::pattern_image(32, 32, 2);
    AugmentDraw d = no_augmentation(32);
    d.dihedral = 2;
    std::vector<float> out(3 * 32 * 32);
    training_transform(img, s, d, out.data());
    // rot90: out[y][x] = in[x][W-1-y]
    for (int y = 0; y < 32; y += 5)
        for (int x = 0; x < 32; x += 7)
            ASSERT_NEAR(out[static_cast<std::size_t>(y) * 32 + x], norm(img.at<cv::Vec3b>(x, 31 - y)[0] / 255.f, 0), 1e-6);
}

TEST(Transforms, PreviewIsAnRgbImageOfTheModelSize) {
    const cv::Mat img = test::pattern_image(300, 200, 1);
    AugmentSettings s = AugmentSettings::side_on(128);
    Rng rng(1);
    const cv::Mat p = training_transform_preview(img, s, draw_augmentation(s, rng));
    EXPECT_EQ(p.type(), CV_8UC3);
    EXPECT_EQ(p.cols, 128);
    EXPECT_EQ(p.rows, 128);
}
