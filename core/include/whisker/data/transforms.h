#pragma once
// Image transforms, exactly those of fastai 0.7 (see shared/spec/workflow.md, "Transforms", and
// docs/training.md).
//
// Images are float RGB in [0, 1] while they are transformed, as fastai's open_image makes
// them (uint8 / 255), so each step gives fastai's numbers:
//   validation: scale_min(sz) with INTER_AREA, then a centre crop (offset ceil((dim-sz)/2));
//   training:   RandomScale (p=0.75: shorter side int(U(1,max_zoom)*sz), else sz; max_zoom 1 is
//               fastai's Scale(sz)), then the preset's aug_tfms in fastai's order, then a random
//               crop at floor(U(0,1)*(dim-sz)). The aug_tfms are built from
//                 RandomRotate(10): U(-10,10) degrees with p=0.75 about (cols//2, rows//2),
//                                   bilinear with reflected border;
//                 RandomLighting(0.05, 0.05): clip((x-mean)*c + mean + b);
//                 RandomFlip(): horizontal flip with p=0.5;
//                 RandomDihedral(): np.rot90 by randint(0,3) quarter turns, then fliplr with
//                                   p=0.5 (one of the 8 symmetries of the square, uniformly).
// The last stage (crop, flip, lighting, ImageNet normalisation, HWC->CHW) is fused into one
// pass that writes straight into a batch tensor; the result is identical to doing the steps
// one after the other, because each of them acts on pixels independently.
// The random choices for one image are drawn up front (draw_augmentation) in fastai's order,
// so an image's augmentation depends only on its seed. Thread-safe (no shared state).
//
// Two options of torchvision 0.14's recipes go on top of a preset (AugmentSettings):
//   TrivialAugmentWide: one op of 14 at one of 31 magnitudes on the size x size crop, after the
//                       preset's steps and before normalisation, on 8-bit pixels (round(x*255))
//                       as torchvision's uint8 tensors, with torchvision's pixel arithmetic;
//   RandomErasing(p):   a rectangle (scale 0.02-0.33 of the area, aspect 0.3-3.3) set to 0
//                       after normalisation.
// With both off the fused pass is used and the outputs are those without the options.

#include "whisker/common/random.h"

#include <opencv2/core/mat.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace whisker::data {

