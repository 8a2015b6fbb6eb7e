#include "whisker/data/transforms.h"

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>   // the rotation's and the normalising pass's four-lane float arithmetic
#endif

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

// uint8 -> float exactly as to_float_rgb's convertTo(CV_32F, 1/255) converts each value.
const float* unit_float_table() {
    static const std::vector<float> table = [] {
        cv::Mat bytes(1, 256, CV_8UC1);
        for (int i = 0; i < 256; ++i) bytes.at<unsigned char>(0, i) = static_cast<unsigned char>(i);
        cv::Mat f;
        bytes.convertTo(f, CV_32F, 1.0 / 255.0);
        return std::vector<float>(f.ptr<float>(0), f.ptr<float>(0) + 256);
    }();
    return table.data();
}

// One axis of cv::resize's INTER_AREA enlargement (linear interpolation with area-style
// weights): for output index d, source index `index` and weights (1 - f, f), with OpenCV's
// formulas (double positions, float weights; at the far edge the last pixel with weight 1).
struct AreaUpscaleTaps {
    std::vector<int> index;
    std::vector<float> w0, w1;
    int last_pair = 0;   // outputs from here on read one source pixel (the edge)
};
AreaUpscaleTaps area_upscale_taps(int src, int dst, bool clamp_edge) {
    AreaUpscaleTaps t;
    t.index.resize(static_cast<std::size_t>(dst));
    t.w0.resize(t.index.size());
    t.w1.resize(t.index.size());
    t.last_pair = dst;
    const double inv_scale = static_cast<double>(dst) / src;
    const double scale = 1.0 / inv_scale;
    for (int d = 0; d < dst; ++d) {
        int s = cvFloor(d * scale);
        float f = static_cast<float>((d + 1) - (s + 1) * inv_scale);
        f = f <= 0 ? 0.f : f - static_cast<float>(cvFloor(f));
        if (clamp_edge && s + 1 >= src) {
            t.last_pair = std::min(t.last_pair, d);
            if (s >= src - 1) f = 0.f, s = src - 1;
        }
        const auto i = static_cast<std::size_t>(d);
        t.index[i] = s;
        t.w0[i] = 1.f - f;
        t.w1[i] = f;
    }
    return t;
}

// scale_min's enlargement of to_float_rgb(rgb8) to new_c x new_r (both larger): cv::resize's
// separable INTER_AREA-as-linear pass, horizontal then vertical, in its float arithmetic.
cv::Mat upscale_area_from_u8(const cv::Mat& rgb8, int new_c, int new_r) {
    const int sw = rgb8.cols, sh = rgb8.rows;
    const float* unit = unit_float_table();
    const AreaUpscaleTaps xt = area_upscale_taps(sw, new_c, true);
    const AreaUpscaleTaps yt = area_upscale_taps(sh, new_r, false);
    const std::size_t row_len = 3u * static_cast<std::size_t>(new_c);
    // Horizontal pass on every source row (an enlargement reads them all).
    thread_local std::vector<float> rows;   // reused: no fresh pages per image
    rows.resize(static_cast<std::size_t>(sh) * row_len);
    for (int y = 0; y < sh; ++y) {
        const unsigned char* src = rgb8.ptr<unsigned char>(y);
        float* d = rows.data() + static_cast<std::size_t>(y) * row_len;
        int x = 0;
        for (; x < xt.last_pair; ++x) {
            const auto i = static_cast<std::size_t>(x);
            const unsigned char* p = src + 3 * xt.index[i];
            const float a0 = xt.w0[i], a1 = xt.w1[i];
            for (int k = 0; k < 3; ++k) d[3 * i + k] = unit[p[k]] * a0 + unit[p[k + 3]] * a1;
        }
        for (; x < new_c; ++x) {
            const auto i = static_cast<std::size_t>(x);
            const unsigned char* p = src + 3 * xt.index[i];
            for (int k = 0; k < 3; ++k) d[3 * i + k] = unit[p[k]];
        }
    }
    // Vertical pass: rows index and index + 1, clamped to the image.
    cv::Mat out(new_r, new_c, CV_32FC3);
    for (int y = 0; y < new_r; ++y) {
        const auto i = static_cast<std::size_t>(y);
        const int r0 = std::clamp(yt.index[i], 0, sh - 1), r1 = std::clamp(yt.index[i] + 1, 0, sh - 1);
        const float* s0 = rows.data() + static_cast<std::size_t>(r0) * row_len;
        const float* s1 = rows.data() + static_cast<std::size_t>(r1) * row_len;
        const float b0 = yt.w0[i], b1 = yt.w1[i];
        float* d = out.ptr<float>(y);
        for (std::size_t x = 0; x < row_len; ++x) d[x] = s0[x] * b0 + s1[x] * b1;
    }
    return out;
}

