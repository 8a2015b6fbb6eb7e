#include "whisker/data/transforms.h"

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace whisker::data {

const char* augment_preset_name(AugmentPreset preset) {
    switch (preset) {
        case AugmentPreset::None: return "none";
        case AugmentPreset::SideOn: return "side-on";
        case AugmentPreset::TopDown: return "top-down";
        case AugmentPreset::Basic: return "basic";
    }
    return "?";
}

const std::vector<AugmentPreset>& augment_presets() {
    static const std::vector<AugmentPreset> all{AugmentPreset::SideOn, AugmentPreset::TopDown, AugmentPreset::Basic,
                                                AugmentPreset::None};
    return all;
}

std::optional<AugmentPreset> parse_augment_preset(const std::string& name) {
    for (AugmentPreset p : augment_presets())
        if (name == augment_preset_name(p)) return p;
    return std::nullopt;
}

double default_max_zoom(AugmentPreset preset) { return preset == AugmentPreset::None ? 1.0 : 1.1; }

namespace {
std::string describe_preset(AugmentPreset preset, double max_zoom, bool no_flip) {
    const bool zooms = max_zoom > 1.0;
    if (preset == AugmentPreset::None)
        return zooms ? fmt::format("zoom-only augmentation, max zoom {:g}", max_zoom) : "no augmentation";
    std::string s = std::string(augment_preset_name(preset)) + " augmentation";
    // Basic has no flips to leave out.
    if (no_flip && preset != AugmentPreset::Basic) s += " without flips";
    if (max_zoom != default_max_zoom(preset)) s += zooms ? fmt::format(", max zoom {:g}", max_zoom) : ", no zoom";
    return s;
}
}  // namespace

std::string describe_augmentation(AugmentPreset preset, double max_zoom, bool no_flip, bool trivial_augment,
                                  double random_erasing) {
    std::string s = describe_preset(preset, max_zoom, no_flip);
    if (trivial_augment) s += ", TrivialAugmentWide";
    if (random_erasing > 0.0) s += fmt::format(", random erasing p {:g}", random_erasing);
    return s;
}

AugmentSettings AugmentSettings::side_on(int size, double max_zoom) {
    return for_preset(AugmentPreset::SideOn, size, max_zoom);
}

AugmentSettings AugmentSettings::for_preset(AugmentPreset preset, int size, double max_zoom, bool no_flip) {
    AugmentSettings s;
    s.preset = preset;
    s.size = size;
    s.max_zoom = max_zoom;
    s.no_flip = no_flip;
    return s;
}

int AugmentSettings::min_decode_side() const {
    const double zoom = max_zoom > 1.0 ? max_zoom : 1.0;
    return static_cast<int>(zoom * size);
}

AugmentDraw draw_augmentation(const AugmentSettings& s, Rng& rng) {
    AugmentDraw d;
    // RandomScale: random() < p decides, then uniform(1, max_zoom). Without zoom fastai uses
    // Scale(sz), which draws nothing.
    double mult = 1.0;
    if (s.max_zoom > 1.0) {
        if (rng.uniform() < s.zoom_p) mult = rng.uniform(1.0, s.max_zoom);
    }
    d.scaled_size = static_cast<int>(mult * s.size);
    // Then each transform of the preset's list draws its state in turn (Transform.set_state).
    if (s.preset != AugmentPreset::None) {
        // transforms_basic, the head of every list: RandomRotate(10): rand0(deg) first, then
        // random() < p; RandomLighting(0.05, 0.05): b_rand = rand0(b), c_rand = rand0(c).
        d.degrees = rng.uniform() * (2 * s.rotate_degrees) - s.rotate_degrees;
        d.rotate = rng.uniform() < s.rotate_p;
        d.brightness = rng.uniform() * (2 * s.lighting_b) - s.lighting_b;
        const double c0 = rng.uniform() * (2 * s.lighting_c) - s.lighting_c;
        d.contrast = c0 < 0 ? -1.0 / (c0 - 1.0) : c0 + 1.0;
    }
    if (s.preset == AugmentPreset::SideOn && !s.no_flip) {
        // + [RandomFlip()]: random() < p
        d.flip = rng.uniform() < s.flip_p;
    } else if (s.preset == AugmentPreset::TopDown) {
        // + [RandomDihedral()]: rot_times = randint(0, 3), do_flip = random() < 0.5
        const int rot_times = static_cast<int>(rng.uniform_int(0, 3));
        const bool do_flip = !s.no_flip && rng.uniform() < 0.5;
        d.dihedral = rot_times * 2 + (do_flip ? 1 : 0);
    }
    // RandomCrop: rand_r, rand_c.
    d.crop_r = rng.uniform();
    d.crop_c = rng.uniform();
    // The options on top, in the order they are applied: TrivialAugmentWide (op uniformly of
    // the 14, a magnitude bin uniformly of 31, the sign with p=0.5 for signed ops), then
    // RandomErasing. Drawn after the preset's choices so that those stay the same.
    if (s.trivial_augment) {
        d.trivial = true;
        d.trivial_op = static_cast<TrivialOp>(rng.uniform_int(0, kTrivialOpCount - 1));
        if (trivial_op_has_magnitudes(d.trivial_op))
            d.trivial_bin = static_cast<int>(rng.uniform_int(0, kTrivialMagnitudeBins - 1));
        if (trivial_op_signed(d.trivial_op)) d.trivial_negative = rng.uniform() < 0.5;
    }
    if (s.random_erasing > 0.0) d.erase = draw_erase_box(s.random_erasing, s.size, rng);
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

// (x - mean) / std as x * scale + shift, per channel (the fused passes' form).
struct NormalizeAffine {
    float scale[3], shift[3];
};
NormalizeAffine normalize_affine(const Normalization& norm) {
    NormalizeAffine a{};
    for (int k = 0; k < 3; ++k) {
        a.scale[k] = 1.0f / norm.std[k];
        a.shift[k] = -norm.mean[k] / norm.std[k];
    }
    return a;
}

// Writes the size x size window at (row0, col0) of a float RGB image as normalised CHW,
// optionally mirrored left-right, with the lighting applied on the way.
void write_crop_chw(const cv::Mat& img, int row0, int col0, int size, bool flip, bool lighting, float mu,
                    float b, float c, const Normalization& norm, float* out) {
    const std::size_t plane = static_cast<std::size_t>(size) * size;
    const NormalizeAffine a = normalize_affine(norm);
    const float* scale = a.scale;
    const float* shift = a.shift;
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

// np.rot90(x, turns): quarter turns anticlockwise.
cv::Mat rotate_quarter_turns(const cv::Mat& img, int turns) {
    const int t = ((turns % 4) + 4) % 4;
    if (t == 0) return img;
    // Into a new buffer: a destination sharing the input's would be rotated in place for 180°
    // (same size), overwriting the caller's image.
    cv::Mat out;
    cv::rotate(img, out, t == 1 ? cv::ROTATE_90_COUNTERCLOCKWISE : t == 2 ? cv::ROTATE_180 : cv::ROTATE_90_CLOCKWISE);
    return out;
}

// Whether the training transform's output is mirrored left-right: RandomFlip's flip, or the
// flip that ends RandomDihedral. Both come last among the geometric steps, so both are done
// by the fused crop.
bool mirrored(const AugmentSettings& s, const AugmentDraw& d) {
    if (s.preset == AugmentPreset::SideOn) return d.flip;
    if (s.preset == AugmentPreset::TopDown) return d.dihedral % 2 == 1;
    return false;
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
    // Only presets with RandomRotate ever draw rotate = true.
    if (d.rotate && d.degrees != 0.0) img = rotate_reflect(img, d.degrees);
    g.lighting = !(d.brightness == 0.0 && d.contrast == 1.0);
    // fastai's lighting comes before the flip and the dihedral: its mean is taken here, before
    // the quarter turns, so that the pixels are summed in fastai's order (a rearranged image
    // could round differently).
    if (g.lighting) g.mu = static_cast<float>(mean_of_all(img));
    if (s.preset == AugmentPreset::TopDown && d.dihedral / 2 != 0) img = rotate_quarter_turns(img, d.dihedral / 2);
    // The crop is taken from the flipped image in fastai; on the unflipped image that is the
    // window mirrored about the centre.
    const int max_c = img.cols - s.size;
    g.row0 = random_crop_offset(img.rows, s.size, d.crop_r);
    g.col0 = random_crop_offset(img.cols, s.size, d.crop_c);
    if (mirrored(s, d)) g.col0 = max_c - g.col0;
    g.image = img;
    return g;
}

}  // namespace

cv::Mat apply_dihedral(const cv::Mat& image, int k) {
    if (k < 0 || k > 7) throw std::invalid_argument("apply_dihedral: k must be 0..7");
    cv::Mat out = rotate_quarter_turns(image, k / 2);
    if (k % 2 == 1) {
        cv::Mat flipped;
        cv::flip(out, flipped, 1);
        return flipped;
    }
    return out.data == image.data ? image.clone() : out;
}

void validation_transform(const cv::Mat& rgb8, const AugmentSettings& s, float* out) {
    const cv::Mat img = scale_min(to_float_rgb(rgb8), s.eval_side());
    write_crop_chw(img, center_crop_offset(img.rows, s.size), center_crop_offset(img.cols, s.size), s.size,
                   false, false, 0.f, 0.f, 1.f, s.norm, out);
}

namespace {

// The preset's crop as 8-bit RGB (crop, flip, lighting; uint8 = round(x * 255)).
cv::Mat preset_crop8(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d);

// TrivialAugmentWide's op on the crop, on 8-bit pixels as torchvision's recipes (uint8 tensors).
cv::Mat trivial_augmented(const cv::Mat& crop8, const AugmentDraw& d) {
    if (!d.trivial) return crop8;
    return apply_trivial_op(crop8, d.trivial_op, trivial_magnitude(d.trivial_op, d.trivial_bin, d.trivial_negative));
}

// Normalised CHW from 8-bit RGB: x / 255, then (x - mean) / std as the fused pass does.
void write_u8_chw(const cv::Mat& rgb8, const Normalization& norm, float* out) {
    const int size = rgb8.rows;
    const std::size_t plane = static_cast<std::size_t>(size) * size;
    const NormalizeAffine a = normalize_affine(norm);
    const float* scale = a.scale;
    const float* shift = a.shift;
    for (int y = 0; y < size; ++y) {
        const auto* row = rgb8.ptr<cv::Vec3b>(y);
        for (int x = 0; x < size; ++x)
            for (int k = 0; k < 3; ++k) {
                const float v = static_cast<float>(row[x][k]) * (1.0f / 255.0f);
                out[k * plane + static_cast<std::size_t>(y) * size + x] = v * scale[k] + shift[k];
            }
    }
}

}  // namespace

void erase_chw(float* out_chw, int size, const EraseBox& box) {
    if (!box.erase) return;
    const std::size_t plane = static_cast<std::size_t>(size) * size;
    for (int k = 0; k < 3; ++k)
        for (int y = box.top; y < box.top + box.height; ++y) {
            float* row = out_chw + k * plane + static_cast<std::size_t>(y) * size + box.left;
            std::fill(row, row + box.width, 0.0f);
        }
}

void training_transform(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d, float* out) {
    if (d.trivial) {
        write_u8_chw(trivial_augmented(preset_crop8(rgb8, s, d), d), s.norm, out);
    } else {
        const TrainingGeometry g = training_geometry(rgb8, s, d);
        write_crop_chw(g.image, g.row0, g.col0, s.size, mirrored(s, d), g.lighting, g.mu,
                       static_cast<float>(d.brightness), static_cast<float>(d.contrast), s.norm, out);
    }
    // RandomErasing, after normalisation (value 0: the mean colour).
    erase_chw(out, s.size, d.erase);
}

cv::Mat training_transform_preview(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    cv::Mat out = trivial_augmented(preset_crop8(rgb8, s, d), d);
    if (d.erase.erase) {
        // 0 after normalisation is the normalisation's mean colour.
        const auto& m = s.norm.mean;
        out(cv::Rect(d.erase.left, d.erase.top, d.erase.width, d.erase.height))
            .setTo(cv::Scalar(std::round(m[0] * 255.0), std::round(m[1] * 255.0), std::round(m[2] * 255.0)));
    }
    return out;
}

namespace {
cv::Mat preset_crop8(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d) {
    const TrainingGeometry g = training_geometry(rgb8, s, d);
    cv::Mat crop = g.image(cv::Rect(g.col0, g.row0, s.size, s.size)).clone();
    if (mirrored(s, d)) cv::flip(crop, crop, 1);
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
}  // namespace

}  // namespace whisker::data
