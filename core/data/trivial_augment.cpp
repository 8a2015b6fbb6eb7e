// TrivialAugmentWide's operations and RandomErasing's rectangle, as torchvision 0.14 computes
// them on uint8 tensor images (torchvision/transforms/autoaugment.py, functional_tensor.py):
// the same float32 arithmetic in the same order, with the same truncation (.to(uint8)) and
// rounding (torch.round, half to even) where torchvision does them, so that the pixels agree.
#include "whisker/data/transforms.h"

#include <opencv2/core.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace whisker::data {

namespace {

constexpr std::array<const char*, kTrivialOpCount> kNames{
    "Identity", "ShearX",     "ShearY",   "TranslateX", "TranslateY",   "Rotate",  "Brightness",
    "Color",    "Contrast",   "Sharpness", "Posterize", "Solarize",     "AutoContrast", "Equalize"};

// torch.linspace(0, 0.99, 31), (0, 32, 31), (0, 135, 31) and (255, 0, 31) in float32, as
// torchvision's _augmentation_space builds them (values printed from torch 1.13).
constexpr std::array<float, kTrivialMagnitudeBins> kShear{
    0.0f, 0.032999999821186066f, 0.06599999964237213f, 0.0989999994635582f, 0.13199999928474426f,
    0.16499999165534973f, 0.1979999989271164f, 0.23100000619888306f, 0.2639999985694885f, 0.296999990940094f,
    0.32999998331069946f, 0.3630000054836273f, 0.3959999978542328f, 0.42899999022483826f, 0.4620000123977661f,
    0.4950000047683716f, 0.527999997138977f, 0.5609999895095825f, 0.593999981880188f, 0.6270000338554382f,
    0.6600000262260437f, 0.6930000185966492f, 0.7260000109672546f, 0.7590000033378601f, 0.7919999957084656f,
    0.824999988079071f, 0.8580000400543213f, 0.8910000324249268f, 0.9240000247955322f, 0.9570000171661377f,
    0.9900000095367432f};
constexpr std::array<float, kTrivialMagnitudeBins> kTranslate{
    0.0f, 1.0666667222976685f, 2.133333444595337f, 3.200000286102295f, 4.266666889190674f, 5.333333492279053f,
    6.40000057220459f, 7.466667175292969f, 8.533333778381348f, 9.600000381469727f, 10.666666984558105f,
    11.733333587646484f, 12.80000114440918f, 13.866666793823242f, 14.933334350585938f, 16.0f,
    17.066665649414062f, 18.133333206176758f, 19.19999885559082f, 20.266666412353516f, 21.333332061767578f,
    22.399999618530273f, 23.46666717529297f, 24.53333282470703f, 25.600000381469727f, 26.66666603088379f,
    27.733333587646484f, 28.799999237060547f, 29.866666793823242f, 30.933332443237305f, 32.0f};
// Rotate: 4.5 * bin exactly; Solarize: 255 - 8.5 * bin exactly (both representable).
// Posterize: 8 - round(bin / 5) (torch.round, half to even: bins 0..2 -> 8, 3..7 -> 7, ...).
constexpr std::array<int, kTrivialMagnitudeBins> kPosterize{8, 8, 8, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 5, 5, 5,
                                                           5, 5, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2};

constexpr double kPi = 3.141592653589793;

inline std::uint8_t to_u8(float v) {   // .clamp(0, 255).to(torch.uint8): truncation
    v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
    return static_cast<std::uint8_t>(v);
}

// _blend(img1, img2, ratio) = (ratio * img1 + (1.0 - ratio) * img2).clamp(0, 255).to(uint8), in
// float32 with each product rounded (no fused multiply-add).
inline std::uint8_t blend(float a, float b, float ratio, float one_minus) {
    volatile float x = ratio * a;
    volatile float y = one_minus * b;
    return to_u8(x + y);
}

// rgb_to_grayscale: (0.2989 * r + 0.587 * g + 0.114 * b).to(uint8), float32 left to right.
inline std::uint8_t gray(const cv::Vec3b& p) {
    volatile float r = 0.2989f * p[0];
    volatile float g = 0.587f * p[1];
    volatile float b = 0.114f * p[2];
    volatile float rg = r + g;
    return to_u8(rg + b);
}

cv::Mat blend_with(const cv::Mat& img, const cv::Mat& other, double factor) {
    const float ratio = static_cast<float>(factor), one_minus = static_cast<float>(1.0 - factor);
    cv::Mat out(img.size(), CV_8UC3);
    for (int y = 0; y < img.rows; ++y) {
        const auto* a = img.ptr<cv::Vec3b>(y);
        const auto* b = other.ptr<cv::Vec3b>(y);
        auto* o = out.ptr<cv::Vec3b>(y);
        for (int x = 0; x < img.cols; ++x)
            for (int k = 0; k < 3; ++k) o[x][k] = blend(a[x][k], b[x][k], ratio, one_minus);
    }
    return out;
}

cv::Mat grayscale3(const cv::Mat& img) {
    cv::Mat g(img.size(), CV_8UC3);
    for (int y = 0; y < img.rows; ++y) {
        const auto* a = img.ptr<cv::Vec3b>(y);
        auto* o = g.ptr<cv::Vec3b>(y);
        for (int x = 0; x < img.cols; ++x) {
            const std::uint8_t v = gray(a[x]);
            o[x] = cv::Vec3b(v, v, v);
        }
    }
    return g;
}

// F_t.affine / F_t.rotate with NEAREST and no fill, for torchvision's inverse matrix m (6
// doubles, about the image centre): theta in float32, the grid as _gen_affine_grid makes it and
// grid_sample's unnormalisation (align_corners=False), nearest with round half to even,
// zeros outside.
cv::Mat warp_nearest(const cv::Mat& img, const std::array<double, 6>& m) {
    const int H = img.rows, W = img.cols;
    const float hw = static_cast<float>(0.5 * W), hh = static_cast<float>(0.5 * H);
    float r[6];
    for (int k = 0; k < 3; ++k) r[k] = static_cast<float>(m[k]) / hw;
    for (int k = 3; k < 6; ++k) r[k] = static_cast<float>(m[k]) / hh;
    const float sx = static_cast<float>(W) / 2, sy = static_cast<float>(H) / 2;
    cv::Mat out(img.size(), CV_8UC3, cv::Scalar::all(0));
    for (int i = 0; i < H; ++i) {
        const float y = static_cast<float>(-H * 0.5 + 0.5 + i);
        auto* o = out.ptr<cv::Vec3b>(i);
        for (int j = 0; j < W; ++j) {
            const float x = static_cast<float>(-W * 0.5 + 0.5 + j);
            volatile float ax = x * r[0], bx = y * r[1];
            volatile float sxx = ax + bx;
            volatile float gx = sxx + r[2];
            volatile float ay = x * r[3], by = y * r[4];
            volatile float syy = ay + by;
            volatile float gy = syy + r[5];
            volatile float ux = (gx + 1.f) * sx;
            volatile float uy = (gy + 1.f) * sy;
            const float fx = std::nearbyint(ux - 0.5f), fy = std::nearbyint(uy - 0.5f);
            if (fx >= 0.f && fx < static_cast<float>(W) && fy >= 0.f && fy < static_cast<float>(H))
                o[j] = img.at<cv::Vec3b>(static_cast<int>(fy), static_cast<int>(fx));
        }
    }
    return out;
}

// torchvision.transforms.functional._get_inverse_affine_matrix (inverted=True, scale 1).
std::array<double, 6> inverse_affine(double cx, double cy, double angle, double tx, double ty, double shear_x,
                                     double shear_y) {
    const double deg_to_rad = kPi / 180.0;
    const double rot = angle * deg_to_rad, sx = shear_x * deg_to_rad, sy = shear_y * deg_to_rad;
    const double a = std::cos(rot - sy) / std::cos(sy);
    const double b = -std::cos(rot - sy) * std::tan(sx) / std::cos(sy) - std::sin(rot);
    const double c = std::sin(rot - sy) / std::cos(sy);
    const double d = -std::sin(rot - sy) * std::tan(sx) / std::cos(sy) + std::cos(rot);
    std::array<double, 6> m{d, -b, 0.0, -c, a, 0.0};
    for (double& v : m) v = v / 1.0;
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    return m;
}

double degrees_of_atan(double v) { return std::atan(v) * (180.0 / kPi); }   // math.degrees(math.atan(v))

// _blurred_degenerate_image: the 3x3 kernel [1 1 1; 1 5 1; 1 1 1] / 13 inside, border kept.
// torch.round of n/13 is never a tie, so the integer sum gives the same value.
cv::Mat blurred_degenerate(const cv::Mat& img) {
    cv::Mat out = img.clone();
    for (int y = 1; y + 1 < img.rows; ++y)
        for (int x = 1; x + 1 < img.cols; ++x)
            for (int k = 0; k < 3; ++k) {
                int n = 4 * img.at<cv::Vec3b>(y, x)[k];
                for (int dy = -1; dy <= 1; ++dy)
                    for (int dx = -1; dx <= 1; ++dx) n += img.at<cv::Vec3b>(y + dy, x + dx)[k];
                out.at<cv::Vec3b>(y, x)[k] = static_cast<std::uint8_t>(std::lround(n / 13.0));
            }
    return out;
}

cv::Mat autocontrast(const cv::Mat& img) {
    float lo[3] = {255.f, 255.f, 255.f}, hi[3] = {0.f, 0.f, 0.f};
    for (int y = 0; y < img.rows; ++y) {
        const auto* a = img.ptr<cv::Vec3b>(y);
        for (int x = 0; x < img.cols; ++x)
            for (int k = 0; k < 3; ++k) {
                lo[k] = std::min(lo[k], static_cast<float>(a[x][k]));
                hi[k] = std::max(hi[k], static_cast<float>(a[x][k]));
            }
    }
    float scale[3];
    for (int k = 0; k < 3; ++k) {
        // bound / tensor is Tensor.__rtruediv__: reciprocal(tensor) * bound, in float32.
        volatile float reciprocal = 1.0f / (hi[k] - lo[k]);
        scale[k] = reciprocal * 255.0f;
        if (!std::isfinite(scale[k])) lo[k] = 0.f, scale[k] = 1.f;
    }
    cv::Mat out(img.size(), CV_8UC3);
    for (int y = 0; y < img.rows; ++y) {
        const auto* a = img.ptr<cv::Vec3b>(y);
        auto* o = out.ptr<cv::Vec3b>(y);
        for (int x = 0; x < img.cols; ++x)
            for (int k = 0; k < 3; ++k) {
                volatile float d = static_cast<float>(a[x][k]) - lo[k];
                o[x][k] = to_u8(d * scale[k]);
            }
    }
    return out;
}

cv::Mat equalize(const cv::Mat& img) {
    cv::Mat out = img.clone();
    for (int k = 0; k < 3; ++k) {
        std::array<std::int64_t, 256> hist{};
        for (int y = 0; y < img.rows; ++y) {
            const auto* a = img.ptr<cv::Vec3b>(y);
            for (int x = 0; x < img.cols; ++x) ++hist[a[x][k]];
        }
        // step = sum of the non-zero bins but the last one, // 255
        int last = 255;
        while (last > 0 && hist[last] == 0) --last;
        std::int64_t total = 0;
        for (int v = 0; v < last; ++v) total += hist[v];
        const std::int64_t step = total / 255;
        if (step == 0) continue;
        std::array<std::uint8_t, 256> lut{};
        std::int64_t cum = 0;
        lut[0] = 0;
        for (int v = 0; v < 255; ++v) {
            cum += hist[v];
            lut[v + 1] = static_cast<std::uint8_t>(std::clamp<std::int64_t>((cum + step / 2) / step, 0, 255));
        }
        for (int y = 0; y < img.rows; ++y) {
            auto* o = out.ptr<cv::Vec3b>(y);
            for (int x = 0; x < img.cols; ++x) o[x][k] = lut[o[x][k]];
        }
    }
    return out;
}

}  // namespace

