// The augmentation presets (--aug side-on|top-down|basic|none, --max-zoom, --no-flip) against
// fastai 0.7's transforms.py:
//   transforms_basic    = [RandomRotate(10), RandomLighting(0.05, 0.05)]
//   transforms_side_on  = transforms_basic + [RandomFlip()]
//   transforms_top_down = transforms_basic + [RandomDihedral()]
//   tfms_from_model(f, sz, aug_tfms, max_zoom): [RandomScale(sz, max_zoom) or Scale(sz)] + aug_tfms
//                                               + [RandomCrop(sz)]
#include "test_support.h"

#include "whisker/data/transforms.h"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>

#include <array>
#include <map>
#include <set>
#include <vector>

using namespace whisker;
using namespace whisker::data;

namespace {

constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};
float norm(float v01, int channel) { return (v01 - kMean[channel]) / kStd[channel]; }

// fastai 0.7's transforms, by the random state each draws in set_state.
enum class Fastai { RandomRotate, RandomLighting, RandomFlip, RandomDihedral };
const std::vector<Fastai> kBasic{Fastai::RandomRotate, Fastai::RandomLighting};
std::vector<Fastai> plus(std::vector<Fastai> list, Fastai t) {
    list.push_back(t);
    return list;
}

// The aug_tfms list of each preset, written out from transforms.py.
std::vector<Fastai> fastai_list(AugmentPreset p) {
    switch (p) {
        case AugmentPreset::SideOn: return plus(kBasic, Fastai::RandomFlip);
        case AugmentPreset::TopDown: return plus(kBasic, Fastai::RandomDihedral);
        case AugmentPreset::Basic: return kBasic;
        case AugmentPreset::None: return {};
    }
    return {};
}

// fastai's Transforms.__call__ on the random state alone: the scale transform, each aug_tfm,
// then RandomCrop, each drawing with its own parameters (rand0(s) = random()*(2s) - s).
AugmentDraw fastai_draw(AugmentPreset preset, int sz, double max_zoom, Rng& random) {
    AugmentDraw d;
    double mult = 1.0;
    if (max_zoom > 1.0) {   // RandomScale(sz, max_zoom, p=0.75); Scale(sz) draws nothing
        const bool zoom = random.uniform() < 0.75;
        if (zoom) mult = random.uniform(1.0, max_zoom);
    }
    d.scaled_size = static_cast<int>(mult * sz);
    for (Fastai t : fastai_list(preset)) {
        switch (t) {
            case Fastai::RandomRotate:   // deg=10, p=0.75
                d.degrees = random.uniform() * 20.0 - 10.0;
                d.rotate = random.uniform() < 0.75;
                break;
            case Fastai::RandomLighting: {   // b=0.05, c=0.05
                d.brightness = random.uniform() * 0.1 - 0.05;
                const double c = random.uniform() * 0.1 - 0.05;
                d.contrast = c < 0 ? -1 / (c - 1) : c + 1;
                break;
            }
            case Fastai::RandomFlip:   // p=0.5
                d.flip = random.uniform() < 0.5;
                break;
            case Fastai::RandomDihedral: {   // rot_times = randint(0,3), do_flip = random() < 0.5
                const auto rot_times = static_cast<int>(random.uniform_int(0, 3));
                const bool do_flip = random.uniform() < 0.5;
                d.dihedral = 2 * rot_times + (do_flip ? 1 : 0);
                break;
            }
        }
    }
    d.crop_r = random.uniform();
    d.crop_c = random.uniform();
    return d;
}

void expect_same_draw(const AugmentDraw& a, const AugmentDraw& b, const std::string& where) {
    EXPECT_EQ(a.scaled_size, b.scaled_size) << where;
    EXPECT_EQ(a.rotate, b.rotate) << where;
    EXPECT_EQ(a.degrees, b.degrees) << where;
    EXPECT_EQ(a.brightness, b.brightness) << where;
    EXPECT_EQ(a.contrast, b.contrast) << where;
    EXPECT_EQ(a.flip, b.flip) << where;
    EXPECT_EQ(a.dihedral, b.dihedral) << where;
    EXPECT_EQ(a.crop_r, b.crop_r) << where;
    EXPECT_EQ(a.crop_c, b.crop_c) << where;
}

