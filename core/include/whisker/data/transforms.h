#pragma once
// Image transforms, exactly those of fastai 0.7 (see shared/spec/workflow.md, "Transforms").
//
// Images are float RGB in [0, 1] while they are transformed, as fastai's open_image makes
// them (uint8 / 255), so each step gives fastai's numbers:
//   validation: scale_min(sz) with INTER_AREA, then a centre crop (offset ceil((dim-sz)/2));
//   training:   RandomScale (p=0.75: shorter side int(U(1,max_zoom)*sz), else sz), then the
//               side-on augmentations — rotate U(-10,10) degrees with p=0.75 about
//               (cols//2, rows//2), bilinear with reflected border; lighting
//               clip((x-mean)*c + mean + b); horizontal flip with p=0.5 — then a random crop
//               at floor(U(0,1)*(dim-sz)).
// The last stage (crop, flip, lighting, ImageNet normalisation, HWC->CHW) is fused into one
// pass that writes straight into a batch tensor; the result is identical to doing the steps
// one after the other, because each of them acts on pixels independently.
// The random choices for one image are drawn up front (draw_augmentation) in fastai's order,
// so an image's augmentation depends only on its seed. Thread-safe (no shared state).

#include "whisker/common/random.h"

#include <opencv2/core/mat.hpp>

#include <array>

namespace whisker::data {

struct Normalization {
    std::array<float, 3> mean{0.485f, 0.456f, 0.406f};   // ImageNet statistics
    std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// Which augmentations training uses (fastai 0.7: transforms_side_on / transforms_top_down).
enum class AugmentPreset { None, SideOn, TopDown };

struct AugmentSettings {
    int size = 224;                // sz: side of the square the network sees
    double max_zoom = 1.1;         // RandomScale's upper zoom; <= 1 disables zooming
    double zoom_p = 0.75;
    AugmentPreset preset = AugmentPreset::SideOn;
    double rotate_degrees = 10.0;
    double rotate_p = 0.75;
    double lighting_b = 0.05;      // brightness shift, U(-b, b)
    double lighting_c = 0.05;      // contrast, c0 ~ U(-c, c) then c = c0<0 ? -1/(c0-1) : c0+1
    double flip_p = 0.5;
    Normalization norm;

    // fastai's tfms_from_model(arch, sz, aug_tfms=transforms_side_on, max_zoom=1.1).
    static AugmentSettings side_on(int size, double max_zoom = 1.1);
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
    bool flip = false;             // horizontal (SideOn), or part of the dihedral (TopDown)
    int dihedral = 0;              // TopDown: 0..7 (rotations by 90 degrees times flip)
    double crop_r = 0.0;           // U(0,1) for the crop's row offset
    double crop_c = 0.0;           // U(0,1) for the crop's column offset
};
AugmentDraw draw_augmentation(const AugmentSettings& settings, Rng& rng);

// ---- fastai 0.7's building blocks (float RGB images, CV_32FC3 in [0,1]) ----
cv::Mat to_float_rgb(const cv::Mat& rgb8);                 // uint8 / 255
cv::Mat scale_min(const cv::Mat& image, int target);       // shorter side -> target, INTER_AREA
cv::Mat rotate_reflect(const cv::Mat& image, double degrees);
void apply_lighting(cv::Mat& image, double brightness, double contrast);
int center_crop_offset(int dim, int size);                 // ceil((dim-size)/2)
int random_crop_offset(int dim, int size, double u);       // floor(u*(dim-size))

// ---- whole pipelines, writing 3*size*size normalised floats in CHW order ----
void validation_transform(const cv::Mat& rgb8, const AugmentSettings& settings, float* out_chw);
void training_transform(const cv::Mat& rgb8, const AugmentSettings& settings, const AugmentDraw& draw,
                        float* out_chw);

// The training transform before normalisation, as an 8-bit RGB image (for "what the model
// sees" views).
cv::Mat training_transform_preview(const cv::Mat& rgb8, const AugmentSettings& settings, const AugmentDraw& draw);

}  // namespace whisker::data
