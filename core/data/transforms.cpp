#include "whisker/data/transforms.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <stdexcept>

namespace whisker::data {

AugmentSettings AugmentSettings::side_on(int size, double max_zoom) {
    AugmentSettings s;
    s.size = size;
    s.max_zoom = max_zoom;
    return s;
}

int AugmentSettings::min_decode_side() const {
    const double zoom = max_zoom > 1.0 ? max_zoom : 1.0;
    return static_cast<int>(zoom * size);
}

AugmentDraw draw_augmentation(const AugmentSettings& s, Rng& rng) {
    AugmentDraw d;
    // RandomScale: random() < p decides, then uniform(1, max_zoom).
    double mult = 1.0;
    if (s.max_zoom > 1.0) {
        if (rng.uniform() < s.zoom_p) mult = rng.uniform(1.0, s.max_zoom);
    }
    d.scaled_size = static_cast<int>(mult * s.size);
    auto draw_lighting = [&] {
        // RandomLighting: b_rand = rand0(b), c_rand = rand0(c).
        d.brightness = rng.uniform() * (2 * s.lighting_b) - s.lighting_b;
        const double c0 = rng.uniform() * (2 * s.lighting_c) - s.lighting_c;
        d.contrast = c0 < 0 ? -1.0 / (c0 - 1.0) : c0 + 1.0;
    };
    if (s.preset == AugmentPreset::SideOn) {
        // transforms_side_on = [RandomRotate(10), RandomLighting(0.05, 0.05), RandomFlip()]
        d.degrees = rng.uniform() * (2 * s.rotate_degrees) - s.rotate_degrees;  // rand0(deg) first,
        d.rotate = rng.uniform() < s.rotate_p;                                   // then random() < p
        draw_lighting();
        d.flip = rng.uniform() < s.flip_p;
    } else if (s.preset == AugmentPreset::TopDown) {
        // transforms_top_down = [RandomDihedral(), RandomLighting(0.05, 0.05)]
        const int rot_times = static_cast<int>(rng.uniform_int(0, 3));
        const bool do_flip = rng.uniform() < 0.5;
        d.dihedral = rot_times * 2 + (do_flip ? 1 : 0);
        draw_lighting();
    }
    d.crop_r = rng.uniform();
    d.crop_c = rng.uniform();
    return d;
}

cv::Mat to_float_rgb(const cv::Mat& rgb8) {
    if (rgb8.type() != CV_8UC3) throw std::invalid_argument("to_float_rgb expects CV_8UC3");
    cv::Mat f;
    rgb8.convertTo(f, CV_32FC3, 1.0 / 255.0);
    return f;
}

cv::Mat scale_min(const cv::Mat& image, int target) {
    const int r = image.rows, c = image.cols;
    const double ratio = static_cast<double>(target) / std::min(r, c);
    // fastai: scale_to(x) = max(floor(x*ratio), targ)
    const int new_c = std::max(static_cast<int>(std::floor(c * ratio)), target);
    const int new_r = std::max(static_cast<int>(std::floor(r * ratio)), target);
    if (new_c == c && new_r == r) return image;
    cv::Mat out;
    cv::resize(image, out, cv::Size(new_c, new_r), 0, 0, cv::INTER_AREA);
    return out;
}

cv::Mat rotate_reflect(const cv::Mat& image, double degrees) {
    const int r = image.rows, c = image.cols;
    const cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(static_cast<float>(c / 2), static_cast<float>(r / 2)),
                                              degrees, 1.0);
    cv::Mat out;
    // fastai passes INTER_AREA, which warpAffine treats as INTER_LINEAR.
    cv::warpAffine(image, out, m, cv::Size(c, r), cv::INTER_LINEAR | cv::WARP_FILL_OUTLIERS, cv::BORDER_REFLECT);
    return out;
}

namespace {
double mean_of_all(const cv::Mat& image) {
    const cv::Scalar per_channel = cv::mean(image);
    return (per_channel[0] + per_channel[1] + per_channel[2]) / 3.0;
}
inline float clip01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
}  // namespace

void apply_lighting(cv::Mat& image, double b, double c) {
    if (b == 0.0 && c == 1.0) return;
    const float mu = static_cast<float>(mean_of_all(image));
    const float fc = static_cast<float>(c), fb = static_cast<float>(b);
    image.forEach<cv::Vec3f>([&](cv::Vec3f& px, const int*) {
        for (int k = 0; k < 3; ++k) px[k] = clip01((px[k] - mu) * fc + mu + fb);
    });
}

int center_crop_offset(int dim, int size) {
    return static_cast<int>(std::ceil((dim - size) / 2.0));
}

int random_crop_offset(int dim, int size, double u) {
    return static_cast<int>(std::floor(u * (dim - size)));
}

