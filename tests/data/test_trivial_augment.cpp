// The options on top of an augmentation preset (--trivial-augment, --random-erasing P) against
// torchvision 0.14 (Debian's python3-torchvision):
//   TrivialAugmentWide: each op at a few magnitudes gives torchvision's pixels on the same uint8
//                       image (references from tests/data/trivial_augment_reference.py);
//   RandomErasing:      the rectangle within torchvision's bounds, value 0, p respected;
// both drawn from the loader's seeded per-image generator (the same with 1 and 4 threads), and
// remembered with the learner (learner.json).
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/image_decode.h"
#include "whisker/data/loader.h"
#include "whisker/data/prepare.h"
#include "whisker/data/transforms.h"
#include "whisker/project/session.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace whisker;
using namespace whisker::data;

namespace {

std::vector<TrivialOp> all_ops() {
    std::vector<TrivialOp> ops;
    for (int i = 0; i < kTrivialOpCount; ++i) ops.push_back(static_cast<TrivialOp>(i));
    return ops;
}

// A test picture with structure: gradients, a bright disc, a dark bar and noise, channels over
// different ranges (so AutoContrast and Equalize have work to do), not square.
cv::Mat test_image(int rows, int cols) {
    cv::Mat img(rows, cols, CV_8UC3);
    Rng rng(7);
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < cols; ++x) {
            const double dx = x - cols * 0.6, dy = y - rows * 0.4;
            const bool disc = dx * dx + dy * dy < 0.05 * rows * cols;
            const bool bar = x > cols / 5 && x < cols / 4;
            const int noise = static_cast<int>(rng.uniform_int(-12, 12));
            int r = 40 + 150 * x / cols + noise, g = 20 + 200 * y / rows - noise, b = 90 + 60 * (x + y) / (rows + cols);
            if (disc) r += 60, g += 40, b += 100;
            if (bar) r /= 3, g /= 3, b /= 3;
            img.at<cv::Vec3b>(y, x) = cv::Vec3b(cv::saturate_cast<uchar>(r), cv::saturate_cast<uchar>(g),
                                                cv::saturate_cast<uchar>(b));
        }
    return img;
}

}  // namespace

TEST(TrivialAugmentOps, TheOpsAndMagnitudesAreTorchvisions) {
    const std::vector<std::string> names{"Identity", "ShearX",     "ShearY",   "TranslateX", "TranslateY",
                                         "Rotate",   "Brightness", "Color",    "Contrast",   "Sharpness",
                                         "Posterize", "Solarize",  "AutoContrast", "Equalize"};
    ASSERT_EQ(kTrivialOpCount, static_cast<int>(names.size()));
    for (int i = 0; i < kTrivialOpCount; ++i) EXPECT_EQ(trivial_op_name(static_cast<TrivialOp>(i)), names[i]);
    // A few table values (torch.linspace in float32; Posterize's rounded bits).
    EXPECT_EQ(trivial_magnitude(TrivialOp::ShearX, 30, false), static_cast<double>(0.99f));
    EXPECT_EQ(trivial_magnitude(TrivialOp::ShearX, 30, true), -static_cast<double>(0.99f));
    EXPECT_EQ(trivial_magnitude(TrivialOp::TranslateY, 15, false), 16.0);
    EXPECT_EQ(trivial_magnitude(TrivialOp::Rotate, 30, true), -135.0);
    EXPECT_EQ(trivial_magnitude(TrivialOp::Posterize, 0, true), 8.0);   // unsigned
    EXPECT_EQ(trivial_magnitude(TrivialOp::Posterize, 30, false), 2.0);
    EXPECT_EQ(trivial_magnitude(TrivialOp::Solarize, 30, false), 0.0);
    EXPECT_EQ(trivial_magnitude(TrivialOp::Equalize, 12, true), 0.0);
    EXPECT_FALSE(trivial_op_signed(TrivialOp::Solarize));
    EXPECT_TRUE(trivial_op_signed(TrivialOp::Sharpness));
}