// One axis of cv::resize's INTER_AREA reduction: each output index averages the source cells
// it covers — (source index, weight) taps in OpenCV's order (a partial first cell, whole
// cells, a partial last cell) and OpenCV's weights (double arithmetic, stored as float).
struct AreaTaps {
    std::vector<int> first;      // taps of output d: [first[d], first[d + 1])
    std::vector<int> index;
    std::vector<float> weight;
};
AreaTaps area_reduce_taps(int src, int dst, double scale) {
    AreaTaps t;
    t.first.reserve(static_cast<std::size_t>(dst) + 1);
    auto add = [&](int i, float w) {
        t.index.push_back(i);
        t.weight.push_back(w);
    };
    for (int d = 0; d < dst; ++d) {
        t.first.push_back(static_cast<int>(t.index.size()));
        const double f1 = d * scale, f2 = f1 + scale;
        const double cell = std::min(scale, src - f1);
        int s2 = cvFloor(f2);
        s2 = std::min(s2, src - 1);
        const int s1 = std::min(cvCeil(f1), s2);
        if (s1 - f1 > 1e-3) add(s1 - 1, static_cast<float>((s1 - f1) / cell));
        for (int i = s1; i < s2; ++i) add(i, static_cast<float>(1.0 / cell));
        if (f2 - s2 > 1e-3) add(s2, static_cast<float>(std::min(std::min(f2 - s2, 1.), cell) / cell));
    }
    t.first.push_back(static_cast<int>(t.index.size()));
    return t;
}

// scale_min's reduction of to_float_rgb(rgb8) to new_c x new_r: cv::resize's INTER_AREA
// (non-integer factors), each source row's horizontal sums computed once (OpenCV redoes a row
// for every output row it touches), the same float sums in the same order.
cv::Mat downscale_area_from_u8(const cv::Mat& rgb8, int new_c, int new_r, double scale_x, double scale_y) {
    const int sh = rgb8.rows;
    const float* unit = unit_float_table();
    const AreaTaps xt = area_reduce_taps(rgb8.cols, new_c, scale_x);
    const AreaTaps yt = area_reduce_taps(sh, new_r, scale_y);
    const std::size_t row_len = 3u * static_cast<std::size_t>(new_c);
    thread_local std::vector<float> rows;   // reused: no fresh pages per image
    rows.resize(static_cast<std::size_t>(sh) * row_len);
    for (int y = 0; y < sh; ++y) {
        const unsigned char* src = rgb8.ptr<unsigned char>(y);
        float* d = rows.data() + static_cast<std::size_t>(y) * row_len;
        for (int x = 0; x < new_c; ++x) {
            float acc[3] = {0.f, 0.f, 0.f};
            for (int t = xt.first[static_cast<std::size_t>(x)]; t < xt.first[static_cast<std::size_t>(x) + 1]; ++t) {
                const unsigned char* p = src + 3 * xt.index[static_cast<std::size_t>(t)];
                const float w = xt.weight[static_cast<std::size_t>(t)];
                for (int k = 0; k < 3; ++k) acc[k] = acc[k] + unit[p[k]] * w;
            }
            for (int k = 0; k < 3; ++k) d[3 * x + k] = acc[k];
        }
    }
    cv::Mat out(new_r, new_c, CV_32FC3);
    for (int y = 0; y < new_r; ++y) {
        float* d = out.ptr<float>(y);
        const int t0 = yt.first[static_cast<std::size_t>(y)], t1 = yt.first[static_cast<std::size_t>(y) + 1];
        {
            const float* s = rows.data() + static_cast<std::size_t>(yt.index[static_cast<std::size_t>(t0)]) * row_len;
            const float b = yt.weight[static_cast<std::size_t>(t0)];
            for (std::size_t x = 0; x < row_len; ++x) d[x] = b * s[x];
        }
        for (int t = t0 + 1; t < t1; ++t) {
            const float* s = rows.data() + static_cast<std::size_t>(yt.index[static_cast<std::size_t>(t)]) * row_len;
            const float b = yt.weight[static_cast<std::size_t>(t)];
            for (std::size_t x = 0; x < row_len; ++x) d[x] += b * s[x];
        }
    }
    return out;
}

}  // namespace