// The dihedral transform k = 2*rot_times + do_flip by index arithmetic: np.rot90(x, r) maps
// out[i][j] = x[j][W-1-i] per quarter turn (anticlockwise), np.fliplr out[i][j] = x[i][W-1-j].
cv::Mat dihedral_by_indices(const cv::Mat& src, int k) {
    cv::Mat cur = src.clone();
    for (int t = 0; t < k / 2; ++t) {
        cv::Mat next(cur.cols, cur.rows, cur.type());
        for (int i = 0; i < next.rows; ++i)
            for (int j = 0; j < next.cols; ++j) next.at<cv::Vec3b>(i, j) = cur.at<cv::Vec3b>(j, cur.cols - 1 - i);
        cur = next;
    }
    if (k % 2 == 1) {
        cv::Mat next(cur.rows, cur.cols, cur.type());
        for (int i = 0; i < next.rows; ++i)
            for (int j = 0; j < next.cols; ++j) next.at<cv::Vec3b>(i, j) = cur.at<cv::Vec3b>(i, cur.cols - 1 - j);
        cur = next;
    }
    return cur;
}

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
    return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

std::vector<float> chw(const cv::Mat& float_rgb, int row0, int col0, int sz) {
    std::vector<float> out(3u * sz * sz);
    for (int y = 0; y < sz; ++y)
        for (int x = 0; x < sz; ++x)
            for (int k = 0; k < 3; ++k)
                out[(static_cast<std::size_t>(k) * sz + y) * sz + x] = norm(float_rgb.at<cv::Vec3f>(row0 + y, col0 + x)[k], k);
    return out;
}

// Any preset applied literally, one fastai step after the other, on float images.
std::vector<float> reference_training(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    cv::Mat img = scale_min(to_float_rgb(rgb8), d.scaled_size);
    if (d.rotate) img = rotate_reflect(img, d.degrees);
    apply_lighting(img, d.brightness, d.contrast);
    if (s.preset == AugmentPreset::SideOn && d.flip) cv::flip(img.clone(), img, 1);
    if (s.preset == AugmentPreset::TopDown) img = apply_dihedral(img, d.dihedral);
    return chw(img, random_crop_offset(img.rows, s.size, d.crop_r), random_crop_offset(img.cols, s.size, d.crop_c), s.size);
}

std::vector<float> run_training(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    std::vector<float> out(3u * s.size * s.size);
    training_transform(rgb8, s, d, out.data());
    return out;
}

}  // namespace

TEST(TransformPresets, NamesDefaultsAndWords) {
    EXPECT_STREQ(augment_preset_name(AugmentPreset::SideOn), "side-on");
    EXPECT_STREQ(augment_preset_name(AugmentPreset::TopDown), "top-down");
    EXPECT_STREQ(augment_preset_name(AugmentPreset::Basic), "basic");
    EXPECT_STREQ(augment_preset_name(AugmentPreset::None), "none");
    EXPECT_EQ(augment_presets(), (std::vector<AugmentPreset>{AugmentPreset::SideOn, AugmentPreset::TopDown,
                                                             AugmentPreset::Basic, AugmentPreset::None}));
    for (AugmentPreset p : augment_presets()) EXPECT_EQ(parse_augment_preset(augment_preset_name(p)), p);
    EXPECT_FALSE(parse_augment_preset("sideways"));
    EXPECT_FALSE(parse_augment_preset("side_on"));
    EXPECT_FALSE(parse_augment_preset(""));
    // Lesson 1's max_zoom=1.1 with augmentation; tfms_from_model's max_zoom=None without.
    EXPECT_EQ(default_max_zoom(AugmentPreset::SideOn), 1.1);
    EXPECT_EQ(default_max_zoom(AugmentPreset::TopDown), 1.1);
    EXPECT_EQ(default_max_zoom(AugmentPreset::Basic), 1.1);
    EXPECT_EQ(default_max_zoom(AugmentPreset::None), 1.0);
    EXPECT_EQ(AugmentSettings().preset, AugmentPreset::SideOn);
    EXPECT_EQ(AugmentSettings().max_zoom, 1.1);
    EXPECT_FALSE(AugmentSettings().no_flip);

    EXPECT_EQ(describe_augmentation(AugmentPreset::SideOn, 1.1, false), "side-on augmentation");
    EXPECT_EQ(describe_augmentation(AugmentPreset::TopDown, 1.1, false), "top-down augmentation");
    EXPECT_EQ(describe_augmentation(AugmentPreset::TopDown, 1.25, true), "top-down augmentation without flips, max zoom 1.25");
    EXPECT_EQ(describe_augmentation(AugmentPreset::SideOn, 1.0, true), "side-on augmentation without flips, no zoom");
    EXPECT_EQ(describe_augmentation(AugmentPreset::Basic, 1.1, true), "basic augmentation");
    EXPECT_EQ(describe_augmentation(AugmentPreset::None, 1.0, false), "no augmentation");
    EXPECT_EQ(describe_augmentation(AugmentPreset::None, 1.2, false), "zoom-only augmentation, max zoom 1.2");

    const AugmentSettings s = AugmentSettings::for_preset(AugmentPreset::TopDown, 96, 1.3, true);
    EXPECT_EQ(s.preset, AugmentPreset::TopDown);
    EXPECT_EQ(s.size, 96);
    EXPECT_EQ(s.max_zoom, 1.3);
    EXPECT_TRUE(s.no_flip);
    EXPECT_EQ(s.min_decode_side(), 124);   // int(1.3 * 96)
    // fastai's parameters, the same in every preset.
    EXPECT_EQ(s.zoom_p, 0.75);
    EXPECT_EQ(s.rotate_degrees, 10.0);
    EXPECT_EQ(s.rotate_p, 0.75);
    EXPECT_EQ(s.lighting_b, 0.05);
    EXPECT_EQ(s.lighting_c, 0.05);
    EXPECT_EQ(s.flip_p, 0.5);
}