// Every op at three magnitudes (with both signs where the op has them) on the same image:
// torchvision's _apply_op(img, op, magnitude, NEAREST, fill=None) on a uint8 tensor.
TEST(TrivialAugmentOps, EveryOpMatchesTorchvisionOnTheSameImage) {
    WHISKER_REQUIRE_PYTHON_TORCHVISION();
    test::TempDir dir;
    // Odd sizes, a small square and the usual 224 (the crop the options see).
    std::vector<cv::Mat> images{test_image(48, 61), test_image(32, 32), test_image(224, 224), test_image(300, 300)};
    for (std::size_t n = 0; n < images.size(); ++n) {
        const cv::Mat& img = images[n];
        SCOPED_TRACE(n);
        const fs::path d = dir / std::to_string(n);
        fs::create_directories(d);
        {
            std::ofstream f(d / "image.u8", std::ios::binary);
            f << img.rows << " " << img.cols << "\n";
            for (int y = 0; y < img.rows; ++y) f.write(reinterpret_cast<const char*>(img.ptr(y)), img.cols * 3);
        }
        struct Case {
            TrivialOp op;
            int bin;
            bool negative;
        };
        std::vector<Case> cases;
        for (TrivialOp op : all_ops()) {
            if (!trivial_op_has_magnitudes(op)) {
                cases.push_back({op, 0, false});
                continue;
            }
            for (int bin : {3, 17, 30}) {
                cases.push_back({op, bin, false});
                if (trivial_op_signed(op)) cases.push_back({op, bin, true});
            }
        }
        {
            std::ofstream f(d / "ops.txt");
            for (const Case& c : cases) f << trivial_op_name(c.op) << " " << c.bin << " " << (c.negative ? 1 : 0) << "\n";
        }
        const std::string cmd =
            "/usr/bin/python3 " + (test::tests_dir() / "data/trivial_augment_reference.py").string() + " " + d.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        std::ifstream mags(d / "magnitudes.txt");
        for (std::size_t i = 0; i < cases.size(); ++i) {
            const Case& c = cases[i];
            const double magnitude = trivial_magnitude(c.op, c.bin, c.negative);
            SCOPED_TRACE(std::string(trivial_op_name(c.op)) + " bin " + std::to_string(c.bin) + (c.negative ? " -" : " +"));
            double torch_magnitude = 0;
            ASSERT_TRUE(mags >> torch_magnitude);
            EXPECT_EQ(magnitude, torch_magnitude);
            const std::string want = read_file(d / ("out_" + std::to_string(i) + ".u8"));
            ASSERT_EQ(want.size(), img.total() * 3);
            const cv::Mat got = apply_trivial_op(img, c.op, magnitude);
            ASSERT_EQ(got.type(), CV_8UC3);
            ASSERT_EQ(got.size(), img.size());
            int differing = 0, first = -1;
            for (int y = 0; y < img.rows; ++y)
                for (int x = 0; x < img.cols * 3; ++x) {
                    const std::size_t k = static_cast<std::size_t>(y) * img.cols * 3 + x;
                    if (got.ptr(y)[x] != static_cast<unsigned char>(want[k])) {
                        if (first < 0) first = static_cast<int>(k);
                        ++differing;
                    }
                }
            // The references are not the image itself (every op but Identity changes it at bin 30).
            if (c.bin == 30 || !trivial_op_has_magnitudes(c.op)) {
                EXPECT_EQ(c.op == TrivialOp::Identity, cv::norm(got, img, cv::NORM_INF) == 0.0);
            }
            EXPECT_EQ(differing, 0) << "first at byte " << first << ": got " << int(got.data[first >= 0 ? first : 0])
                                    << ", torchvision " << int(static_cast<unsigned char>(want[first >= 0 ? first : 0]));
        }
    }
}

TEST(TrivialAugmentDraws, OpsMagnitudesAndSignsAreUniformAndSeeded) {
    AugmentSettings s = AugmentSettings::for_preset(AugmentPreset::SideOn, 64, 1.1);
    s.trivial_augment = true;
    std::map<int, int> ops, bins;
    int negative = 0, signed_draws = 0;
    const int n = 14000;
    for (int i = 0; i < n; ++i) {
        Rng a(derive_seed(42, 1, i)), b(derive_seed(42, 1, i));
        const AugmentDraw d = draw_augmentation(s, a), again = draw_augmentation(s, b);
        ASSERT_TRUE(d.trivial);
        EXPECT_EQ(d.trivial_op, again.trivial_op);
        EXPECT_EQ(d.trivial_bin, again.trivial_bin);
        EXPECT_EQ(d.trivial_negative, again.trivial_negative);
        ++ops[static_cast<int>(d.trivial_op)];
        if (trivial_op_has_magnitudes(d.trivial_op)) ++bins[d.trivial_bin];
        else EXPECT_EQ(d.trivial_bin, 0);
        if (trivial_op_signed(d.trivial_op)) {
            ++signed_draws;
            negative += d.trivial_negative;
        } else {
            EXPECT_FALSE(d.trivial_negative);
        }
    }
    ASSERT_EQ(ops.size(), static_cast<std::size_t>(kTrivialOpCount));
    for (const auto& [op, count] : ops) EXPECT_NEAR(count, n / kTrivialOpCount, 150) << op;
    ASSERT_EQ(bins.size(), static_cast<std::size_t>(kTrivialMagnitudeBins));
    for (const auto& [bin, count] : bins) EXPECT_NEAR(count, 11 * n / 14 / 31, 80) << bin;
    EXPECT_NEAR(static_cast<double>(negative) / signed_draws, 0.5, 0.02);
}