cv::Mat scale_min_from_u8(const cv::Mat& rgb8, int target) {
    if (rgb8.type() != CV_8UC3) throw std::invalid_argument("scale_min_from_u8 expects CV_8UC3");
    const int r = rgb8.rows, c = rgb8.cols;
    const double ratio = static_cast<double>(target) / std::min(r, c);
    const int new_c = std::max(static_cast<int>(std::floor(c * ratio)), target);
    const int new_r = std::max(static_cast<int>(std::floor(r * ratio)), target);
    if (new_c == c && new_r == r) return to_float_rgb(rgb8);
    // cv::resize's choice of algorithm for INTER_AREA, from its scale factors.
    const double scale_x = 1. / (static_cast<double>(new_c) / c), scale_y = 1. / (static_cast<double>(new_r) / r);
    if (scale_x >= 1 && scale_y >= 1) {
        const bool integer_factors = std::abs(scale_x - cv::saturate_cast<int>(scale_x)) < DBL_EPSILON &&
                                     std::abs(scale_y - cv::saturate_cast<int>(scale_y)) < DBL_EPSILON;
        // Whole factors take OpenCV's block-average path, left to OpenCV.
        if (integer_factors) return scale_min(to_float_rgb(rgb8), target);
        return downscale_area_from_u8(rgb8, new_c, new_r, scale_x, scale_y);
    }
    return upscale_area_from_u8(rgb8, new_c, new_r);
}