// Each preset draws exactly fastai's sequence: the same transforms, in the same order, with the
// same parameters, consuming the generator the same way.
TEST(TransformPresets, EachPresetDrawsFastaisTransformSequence) {
    for (AugmentPreset p : augment_presets()) {
        for (double max_zoom : {1.0, 1.1, 1.3}) {
            const AugmentSettings s = AugmentSettings::for_preset(p, 64, max_zoom);
            Rng ours(derive_seed(11, static_cast<std::uint64_t>(p), static_cast<std::uint64_t>(max_zoom * 10)));
            Rng theirs = ours;
            for (int i = 0; i < 300; ++i) {
                const AugmentDraw a = draw_augmentation(s, ours);
                const AugmentDraw b = fastai_draw(p, 64, max_zoom, theirs);
                expect_same_draw(a, b, std::string(augment_preset_name(p)) + " zoom " + std::to_string(max_zoom) +
                                           " draw " + std::to_string(i));
                if (testing::Test::HasFailure()) return;
            }
            // Nothing more was drawn than fastai draws.
            EXPECT_EQ(ours.next_u64(), theirs.next_u64()) << augment_preset_name(p);
        }
    }
}

TEST(TransformPresets, ProbabilitiesAndRangesOfEachPreset) {
    const int n = 16000;
    for (AugmentPreset p : augment_presets()) {
        const AugmentSettings s = AugmentSettings::for_preset(p, 224, default_max_zoom(p));
        Rng rng(derive_seed(5, static_cast<std::uint64_t>(p)));
        int rotate = 0, flip = 0, zoomed = 0, lit = 0;
        std::map<int, int> dihedrals;
        for (int i = 0; i < n; ++i) {
            const AugmentDraw d = draw_augmentation(s, rng);
            rotate += d.rotate;
            flip += d.flip;
            zoomed += d.scaled_size > 224;
            lit += d.brightness != 0.0 || d.contrast != 1.0;
            ++dihedrals[d.dihedral];
            ASSERT_LE(std::abs(d.degrees), 10.0);
            ASSERT_LE(std::abs(d.brightness), 0.05);
            ASSERT_GE(d.contrast, 1.0 / 1.05 - 1e-12);
            ASSERT_LE(d.contrast, 1.05);
        }
        const std::string name = augment_preset_name(p);
        const bool has_basic = p != AugmentPreset::None;
        EXPECT_NEAR(rotate / double(n), has_basic ? 0.75 : 0.0, 0.015) << name;
        EXPECT_EQ(lit, has_basic ? n : 0) << name;   // RandomLighting always acts
        EXPECT_NEAR(flip / double(n), p == AugmentPreset::SideOn ? 0.5 : 0.0, 0.015) << name;
        // p = 0.75, and int(U(1,1.1)*224) > 224 unless U < 225/224; none: no zoom
        EXPECT_NEAR(zoomed / double(n), has_basic ? 0.75 * (1 - (1.0 / 224) / 0.1) : 0.0, 0.015) << name;
        if (p == AugmentPreset::TopDown) {
            ASSERT_EQ(dihedrals.size(), 8u);
            for (const auto& [k, count] : dihedrals) EXPECT_NEAR(count / double(n), 1.0 / 8, 0.012) << "dihedral " << k;
        } else {
            EXPECT_EQ(dihedrals[0], n) << name;
        }
    }
}