// The options are drawn after the preset's choices: with them on, the preset's draws (and so
// the image without the options) are the same; with them off, nothing changes at all.
TEST(TrivialAugmentDraws, ThePresetsDrawsAreKept) {
    for (AugmentPreset p : augment_presets()) {
        const AugmentSettings plain = AugmentSettings::for_preset(p, 48, 1.3);
        AugmentSettings with = plain;
        with.trivial_augment = true;
        with.random_erasing = 0.5;
        for (int i = 0; i < 50; ++i) {
            Rng a(derive_seed(3, i)), b(derive_seed(3, i));
            const AugmentDraw x = draw_augmentation(plain, a), y = draw_augmentation(with, b);
            EXPECT_EQ(x.scaled_size, y.scaled_size);
            EXPECT_EQ(x.degrees, y.degrees);
            EXPECT_EQ(x.rotate, y.rotate);
            EXPECT_EQ(x.brightness, y.brightness);
            EXPECT_EQ(x.contrast, y.contrast);
            EXPECT_EQ(x.flip, y.flip);
            EXPECT_EQ(x.dihedral, y.dihedral);
            EXPECT_EQ(x.crop_r, y.crop_r);
            EXPECT_EQ(x.crop_c, y.crop_c);
            EXPECT_FALSE(x.trivial);
            EXPECT_FALSE(x.erase.erase);
        }
    }
}

// TrivialAugmentWide's op is applied to the preset's crop as 8-bit pixels, before normalisation;
// Identity gives the preset's crop quantised to 8 bits.
TEST(TrivialAugmentDraws, TheOpActsOnThePresetsCropBeforeNormalisation) {
    const cv::Mat img = test_image(80, 100);
    AugmentSettings s = AugmentSettings::for_preset(AugmentPreset::SideOn, 64, 1.2);
    s.trivial_augment = true;
    const AugmentSettings plain = AugmentSettings::for_preset(AugmentPreset::SideOn, 64, 1.2);
    int checked = 0;
    for (int i = 0; i < 60; ++i) {
        Rng rng(derive_seed(11, i));
        const AugmentDraw d = draw_augmentation(s, rng);
        AugmentDraw preset_only = d;
        preset_only.trivial = false;
        const cv::Mat crop8 = training_transform_preview(img, plain, preset_only);
        const cv::Mat want8 = apply_trivial_op(crop8, d.trivial_op, trivial_magnitude(d.trivial_op, d.trivial_bin,
                                                                                      d.trivial_negative));
        EXPECT_EQ(cv::norm(training_transform_preview(img, s, d), want8, cv::NORM_INF), 0.0);
        std::vector<float> out(3 * 64 * 64);
        training_transform(img, s, d, out.data());
        for (int y = 0; y < 64; y += 7)
            for (int x = 0; x < 64; x += 5)
                for (int k = 0; k < 3; ++k) {
                    const float v = want8.at<cv::Vec3b>(y, x)[k] / 255.0f;
                    EXPECT_NEAR(out[k * 64 * 64 + y * 64 + x], (v - s.norm.mean[k]) / s.norm.std[k], 1e-5);
                }
        // Identity: the fused pass's output to 8-bit precision.
        if (d.trivial_op == TrivialOp::Identity) {
            std::vector<float> fused(3 * 64 * 64);
            training_transform(img, plain, preset_only, fused.data());
            for (std::size_t k = 0; k < out.size(); ++k) EXPECT_NEAR(out[k], fused[k], 0.5 / 255 / 0.224 + 1e-5);
            ++checked;
        }
    }
    EXPECT_GT(checked, 0);
}