RotatedWindow rotate_reflect_window(const cv::Mat& image, double degrees, const cv::Rect& window) {
    if (image.type() != CV_32FC3) throw std::invalid_argument("rotate_reflect_window expects CV_32FC3");
    const int rows = image.rows, cols = image.cols;
    if ((window & cv::Rect(0, 0, cols, rows)) != window) throw std::invalid_argument("rotate_reflect_window: window outside the image");
    // rotate_reflect's matrix, inverted as warpAffine inverts it (output -> source).
    const cv::Mat fwd = cv::getRotationMatrix2D(cv::Point2f(static_cast<float>(cols / 2), static_cast<float>(rows / 2)),
                                                degrees, 1.0);
    double m[6];
    for (int i = 0; i < 6; ++i) m[i] = fwd.at<double>(i / 3, i % 3);
    {
        double det = m[0] * m[4] - m[1] * m[3];
        det = det != 0 ? 1. / det : 0;
        const double a11 = m[4] * det, a22 = m[0] * det;
        m[0] = a11;
        m[1] *= -det;
        m[3] *= -det;
        m[4] = a22;
        const double b1 = -m[0] * m[2] - m[1] * m[5], b2 = -m[3] * m[2] - m[4] * m[5];
        m[2] = b1;
        m[5] = b2;
    }
    // warpAffine's fixed point: positions in 1/1024 pixel, rounded to 1/32 pixel (INTER_BITS 5),
    // whose bilinear weights come from a table of products of multiples of 1/32.
    constexpr int kAbBits = 10, kAbScale = 1 << kAbBits, kInterBits = 5, kTab = 1 << kInterBits;
    constexpr int kRoundDelta = kAbScale / kTab / 2;
    static const std::vector<float> weights = [] {
        std::vector<float> w(kTab * kTab * 4);
        const float step = 1.f / kTab;
        for (int i = 0; i < kTab; ++i)
            for (int j = 0; j < kTab; ++j) {
                const float vy[2] = {1.f - i * step, i * step}, vx[2] = {1.f - j * step, j * step};
                for (int k1 = 0; k1 < 2; ++k1)
                    for (int k2 = 0; k2 < 2; ++k2) w[static_cast<std::size_t>(((i * kTab + j) * 2 + k1) * 2 + k2)] = vy[k1] * vx[k2];
            }
        return w;
    }();
    std::vector<int> adelta(static_cast<std::size_t>(cols)), bdelta(adelta.size());
    for (int x = 0; x < cols; ++x) {
        adelta[static_cast<std::size_t>(x)] = cv::saturate_cast<int>(m[0] * x * kAbScale);
        bdelta[static_cast<std::size_t>(x)] = cv::saturate_cast<int>(m[3] * x * kAbScale);
    }
    RotatedWindow out;
    out.pixels.create(window.height, window.width, CV_32FC3);
    const std::size_t step = image.step1();   // floats per source row
    const float* src = image.ptr<float>(0);
    const int width1 = std::max(cols - 1, 0), height1 = std::max(rows - 1, 0);
    // One output pixel: warpAffine's source position and weights, then remap's bilinear sum
    // ((p00*w0 + p01*w1) + p10*w2) + p11*w3 per channel, inside or across the reflected border.
    auto pixel = [&](int x0, int y0, int x, float* v) {
        const int fx = (x0 + adelta[static_cast<std::size_t>(x)]) >> (kAbBits - kInterBits);
        const int fy = (y0 + bdelta[static_cast<std::size_t>(x)]) >> (kAbBits - kInterBits);
        const int sx = cv::saturate_cast<short>(fx >> kInterBits), sy = cv::saturate_cast<short>(fy >> kInterBits);
        const float* w = weights.data() + 4 * ((fy & (kTab - 1)) * kTab + (fx & (kTab - 1)));
        if (static_cast<unsigned>(sx) < static_cast<unsigned>(width1) && static_cast<unsigned>(sy) < static_cast<unsigned>(height1)) {
            const float* p = src + static_cast<std::size_t>(sy) * step + 3 * static_cast<std::size_t>(sx);
#if defined(__SSE2__)
            // Four lanes, three used: the same IEEE products and sums in the same order as the
            // scalar code. The fourth lane reads one float past the pixel — except for the last
            // pixel of the image, which takes the scalar path.
            if (sy + 1 < height1 || sx + 1 < width1) {
                const __m128 r0 = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(p), _mm_set1_ps(w[0])),
                                             _mm_mul_ps(_mm_loadu_ps(p + 3), _mm_set1_ps(w[1])));
                const __m128 r1 = _mm_add_ps(r0, _mm_mul_ps(_mm_loadu_ps(p + step), _mm_set1_ps(w[2])));
                const __m128 r2 = _mm_add_ps(r1, _mm_mul_ps(_mm_loadu_ps(p + step + 3), _mm_set1_ps(w[3])));
                alignas(16) float lanes[4];
                _mm_store_ps(lanes, r2);
                v[0] = lanes[0], v[1] = lanes[1], v[2] = lanes[2];
                return;
            }
#endif
            for (int k = 0; k < 3; ++k) v[k] = p[k] * w[0] + p[k + 3] * w[1] + p[step + k] * w[2] + p[step + k + 3] * w[3];
            return;
        }
        // Reflected border (fedcba|abcdef), per tap.
        const int c0 = cv::borderInterpolate(sx, cols, cv::BORDER_REFLECT);
        const int c1 = cv::borderInterpolate(sx + 1, cols, cv::BORDER_REFLECT);
        const int r0 = cv::borderInterpolate(sy, rows, cv::BORDER_REFLECT);
        const int r1 = cv::borderInterpolate(sy + 1, rows, cv::BORDER_REFLECT);
        const float* p0 = src + static_cast<std::size_t>(r0) * step + 3 * static_cast<std::size_t>(c0);
        const float* p1 = src + static_cast<std::size_t>(r0) * step + 3 * static_cast<std::size_t>(c1);
        const float* p2 = src + static_cast<std::size_t>(r1) * step + 3 * static_cast<std::size_t>(c0);
        const float* p3 = src + static_cast<std::size_t>(r1) * step + 3 * static_cast<std::size_t>(c1);
        for (int k = 0; k < 3; ++k) v[k] = p0[k] * w[0] + p1[k] * w[1] + p2[k] * w[2] + p3[k] * w[3];
    };
    // The mean's sums: in double, as cv::mean sums.
    double sum[3] = {0, 0, 0};
    const int wx0 = window.x, wx1 = window.x + window.width;
    for (int y = 0; y < rows; ++y) {
        const int x0 = cv::saturate_cast<int>((m[1] * y + m[2]) * kAbScale) + kRoundDelta;
        const int y0 = cv::saturate_cast<int>((m[4] * y + m[5]) * kAbScale) + kRoundDelta;
        const bool window_row = y >= window.y && y < window.y + window.height;
        float v[3];
        auto outside = [&](int from, int to) {
            for (int x = from; x < to; ++x) {
                pixel(x0, y0, x, v);
                sum[0] += v[0], sum[1] += v[1], sum[2] += v[2];
            }
        };
        if (!window_row) {
            outside(0, cols);
            continue;
        }
        outside(0, wx0);
        float* d = out.pixels.ptr<float>(y - window.y);
        for (int x = wx0; x < wx1; ++x, d += 3) {
            pixel(x0, y0, x, d);
            sum[0] += d[0], sum[1] += d[1], sum[2] += d[2];
        }
        outside(wx1, cols);
    }
    const double n = static_cast<double>(rows) * cols;
    out.mean = (sum[0] / n + sum[1] / n + sum[2] / n) / 3.0;
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
        int x = 0;