TEST(TransformPresets, ApplyDihedralIsNumpysRot90ThenFliplr) {
    const cv::Mat wide = test::pattern_image(5, 3, 9);   // 3 rows, 5 columns
    const cv::Mat original = wide.clone();
    for (int k = 0; k < 8; ++k) {
        const cv::Mat got = apply_dihedral(wide, k);
        ASSERT_EQ(got.size(), (k / 2) % 2 ? cv::Size(3, 5) : cv::Size(5, 3)) << k;
        EXPECT_TRUE(same_pixels(got, dihedral_by_indices(wide, k))) << k;
        ASSERT_TRUE(same_pixels(wide, original)) << "the input was changed by k = " << k;
        EXPECT_NE(got.data, wide.data) << k;   // a new image, even for k = 0
    }
    // Spot checks written out (H=3, W=5): k=2 is one quarter turn anticlockwise,
    // out[i][j] = x[j][W-1-i]; k=3 is that turn mirrored, out[i][j] = x[H-1-j][W-1-i]; k=5 is
    // np.rot90(x, 2) mirrored, i.e. upside down: out[i][j] = x[H-1-i][j].
    const cv::Mat k2 = apply_dihedral(wide, 2), k3 = apply_dihedral(wide, 3), k5 = apply_dihedral(wide, 5);
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 3; ++j) {
            EXPECT_EQ(k2.at<cv::Vec3b>(i, j), wide.at<cv::Vec3b>(j, 4 - i));
            EXPECT_EQ(k3.at<cv::Vec3b>(i, j), wide.at<cv::Vec3b>(2 - j, 4 - i));
        }
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 5; ++j) EXPECT_EQ(k5.at<cv::Vec3b>(i, j), wide.at<cv::Vec3b>(2 - i, j));
    // On a square, the eight are different images (the test image has no symmetry).
    const cv::Mat square = test::pattern_image(7, 7, 3);
    for (int a = 0; a < 8; ++a)
        for (int b = a + 1; b < 8; ++b) EXPECT_FALSE(same_pixels(apply_dihedral(square, a), apply_dihedral(square, b))) << a << " " << b;
    EXPECT_THROW(apply_dihedral(square, 8), std::invalid_argument);
}

// Top-down through the whole (fused) training transform: over many draws all 8 variants come
// out, and each is exactly a dihedral image of the input. Rotation and lighting are switched
// off on the drawn values (they interpolate/rescale); zoom and crop are trivial at max_zoom 1
// on an image of the model's size.
TEST(TransformPresets, TopDownGivesAllEightExactDihedralImages) {
    constexpr int sz = 24;
    const cv::Mat img = test::pattern_image(sz, sz, 4);
    const AugmentSettings s = AugmentSettings::for_preset(AugmentPreset::TopDown, sz, 1.0);
    std::array<std::vector<float>, 8> expected;
    for (int k = 0; k < 8; ++k) {
        expected[static_cast<std::size_t>(k)].resize(3u * sz * sz);
        // The same writer without augmentation, on the dihedral image made by index arithmetic.
        validation_transform(dihedral_by_indices(img, k), s, expected[static_cast<std::size_t>(k)].data());
    }
    for (int a = 0; a < 8; ++a)
        for (int b = a + 1; b < 8; ++b) ASSERT_NE(expected[static_cast<std::size_t>(a)], expected[static_cast<std::size_t>(b)]);
    Rng rng(2024);
    std::set<int> seen;
    for (int i = 0; i < 300; ++i) {
        AugmentDraw d = draw_augmentation(s, rng);
        d.rotate = false;
        d.brightness = 0.0;
        d.contrast = 1.0;
        const std::vector<float> got = run_training(img, s, d);
        int matches = 0;
        for (int k = 0; k < 8; ++k) matches += got == expected[static_cast<std::size_t>(k)];
        ASSERT_EQ(matches, 1) << "draw " << i;
        ASSERT_EQ(got, expected[static_cast<std::size_t>(d.dihedral)]) << "draw " << i << " dihedral " << d.dihedral;
        seen.insert(d.dihedral);
    }
    EXPECT_EQ(seen.size(), 8u);
}