TEST(AugmentRandomErasing, TheRectangleIsWithinTorchvisionsBoundsAndPIsRespected) {
    for (double p : {0.25, 0.5, 1.0}) {
        const int size = 64, n = 8000;
        int erased = 0;
        for (int i = 0; i < n; ++i) {
            Rng rng(derive_seed(5, static_cast<std::uint64_t>(p * 100), i));
            const EraseBox b = draw_erase_box(p, size, rng);
            if (!b.erase) continue;
            ++erased;
            ASSERT_GT(b.height, 0);
            ASSERT_GT(b.width, 0);
            ASSERT_LT(b.height, size);
            ASSERT_LT(b.width, size);
            ASSERT_GE(b.top, 0);
            ASSERT_GE(b.left, 0);
            ASSERT_LE(b.top + b.height, size);
            ASSERT_LE(b.left + b.width, size);
            // h = round(sqrt(A*r)), w = round(sqrt(A/r)) with A in [0.02, 0.33]*area and r in
            // [0.3, 3.3]: within those bounds to the rounding of each side.
            const double area = static_cast<double>(size) * size;
            EXPECT_GE((b.height + 0.5) * (b.width + 0.5), kEraseScaleMin * area);
            EXPECT_LE((b.height - 0.5) * (b.width - 0.5), kEraseScaleMax * area);
            EXPECT_GE((b.height + 0.5) / (b.width - 0.5), kEraseRatioMin);
            EXPECT_LE((b.height - 0.5) / (b.width + 0.5), kEraseRatioMax);
        }
        // torchvision's 10 attempts nearly always find a fitting rectangle at this size.
        EXPECT_NEAR(static_cast<double>(erased) / n, p, 0.02) << p;
    }
    Rng rng(1);
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(draw_erase_box(0.0, 64, rng).erase);
}

TEST(AugmentRandomErasing, ErasesToZeroAfterNormalisation) {
    const cv::Mat img = test_image(80, 100);
    AugmentSettings s = AugmentSettings::for_preset(AugmentPreset::TopDown, 48, 1.1);
    const AugmentSettings plain = s;
    s.random_erasing = 1.0;
    int erased = 0;
    for (int i = 0; i < 20; ++i) {
        Rng rng(derive_seed(9, i));
        const AugmentDraw d = draw_augmentation(s, rng);
        std::vector<float> got(3 * 48 * 48), want(3 * 48 * 48);
        training_transform(img, s, d, got.data());
        AugmentDraw no_erase = d;
        no_erase.erase = EraseBox{};
        training_transform(img, plain, no_erase, want.data());
        const EraseBox& b = d.erase;
        erased += b.erase;
        for (int k = 0; k < 3; ++k)
            for (int y = 0; y < 48; ++y)
                for (int x = 0; x < 48; ++x) {
                    const std::size_t at = static_cast<std::size_t>(k) * 48 * 48 + y * 48 + x;
                    const bool inside = b.erase && y >= b.top && y < b.top + b.height && x >= b.left && x < b.left + b.width;
                    if (inside) ASSERT_EQ(got[at], 0.0f);
                    else ASSERT_EQ(got[at], want[at]);   // the fused pass, bit for bit
                }
        // The preview shows the erased box in the normalisation's mean colour.
        const cv::Mat preview = training_transform_preview(img, s, d);
        if (b.erase) {
            EXPECT_EQ(preview.at<cv::Vec3b>(b.top, b.left), cv::Vec3b(124, 116, 104));
        }
    }
    EXPECT_GT(erased, 15);
}

namespace {

class AugmentOptionsLoaderTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir;
        test::write_sample(*dir_ / "dl", 30, 4);
        PrepareOptions o;
        o.project = *dir_ / "p";
        o.source = *dir_ / "dl";
        o.valid_per_class = 3;
        dataset_ = new Dataset(prepare_dataset(o));
    }
    static void TearDownTestSuite() {
        delete dataset_;
        delete dir_;
    }
    static fs::path project() { return *dir_ / "p"; }
    static LoaderOptions options(int threads) {
        LoaderOptions o;
        o.batch_size = 8;
        o.threads = threads;
        return o;
    }
    static at::Tensor epoch(DataLoader& l, int e, std::vector<std::size_t>* records = nullptr) {
        std::vector<at::Tensor> parts;
        l.start_epoch(e);
        while (auto b = l.next()) {
            parts.push_back(b->images);
            if (records) records->insert(records->end(), b->records.begin(), b->records.end());
        }
        return at::cat(parts);
    }
    static test::TempDir* dir_;
    static Dataset* dataset_;
};
test::TempDir* AugmentOptionsLoaderTest::dir_ = nullptr;
Dataset* AugmentOptionsLoaderTest::dataset_ = nullptr;

}  // namespace

