// Micro-benchmarks of the per-image work of the loader (Google Benchmark):
//   build/tests/bench_image_pipeline --benchmark_min_time=0.5
// DCT-scaled against full decoding shows what the fast path buys on large photos.
#include "test_support.h"

#include "whisker/data/image_decode.h"
#include "whisker/data/transforms.h"

#include <benchmark/benchmark.h>
#include <opencv2/core.hpp>

#include <map>

using namespace whisker;
using namespace whisker::data;

namespace {
const std::string& photo(int w, int h) {
    static std::map<std::pair<int, int>, std::string> cache;
    auto& s = cache[{w, h}];
    if (s.empty()) s = test::encode_image(test::pattern_image(w, h, 3), ".jpg", 90);
    return s;
}

void BM_DecodeFull(benchmark::State& st) {
    const std::string& jpeg = photo(static_cast<int>(st.range(0)), static_cast<int>(st.range(0) * 3 / 4));
    for (auto _ : st) benchmark::DoNotOptimize(decode_image(jpeg));
}
void BM_DecodeDctScaled(benchmark::State& st) {
    const std::string& jpeg = photo(static_cast<int>(st.range(0)), static_cast<int>(st.range(0) * 3 / 4));
    DecodeOptions o;
    o.min_shorter_side = 246;  // 1.1 * 224
    for (auto _ : st) benchmark::DoNotOptimize(decode_image(jpeg, o));
}
// A 2000x1500 photograph-like JPEG at 1/4 scale (what the loader decodes for 224 px training):
// libjpeg-turbo (0) against Whisker's reduced decoder (1), the same pixels.
void BM_DecodeQuarterPhoto(benchmark::State& st) {
    static const std::string jpeg = test::encode_image(test::photo_like_image(2000, 1500, 1), ".jpg", 90);
    DecodeOptions o;
    o.min_shorter_side = 246;
    o.allow_fast_jpeg = st.range(0) == 1;
    for (auto _ : st) benchmark::DoNotOptimize(decode_image(jpeg, o));
    st.SetLabel(st.range(0) ? "whisker" : "libjpeg-turbo");
}
void BM_ValidationTransform(benchmark::State& st) {
    const cv::Mat img = decode_image(photo(500, 375)).rgb;
    const AugmentSettings s = AugmentSettings::side_on(224);
    std::vector<float> out(3 * 224 * 224);
    for (auto _ : st) validation_transform(img, s, out.data());
}
void BM_TrainingTransform(benchmark::State& st) {
    const cv::Mat img = decode_image(photo(500, 375)).rgb;
    const AugmentSettings s = AugmentSettings::side_on(224);
    std::vector<float> out(3 * 224 * 224);
    Rng rng(1);
    for (auto _ : st) training_transform(img, s, draw_augmentation(s, rng), out.data());
}
// The resize and the rotation, as OpenCV's steps and as the fused steps the pipelines use
// (same pixels): range(0) is the source's shorter side (150: the sample's small drawings,
// enlarged; 375: a 2000x1500 photo after 1/4 DCT decoding, reduced).
void BM_ResizeOpenCV(benchmark::State& st) {
    const int h = static_cast<int>(st.range(0));
    const cv::Mat img = decode_image(photo(h * 4 / 3, h)).rgb;
    for (auto _ : st) benchmark::DoNotOptimize(scale_min(to_float_rgb(img), 240));
}
void BM_ResizeFromU8(benchmark::State& st) {
    const int h = static_cast<int>(st.range(0));
    const cv::Mat img = decode_image(photo(h * 4 / 3, h)).rgb;
    for (auto _ : st) benchmark::DoNotOptimize(scale_min_from_u8(img, 240));
}
void BM_RotateAndMeanOpenCV(benchmark::State& st) {
    const cv::Mat img = scale_min(to_float_rgb(decode_image(photo(500, 375)).rgb), 246);
    for (auto _ : st) benchmark::DoNotOptimize(cv::mean(rotate_reflect(img, 7.5)));
}
void BM_RotateWindowAndMean(benchmark::State& st) {
    const cv::Mat img = scale_min(to_float_rgb(decode_image(photo(500, 375)).rgb), 246);
    for (auto _ : st) benchmark::DoNotOptimize(rotate_reflect_window(img, 7.5, cv::Rect(10, 10, 224, 224)).mean);
}
// Decode + training transform of one large photo, with (1) and without (0) DCT scaling.
void BM_LargePhotoEndToEnd(benchmark::State& st) {
    const std::string& jpeg = photo(2000, 1500);
    const AugmentSettings s = AugmentSettings::side_on(224);
    DecodeOptions o;
    o.min_shorter_side = st.range(0) ? s.min_decode_side() : 0;
    std::vector<float> out(3 * 224 * 224);
    Rng rng(1);
    for (auto _ : st) training_transform(decode_image(jpeg, o).rgb, s, draw_augmentation(s, rng), out.data());
}
}  // namespace

BENCHMARK(BM_LargePhotoEndToEnd)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeFull)->Arg(500)->Arg(2000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeDctScaled)->Arg(500)->Arg(2000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeQuarterPhoto)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResizeOpenCV)->Arg(150)->Arg(375)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResizeFromU8)->Arg(150)->Arg(375)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RotateAndMeanOpenCV)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RotateWindowAndMean)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ValidationTransform)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainingTransform)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