namespace {

// Writes the size x size window at (row0, col0) of a float RGB image as normalised CHW,
// optionally mirrored left-right, with the lighting applied on the way.
void write_crop_chw(const cv::Mat& img, int row0, int col0, int size, bool flip, bool lighting, float mu,
                    float b, float c, const Normalization& norm, float* out) {
    const std::size_t plane = static_cast<std::size_t>(size) * size;
    float scale[3], shift[3];
    for (int k = 0; k < 3; ++k) {
        scale[k] = 1.0f / norm.std[k];
        shift[k] = -norm.mean[k] / norm.std[k];
    }
    for (int y = 0; y < size; ++y) {
        const float* row = img.ptr<float>(row0 + y) + 3 * col0;
        float* o0 = out + static_cast<std::size_t>(y) * size;
        float* o1 = o0 + plane;
        float* o2 = o1 + plane;
        for (int x = 0; x < size; ++x) {
            const int sx = flip ? size - 1 - x : x;
            const float* px = row + 3 * sx;
            float r = px[0], g = px[1], bl = px[2];
            if (lighting) {
                r = clip01((r - mu) * c + mu + b);
                g = clip01((g - mu) * c + mu + b);
                bl = clip01((bl - mu) * c + mu + b);
            }
            o0[x] = r * scale[0] + shift[0];
            o1[x] = g * scale[1] + shift[1];
            o2[x] = bl * scale[2] + shift[2];
        }
    }
}

// Applies the dihedral transform k (0..7) of fastai's RandomDihedral: k//2 quarter turns
// anticlockwise (np.rot90), then a left-right flip when k is odd.
cv::Mat dihedral(const cv::Mat& img, int k) {
    cv::Mat out = img;
    const int turns = (k / 2) % 4;
    if (turns == 1) cv::rotate(img, out, cv::ROTATE_90_COUNTERCLOCKWISE);
    else if (turns == 2) cv::rotate(img, out, cv::ROTATE_180);
    else if (turns == 3) cv::rotate(img, out, cv::ROTATE_90_CLOCKWISE);
    if (k % 2 == 1) cv::flip(out.clone(), out, 1);
    return out;
}

struct TrainingGeometry {
    cv::Mat image;   // float RGB after scale, rotation (and dihedral)
    int row0 = 0, col0 = 0;
    bool lighting = false;
    float mu = 0.f;
};

TrainingGeometry training_geometry(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    TrainingGeometry g;
    cv::Mat img = scale_min(to_float_rgb(rgb8), d.scaled_size);
    if (s.preset == AugmentPreset::SideOn && d.rotate && d.degrees != 0.0) img = rotate_reflect(img, d.degrees);
    if (s.preset == AugmentPreset::TopDown && d.dihedral != 0) img = dihedral(img, d.dihedral);
    g.lighting = !(d.brightness == 0.0 && d.contrast == 1.0);
    if (g.lighting) g.mu = static_cast<float>(mean_of_all(img));
    // The crop is taken from the flipped image in fastai; on the unflipped image that is the
    // window mirrored about the centre.
    const int max_c = img.cols - s.size;
    g.row0 = random_crop_offset(img.rows, s.size, d.crop_r);
    g.col0 = random_crop_offset(img.cols, s.size, d.crop_c);
    if (d.flip && s.preset == AugmentPreset::SideOn) g.col0 = max_c - g.col0;
    g.image = img;
    return g;
}

}  // namespace

void validation_transform(const cv::Mat& rgb8, const AugmentSettings& s, float* out) {
    const cv::Mat img = scale_min(to_float_rgb(rgb8), s.size);
    write_crop_chw(img, center_crop_offset(img.rows, s.size), center_crop_offset(img.cols, s.size), s.size,
                   false, false, 0.f, 0.f, 1.f, s.norm, out);
}

void training_transform(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d, float* out) {
    const TrainingGeometry g = training_geometry(rgb8, s, d);
    write_crop_chw(g.image, g.row0, g.col0, s.size, d.flip && s.preset == AugmentPreset::SideOn, g.lighting, g.mu,
                   static_cast<float>(d.brightness), static_cast<float>(d.contrast), s.norm, out);
}

cv::Mat training_transform_preview(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    const TrainingGeometry g = training_geometry(rgb8, s, d);
    cv::Mat crop = g.image(cv::Rect(g.col0, g.row0, s.size, s.size)).clone();
    if (d.flip && s.preset == AugmentPreset::SideOn) cv::flip(crop, crop, 1);
    if (g.lighting) {
        const float mu = g.mu, b = static_cast<float>(d.brightness), c = static_cast<float>(d.contrast);
        crop.forEach<cv::Vec3f>([&](cv::Vec3f& px, const int*) {
            for (int k = 0; k < 3; ++k) px[k] = clip01((px[k] - mu) * c + mu + b);
        });
    }
    cv::Mat out;
    crop.convertTo(out, CV_8UC3, 255.0);
    return out;
}

}  // namespace whisker::data