struct Normalization {
    std::array<float, 3> mean{0.485f, 0.456f, 0.406f};   // ImageNet statistics
    std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// Which augmentations training uses: fastai 0.7's aug_tfms lists (transforms.py).
//   SideOn  transforms_side_on  = [RandomRotate(10), RandomLighting(0.05, 0.05), RandomFlip()]
//   TopDown transforms_top_down = [RandomRotate(10), RandomLighting(0.05, 0.05), RandomDihedral()]
//   Basic   transforms_basic    = [RandomRotate(10), RandomLighting(0.05, 0.05)]
//   None    aug_tfms=None       = []  (RandomScale, if max_zoom > 1, and the random crop only)
// (The enumerators' values are not stored anywhere; files use augment_preset_name.)
enum class AugmentPreset { None, SideOn, TopDown, Basic };

// "side-on", "top-down", "basic", "none" (CLI --aug, learner.json "augment").
const char* augment_preset_name(AugmentPreset preset);
std::optional<AugmentPreset> parse_augment_preset(const std::string& name);
// All four, in the order to offer them: side-on (the default), top-down, basic, none.
const std::vector<AugmentPreset>& augment_presets();
// The max_zoom a preset gets when none is given: 1.1 with augmentation (lesson 1's
// tfms_from_model(arch, sz, aug_tfms=transforms_side_on, max_zoom=1.1)), 1 (no zoom) for None,
// as fastai's tfms_from_model(arch, sz) without aug_tfms and max_zoom.
double default_max_zoom(AugmentPreset preset);
// In words, for learner descriptions: "side-on augmentation", "top-down augmentation without
// flips, max zoom 1.3", "no augmentation". max_zoom is mentioned when it is not the preset's
// default.
// TrivialAugmentWide and RandomErasing (the options on top of a preset) are mentioned when on:
// "side-on augmentation, TrivialAugmentWide, random erasing p 0.25".
std::string describe_augmentation(AugmentPreset preset, double max_zoom, bool no_flip, bool trivial_augment = false,
                                  double random_erasing = 0.0);

// ---- options on top of a preset (torchvision 0.14's recipes) ----
// TrivialAugmentWide's operations, in the order of torchvision's
// TrivialAugmentWide._augmentation_space(num_bins=31).
enum class TrivialOp {
    Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize,
    Solarize, AutoContrast, Equalize
};
constexpr int kTrivialOpCount = 14;
constexpr int kTrivialMagnitudeBins = 31;
const char* trivial_op_name(TrivialOp op);     // torchvision's name ("ShearX", ...)
// Whether torchvision flips the magnitude's sign with p=0.5, and whether it has magnitudes at all
// (Identity, AutoContrast and Equalize have one, 0).
bool trivial_op_signed(TrivialOp op);
bool trivial_op_has_magnitudes(TrivialOp op);
// The magnitude torchvision passes to _apply_op for (op, bin, sign): its float32 table's value
// (torch.linspace, or Posterize's bits), negated when negative and the op is signed.
double trivial_magnitude(TrivialOp op, int bin, bool negative);
// torchvision.transforms.autoaugment._apply_op(img, op, magnitude, NEAREST, fill=None) on a
// uint8 tensor image, on an 8-bit RGB image (CV_8UC3, any size): the same pixels.
cv::Mat apply_trivial_op(const cv::Mat& rgb8, TrivialOp op, double magnitude);

// RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0): the rectangle for a
// size x size image, torchvision's get_params (10 attempts; none fitting erases nothing).
struct EraseBox {
    bool erase = false;
    int top = 0, left = 0, height = 0, width = 0;
};
constexpr double kEraseScaleMin = 0.02, kEraseScaleMax = 0.33;
constexpr double kEraseRatioMin = 0.3, kEraseRatioMax = 3.3;
EraseBox draw_erase_box(double p, int size, Rng& rng);
// Sets the box to 0 in all three planes of a normalised size x size CHW image.
void erase_chw(float* out_chw, int size, const EraseBox& box);

struct AugmentSettings {
    int size = 224;                // sz: side of the square the network sees
    double max_zoom = 1.1;         // RandomScale's upper zoom; <= 1 disables zooming
    double zoom_p = 0.75;
    AugmentPreset preset = AugmentPreset::SideOn;
    // Leaves out the mirror images: side-on draws no RandomFlip (it becomes basic), top-down's
    // RandomDihedral keeps its four quarter turns and draws no flip.
    bool no_flip = false;
    double rotate_degrees = 10.0;
    double rotate_p = 0.75;
    double lighting_b = 0.05;      // brightness shift, U(-b, b)
    double lighting_c = 0.05;      // contrast, c0 ~ U(-c, c) then c = c0<0 ? -1/(c0-1) : c0+1
    double flip_p = 0.5;           // RandomFlip's p (RandomDihedral's flip is always p=0.5)
    // On top of the preset: TrivialAugmentWide on the size x size crop (as uint8, before
    // normalisation), and RandomErasing with this p (0 = off) after normalisation.
    bool trivial_augment = false;
    double random_erasing = 0.0;
    // The validation (and TTA's plain) view: the shorter side scaled to this, then a centre
    // crop of `size`. 0: `size` (fastai 0.7's Scale(sz) + CenterCrop(sz)); torchvision's
    // evaluation uses e.g. 256 for 224 (ArchInfo::eval).
    int eval_resize = 0;
    Normalization norm;

    int eval_side() const { return eval_resize > size ? eval_resize : size; }