// Through the loader: an epoch with the options is the same with 1 and 4 threads, the first
// image is the training transform of its seeded draw, and the options change the images.
TEST_F(AugmentOptionsLoaderTest, TheOptionsAreReproducibleWhateverTheThreadCount) {
    const AugmentSettings plain = AugmentSettings::for_preset(AugmentPreset::SideOn, 64, 1.1);
    std::vector<AugmentSettings> settings(3, plain);
    settings[0].trivial_augment = true;
    settings[1].random_erasing = 0.5;
    settings[2].trivial_augment = true;
    settings[2].random_erasing = 0.25;
    const at::Tensor without = epoch(*make_loader(*dataset_, project(), View::Train, plain, options(2)), 1);
    for (const AugmentSettings& s : settings) {
        SCOPED_TRACE(describe_augmentation(s.preset, s.max_zoom, s.no_flip, s.trivial_augment, s.random_erasing));
        auto one = make_loader(*dataset_, project(), View::Train, s, options(1));
        auto four = make_loader(*dataset_, project(), View::Train, s, options(4));
        std::vector<std::size_t> records;
        const at::Tensor a = epoch(*one, 1, &records), b = epoch(*four, 1);
        EXPECT_TRUE(at::equal(a, b));
        EXPECT_FALSE(at::equal(a, without));

        DecodeOptions decode;
        decode.min_shorter_side = s.min_decode_side();
        const DecodedImage img = decode_image_file(dataset_->resolve(project(), dataset_->images[records[0]]), decode);
        Rng rng(derive_seed(options(1).seed, 2, 0));
        std::vector<float> expected(3 * 64 * 64);
        training_transform(img.rgb, s, draw_augmentation(s, rng), expected.data());
        const at::Tensor first = a[0].contiguous();
        EXPECT_TRUE(std::equal(expected.begin(), expected.end(), first.data_ptr<float>()));

        // Test-time augmentation is the preset's alone.
        EXPECT_TRUE(at::equal(epoch(*make_loader(*dataset_, project(), View::Aug, s, options(2)), 0),
                              epoch(*make_loader(*dataset_, project(), View::Aug, plain, options(2)), 0)));
    }
}

// learner.json keeps the options; files written before them read as off.
TEST(AugmentOptionsLearnerSpec, TheOptionsAreRememberedInLearnerJson) {
    test::TempDir dir;
    project::LearnerSpec spec;
    spec.arch = "resnet18";
    spec.augment = AugmentPreset::Basic;
    spec.trivial_augment = true;
    spec.random_erasing = 0.25;
    spec.write(dir.path());
    const json written = json::parse(read_file(dir / project::LearnerSpec::kFileName));
    EXPECT_EQ(written.at("trivial_augment"), true);
    EXPECT_EQ(written.at("random_erasing"), 0.25);
    const auto read = project::LearnerSpec::read(dir.path());
    ASSERT_TRUE(read.has_value());
    EXPECT_TRUE(*read == spec);
    EXPECT_TRUE(read->trivial_augment);
    EXPECT_EQ(read->random_erasing, 0.25);
    EXPECT_EQ(describe_augmentation(read->augment, read->max_zoom, read->no_flip, read->trivial_augment,
                                    read->random_erasing),
              "basic augmentation, TrivialAugmentWide, random erasing p 0.25");
    EXPECT_EQ(describe_augmentation(AugmentPreset::SideOn, 1.1, false), "side-on augmentation");

    write_file_atomically(dir / project::LearnerSpec::kFileName,
                          R"({"arch": "resnet18", "size": 32, "augment": "top-down", "max_zoom": 1.1})");
    const auto old = project::LearnerSpec::read(dir.path());
    ASSERT_TRUE(old.has_value());
    EXPECT_FALSE(old->trivial_augment);
    EXPECT_EQ(old->random_erasing, 0.0);

    write_file_atomically(dir / project::LearnerSpec::kFileName, R"({"arch": "resnet18", "random_erasing": 1.5})");
    EXPECT_THROW(project::LearnerSpec::read(dir.path()), UserError);
}