// With every random step active (zoom, rotation, lighting, flips/dihedrals, crops), on a
// non-square image, the fused transform equals fastai's steps one after the other.
TEST(TransformPresets, FusedTransformEqualsTheStepByStepRecipeForEveryPreset) {
    const cv::Mat img = test::pattern_image(131, 97, 13);
    for (AugmentPreset p : augment_presets()) {
        for (bool no_flip : {false, true}) {
            const AugmentSettings s = AugmentSettings::for_preset(p, 64, 1.2, no_flip);
            Rng rng(derive_seed(77, static_cast<std::uint64_t>(p), no_flip));
            int rotated = 0, turned = 0;
            for (int trial = 0; trial < 24; ++trial) {
                const AugmentDraw d = draw_augmentation(s, rng);
                rotated += d.rotate;
                turned += d.dihedral / 2 % 2 == 1;   // rows and columns swapped
                const auto fused = run_training(img, s, d);
                const auto ref = reference_training(img, s, d);
                for (std::size_t i = 0; i < fused.size(); ++i)
                    ASSERT_NEAR(fused[i], ref[i], 2e-6) << augment_preset_name(p) << " trial " << trial << " i " << i;
            }
            if (p != AugmentPreset::None) {
                EXPECT_GT(rotated, 0);
            }
            if (p == AugmentPreset::TopDown) {
                EXPECT_GT(turned, 0);
            }
        }
    }
}

// none: fastai's tfms_from_model(arch, sz) — Scale(sz) then RandomCrop(sz), nothing else: no
// rotation, no lighting, no flip.
TEST(TransformPresets, NoneIsScaleThenRandomCropOnly) {
    constexpr int sz = 64;
    const cv::Mat img = test::pattern_image(150, 90, 5);   // scaled to 106x64: the crop moves along x
    const AugmentSettings s = AugmentSettings::for_preset(AugmentPreset::None, sz, default_max_zoom(AugmentPreset::None));
    const cv::Mat scaled = scale_min(to_float_rgb(img), sz);
    ASSERT_EQ(scaled.cols, 106);
    ASSERT_EQ(scaled.rows, 64);
    Rng rng(8);
    std::set<int> columns;
    for (int i = 0; i < 40; ++i) {
        const AugmentDraw d = draw_augmentation(s, rng);
        EXPECT_EQ(d.scaled_size, sz);
        EXPECT_FALSE(d.rotate);
        EXPECT_FALSE(d.flip);
        EXPECT_EQ(d.dihedral, 0);
        EXPECT_EQ(d.brightness, 0.0);
        EXPECT_EQ(d.contrast, 1.0);
        const int col0 = random_crop_offset(106, sz, d.crop_c);
        EXPECT_EQ(random_crop_offset(64, sz, d.crop_r), 0);
        columns.insert(col0);
        const auto got = run_training(img, s, d);
        const auto want = chw(scaled, 0, col0, sz);
        for (std::size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-6) << "draw " << i << " k " << k;
    }
    EXPECT_GT(columns.size(), 5u);   // a random crop, not the validation's centre crop
    // With --max-zoom, none is tfms_from_model(arch, sz, max_zoom=Z): RandomScale, still nothing else.
    const AugmentSettings zoom = AugmentSettings::for_preset(AugmentPreset::None, sz, 1.5);
    int zoomed = 0;
    for (int i = 0; i < 200; ++i) {
        const AugmentDraw d = draw_augmentation(zoom, rng);
        zoomed += d.scaled_size > sz;
        EXPECT_FALSE(d.rotate || d.flip || d.dihedral || d.brightness != 0.0 || d.contrast != 1.0);
    }
    EXPECT_GT(zoomed, 100);
}

TEST(TransformPresets, NoFlipNeverFlips) {
    const AugmentSettings side = AugmentSettings::for_preset(AugmentPreset::SideOn, 64, 1.1, true);
    const AugmentSettings basic = AugmentSettings::for_preset(AugmentPreset::Basic, 64, 1.1);
    const AugmentSettings top = AugmentSettings::for_preset(AugmentPreset::TopDown, 64, 1.1, true);
    Rng a(31), b(31), c(32);
    std::set<int> turns;
    const cv::Mat img = test::pattern_image(80, 70, 6);
    for (int i = 0; i < 4000; ++i) {
        const AugmentDraw ds = draw_augmentation(side, a);
        ASSERT_FALSE(ds.flip);
        // Side-on without its RandomFlip is transforms_basic, draw for draw.
        expect_same_draw(ds, draw_augmentation(basic, b), "draw " + std::to_string(i));
        if (i < 20) {
            EXPECT_EQ(run_training(img, side, ds), run_training(img, basic, ds));
        }
        const AugmentDraw dt = draw_augmentation(top, c);
        ASSERT_EQ(dt.dihedral % 2, 0) << "a mirrored dihedral";
        ASSERT_FALSE(dt.flip);
        turns.insert(dt.dihedral / 2);
    }
    EXPECT_EQ(turns.size(), 4u);   // top-down keeps its four quarter turns
}