#if defined(__SSE2__)
        // Four pixels at a time: the same IEEE operations in the same order as the scalar loop
        // below (max(0, min(1, v)) is clip01 for numbers), so the same floats.
        {
            const __m128 vmu = _mm_set1_ps(mu), vb = _mm_set1_ps(b), vc = _mm_set1_ps(c);
            const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.f);
            const __m128 s0 = _mm_set1_ps(scale[0]), s1 = _mm_set1_ps(scale[1]), s2 = _mm_set1_ps(scale[2]);
            const __m128 h0 = _mm_set1_ps(shift[0]), h1 = _mm_set1_ps(shift[1]), h2 = _mm_set1_ps(shift[2]);
            auto light = [&](__m128 v) {
                v = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_sub_ps(v, vmu), vc), vmu), vb);
                return _mm_max_ps(zero, _mm_min_ps(one, v));
            };
            for (; x + 4 <= size; x += 4) {
                // Source pixels x..x+3, or mirrored size-1-x down to size-4-x.
                const float* p = row + 3 * (flip ? size - 1 - x : x);
                const int d = flip ? -3 : 3;
                __m128 r = _mm_setr_ps(p[0], p[d], p[2 * d], p[3 * d]);
                __m128 g = _mm_setr_ps(p[1], p[d + 1], p[2 * d + 1], p[3 * d + 1]);
                __m128 bl = _mm_setr_ps(p[2], p[d + 2], p[2 * d + 2], p[3 * d + 2]);
                if (lighting) {
                    r = light(r);
                    g = light(g);
                    bl = light(bl);
                }
                _mm_storeu_ps(o0 + x, _mm_add_ps(_mm_mul_ps(r, s0), h0));
                _mm_storeu_ps(o1 + x, _mm_add_ps(_mm_mul_ps(g, s1), h1));
                _mm_storeu_ps(o2 + x, _mm_add_ps(_mm_mul_ps(bl, s2), h2));
            }
        }
#endif
        for (; x < size; ++x) {
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
    cv::Mat image;   // float RGB after scale, rotation (and dihedral); or just the crop's window
    int row0 = 0, col0 = 0;
    bool lighting = false;
    float mu = 0.f;
};