const char* trivial_op_name(TrivialOp op) { return kNames.at(static_cast<std::size_t>(op)); }

bool trivial_op_has_magnitudes(TrivialOp op) {
    return !(op == TrivialOp::Identity || op == TrivialOp::AutoContrast || op == TrivialOp::Equalize);
}

bool trivial_op_signed(TrivialOp op) {
    return trivial_op_has_magnitudes(op) && op != TrivialOp::Posterize && op != TrivialOp::Solarize;
}

double trivial_magnitude(TrivialOp op, int bin, bool negative) {
    if (bin < 0 || bin >= kTrivialMagnitudeBins) throw std::invalid_argument("trivial_magnitude: bin out of range");
    double m = 0.0;
    switch (op) {
        case TrivialOp::ShearX:
        case TrivialOp::ShearY:
        case TrivialOp::Brightness:
        case TrivialOp::Color:
        case TrivialOp::Contrast:
        case TrivialOp::Sharpness: m = kShear[bin]; break;
        case TrivialOp::TranslateX:
        case TrivialOp::TranslateY: m = kTranslate[bin]; break;
        case TrivialOp::Rotate: m = 4.5 * bin; break;
        case TrivialOp::Posterize: m = kPosterize[bin]; break;
        case TrivialOp::Solarize: m = 255.0 - 8.5 * bin; break;
        default: m = 0.0;
    }
    return negative && trivial_op_signed(op) ? -m : m;
}