    // fastai's tfms_from_model(arch, sz, aug_tfms=transforms_side_on, max_zoom=1.1).
    static AugmentSettings side_on(int size, double max_zoom = 1.1);
    // Any preset: tfms_from_model(arch, sz, aug_tfms=<preset's list>, max_zoom=max_zoom).
    static AugmentSettings for_preset(AugmentPreset preset, int size, double max_zoom, bool no_flip = false);
    // Shorter side the decoded image needs so no transform has to upscale it.
    int min_decode_side() const;
};

// The random choices for one image, in the order fastai draws them.
struct AugmentDraw {
    int scaled_size = 0;           // shorter side after RandomScale
    bool rotate = false;
    double degrees = 0.0;
    double brightness = 0.0;       // b
    double contrast = 1.0;         // c, already mapped from c0
    bool flip = false;             // SideOn: RandomFlip's horizontal flip
    // TopDown: RandomDihedral as k = 2*rot_times + do_flip (0..7): rot_times quarter turns
    // anticlockwise (np.rot90), then a left-right flip when k is odd. 0 = unchanged.
    int dihedral = 0;
    double crop_r = 0.0;           // U(0,1) for the crop's row offset
    double crop_c = 0.0;           // U(0,1) for the crop's column offset
    // Drawn after the preset's choices, only when the options are on (so the draws above are
    // the same with and without them).
    bool trivial = false;          // TrivialAugmentWide: op, magnitude bin, sign
    TrivialOp trivial_op = TrivialOp::Identity;
    int trivial_bin = 0;
    bool trivial_negative = false;
    EraseBox erase;                // RandomErasing's rectangle (erase false: none)
};
AugmentDraw draw_augmentation(const AugmentSettings& settings, Rng& rng);

// ---- fastai 0.7's building blocks (float RGB images, CV_32FC3 in [0,1]) ----
cv::Mat to_float_rgb(const cv::Mat& rgb8);                 // uint8 / 255
cv::Mat scale_min(const cv::Mat& image, int target);       // shorter side -> target, INTER_AREA
cv::Mat rotate_reflect(const cv::Mat& image, double degrees);
void apply_lighting(cv::Mat& image, double brightness, double contrast);
int center_crop_offset(int dim, int size);                 // ceil((dim-size)/2)
int random_crop_offset(int dim, int size, double u);       // floor(u*(dim-size))
// RandomDihedral's do_transform for k = 2*rot_times + do_flip (see AugmentDraw::dihedral):
// np.rot90(x, rot_times), then np.fliplr when do_flip. Exact (a permutation of the pixels).
cv::Mat apply_dihedral(const cv::Mat& image, int k);

// ---- the same steps, computed faster (what the pipelines below use) ----
// scale_min(to_float_rgb(rgb8), target) without a full-size float copy: an enlargement is
// computed straight from the 8-bit pixels with OpenCV's INTER_AREA coefficients and arithmetic
// (linear interpolation, area-style weights), so the pixels equal cv::resize's to float
// rounding (see test_transforms); a reduction goes through cv::resize as before.
cv::Mat scale_min_from_u8(const cv::Mat& rgb8, int target);
// The `window` (inside the image) of rotate_reflect(image, degrees), and the mean of all three
// channels of the whole rotated image (the lighting's mean), in one pass and without the
// rotated image: the same source coordinates, weights and border as cv::warpAffine, so the
// pixels and the mean equal those of the two steps to float rounding. CV_32FC3 in and out.
struct RotatedWindow {
    cv::Mat pixels;              // window.height x window.width, CV_32FC3
    double mean = 0.0;
};
RotatedWindow rotate_reflect_window(const cv::Mat& image, double degrees, const cv::Rect& window);

// Seconds each step of a transform took, added to when a pipeline below is given one (the
// loader's profile, `whisker-cli bench loader --profile`); without one no clock is read.
struct TransformTimes {
    double resize = 0;           // 8-bit to float and Scale/RandomScale (INTER_AREA)
    double rotate = 0;           // RandomRotate (with the lighting's mean when it rotates) and quarter turns
    double lighting = 0;         // the lighting's mean when the image is not rotated
    double crop_normalise = 0;   // crop, flip, lighting and ImageNet normalisation: one pass into the batch
    double extra = 0;            // TrivialAugmentWide and RandomErasing (when on)
};

// ---- whole pipelines, writing 3*size*size normalised floats in CHW order ----
void validation_transform(const cv::Mat& rgb8, const AugmentSettings& settings, float* out_chw,
                          TransformTimes* times = nullptr);
void training_transform(const cv::Mat& rgb8, const AugmentSettings& settings, const AugmentDraw& draw,
                        float* out_chw, TransformTimes* times = nullptr);

// The training transform before normalisation, as an 8-bit RGB image (for "what the model
// sees" views).
cv::Mat training_transform_preview(const cv::Mat& rgb8, const AugmentSettings& settings, const AugmentDraw& draw);

}  // namespace whisker::data