// Adds the time since the previous lap to one of TransformTimes' fields; does nothing (and
// reads no clock) without a TransformTimes.
class StepClock {
public:
    explicit StepClock(TransformTimes* times) : times_(times) {
        if (times_) last_ = std::chrono::steady_clock::now();
    }
    void lap(double TransformTimes::*step) {
        if (!times_) return;
        const auto now = std::chrono::steady_clock::now();
        times_->*step += std::chrono::duration<double>(now - last_).count();
        last_ = now;
    }

private:
    TransformTimes* times_;
    std::chrono::steady_clock::time_point last_;
};

TrainingGeometry training_geometry(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d,
                                   TransformTimes* times = nullptr) {
    StepClock clock(times);
    TrainingGeometry g;
    cv::Mat img = scale_min_from_u8(rgb8, d.scaled_size);
    clock.lap(&TransformTimes::resize);
    g.lighting = !(d.brightness == 0.0 && d.contrast == 1.0);
    // Only presets with RandomRotate ever draw rotate = true.
    const bool rotate = d.rotate && d.degrees != 0.0;
    const bool quarter_turns = s.preset == AugmentPreset::TopDown && d.dihedral / 2 != 0;
    // The crop is taken from the flipped image in fastai; on the unflipped image that is the
    // window mirrored about the centre. (Rotation keeps the size; quarter turns may swap it.)
    auto place_crop = [&](int rows, int cols) {
        g.row0 = random_crop_offset(rows, s.size, d.crop_r);
        g.col0 = random_crop_offset(cols, s.size, d.crop_c);
        if (mirrored(s, d)) g.col0 = cols - s.size - g.col0;
    };
    if (rotate && !quarter_turns) {
        // Only the crop's window of the rotated image is kept; the lighting's mean of the whole
        // rotated image comes from the same pass.
        place_crop(img.rows, img.cols);
        RotatedWindow w = rotate_reflect_window(img, d.degrees, cv::Rect(g.col0, g.row0, s.size, s.size));
        g.image = w.pixels;
        g.row0 = g.col0 = 0;
        if (g.lighting) g.mu = static_cast<float>(w.mean);
        clock.lap(&TransformTimes::rotate);
        return g;
    }
    if (rotate) {
        img = rotate_reflect(img, d.degrees);
        clock.lap(&TransformTimes::rotate);
    }
    // fastai's lighting comes before the flip and the dihedral: its mean is taken here, before
    // the quarter turns, so that the pixels are summed in fastai's order (a rearranged image
    // could round differently).
    if (g.lighting) g.mu = static_cast<float>(mean_of_all(img));
    clock.lap(&TransformTimes::lighting);
    if (quarter_turns) {
        img = rotate_quarter_turns(img, d.dihedral / 2);
        clock.lap(&TransformTimes::rotate);
    }
    place_crop(img.rows, img.cols);
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

void validation_transform(const cv::Mat& rgb8, const AugmentSettings& s, float* out, TransformTimes* times) {
    StepClock clock(times);
    const cv::Mat img = scale_min_from_u8(rgb8, s.eval_side());
    clock.lap(&TransformTimes::resize);
    write_crop_chw(img, center_crop_offset(img.rows, s.size), center_crop_offset(img.cols, s.size), s.size,
                   false, false, 0.f, 0.f, 1.f, s.norm, out);
    clock.lap(&TransformTimes::crop_normalise);
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

void training_transform(const cv::Mat& rgb8, const AugmentSettings& s, const AugmentDraw& d, float* out,
                        TransformTimes* times) {
    StepClock clock(times);
    if (d.trivial) {
        write_u8_chw(trivial_augmented(preset_crop8(rgb8, s, d), d), s.norm, out);
        clock.lap(&TransformTimes::extra);
    } else {
        const TrainingGeometry g = training_geometry(rgb8, s, d, times);
        clock = StepClock(times);
        write_crop_chw(g.image, g.row0, g.col0, s.size, mirrored(s, d), g.lighting, g.mu,
                       static_cast<float>(d.brightness), static_cast<float>(d.contrast), s.norm, out);
        clock.lap(&TransformTimes::crop_normalise);
    }
    // RandomErasing, after normalisation (value 0: the mean colour).
    erase_chw(out, s.size, d.erase);
    if (d.erase.erase) clock.lap(&TransformTimes::extra);
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