cv::Mat apply_trivial_op(const cv::Mat& img, TrivialOp op, double magnitude) {
    if (img.type() != CV_8UC3) throw std::invalid_argument("apply_trivial_op expects CV_8UC3");
    const double cx = -0.5 * img.cols, cy = -0.5 * img.rows;   // center=[0, 0] in torchvision's affine
    switch (op) {
        case TrivialOp::Identity: return img.clone();
        case TrivialOp::ShearX:
            return warp_nearest(img, inverse_affine(cx, cy, 0.0, 0.0, 0.0, degrees_of_atan(magnitude), 0.0));
        case TrivialOp::ShearY:
            return warp_nearest(img, inverse_affine(cx, cy, 0.0, 0.0, 0.0, 0.0, degrees_of_atan(magnitude)));
        case TrivialOp::TranslateX:
            return warp_nearest(img, inverse_affine(0.0, 0.0, 0.0, static_cast<int>(magnitude), 0.0, 0.0, 0.0));
        case TrivialOp::TranslateY:
            return warp_nearest(img, inverse_affine(0.0, 0.0, 0.0, 0.0, static_cast<int>(magnitude), 0.0, 0.0));
        case TrivialOp::Rotate:
            // F.rotate passes -angle to the matrix.
            return warp_nearest(img, inverse_affine(0.0, 0.0, -magnitude, 0.0, 0.0, 0.0, 0.0));
        case TrivialOp::Brightness: return blend_with(img, cv::Mat(img.size(), CV_8UC3, cv::Scalar::all(0)), 1.0 + magnitude);
        case TrivialOp::Color: return blend_with(img, grayscale3(img), 1.0 + magnitude);
        case TrivialOp::Contrast: {
            // mean of the grayscale image in float32: an exact integer sum, then / N in float32
            const cv::Mat g = grayscale3(img);
            double sum = 0;
            for (int y = 0; y < g.rows; ++y) {
                const auto* a = g.ptr<cv::Vec3b>(y);
                for (int x = 0; x < g.cols; ++x) sum += a[x][0];
            }
            const float mean = static_cast<float>(sum) / static_cast<float>(g.total());
            const float ratio = static_cast<float>(1.0 + magnitude), one_minus = static_cast<float>(1.0 - (1.0 + magnitude));
            cv::Mat out(img.size(), CV_8UC3);
            for (int y = 0; y < img.rows; ++y) {
                const auto* a = img.ptr<cv::Vec3b>(y);
                auto* o = out.ptr<cv::Vec3b>(y);
                for (int x = 0; x < img.cols; ++x)
                    for (int k = 0; k < 3; ++k) o[x][k] = blend(a[x][k], mean, ratio, one_minus);
            }
            return out;
        }
        case TrivialOp::Sharpness:
            if (img.rows <= 2 || img.cols <= 2) return img.clone();
            return blend_with(img, blurred_degenerate(img), 1.0 + magnitude);
        case TrivialOp::Posterize: {
            const int bits = static_cast<int>(magnitude);
            const std::uint8_t mask = static_cast<std::uint8_t>(-(1 << (8 - bits)) & 0xff);
            cv::Mat out = img.clone();
            out.forEach<cv::Vec3b>([mask](cv::Vec3b& p, const int*) {
                for (int k = 0; k < 3; ++k) p[k] &= mask;
            });
            return out;
        }
        case TrivialOp::Solarize: {
            const float threshold = static_cast<float>(magnitude);
            cv::Mat out = img.clone();
            out.forEach<cv::Vec3b>([threshold](cv::Vec3b& p, const int*) {
                for (int k = 0; k < 3; ++k)
                    if (static_cast<float>(p[k]) >= threshold) p[k] = static_cast<std::uint8_t>(255 - p[k]);
            });
            return out;
        }
        case TrivialOp::AutoContrast: return autocontrast(img);
        case TrivialOp::Equalize: return equalize(img);
    }
    throw std::invalid_argument("apply_trivial_op: unknown op");
}

EraseBox draw_erase_box(double p, int size, Rng& rng) {
    EraseBox box;
    // forward: torch.rand(1) < p, then get_params.
    if (!(rng.uniform() < p)) return box;
    const double area = static_cast<double>(size) * size;
    const double log_lo = std::log(kEraseRatioMin), log_hi = std::log(kEraseRatioMax);
    for (int attempt = 0; attempt < 10; ++attempt) {
        const double erase_area = area * rng.uniform(kEraseScaleMin, kEraseScaleMax);
        const double aspect = std::exp(rng.uniform(log_lo, log_hi));
        const int h = static_cast<int>(std::nearbyint(std::sqrt(erase_area * aspect)));
        const int w = static_cast<int>(std::nearbyint(std::sqrt(erase_area / aspect)));
        if (!(h < size && w < size)) continue;
        box.erase = true;
        box.height = h;
        box.width = w;
        box.top = static_cast<int>(rng.uniform_int(0, size - h));
        box.left = static_cast<int>(rng.uniform_int(0, size - w));
        return box;
    }
    return box;   // torchvision returns the image itself: nothing erased
}

}  // namespace whisker::data
