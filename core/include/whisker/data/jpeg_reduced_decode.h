#pragma once
// A decoder for the JPEGs cameras and phones write (baseline, Huffman-coded, 8-bit, grayscale
// or YCbCr 4:4:4 / 4:2:0, one interleaved scan, with or without restart markers) at 1/4 or 1/8
// of their size — what the loader asks for when it turns a multi-megapixel photo into a
// 224 px training image.
//
// Why not only libjpeg-turbo: at these scales two thirds of its decode is entropy (Huffman)
// decoding, which reads every bit of the file whatever the scale. Here one table lookup decodes
// a code together with its extra bits, and over half of the lookups two coefficients at once (a
// photograph's AC codes with their extra bits average about 5 bits; the table takes 11), the
// coefficient loop does not branch on what a lookup held, the bit buffer refills eight bytes at
// a time, and the reduced inverse DCTs and the colour conversion run on SSE2. A 3-megapixel
// photo at 1/4 decodes in about 0.7 of libjpeg-turbo's time (bench_image_pipeline
// BM_DecodeQuarterPhoto; tests/benchmarks/loader_vs_torchvision.sh for the whole loader).
//
// Its pixels are libjpeg-turbo's, bit for bit: the same reduced inverse DCTs (libjpeg's
// jidctred arithmetic), the same choice of per-component DCT size (chroma scaled up in the DCT
// rather than upsampled) and the same YCbCr->RGB arithmetic, so whichever decoder ran, a model
// sees the same image. test_data's JpegReducedDecode tests compare the two on every kind of
// file it accepts.
//
// Anything else — progressive or arithmetic coding, 12-bit, CMYK/Adobe, 4:2:2, several scans,
// other scales, and any damage (bad codes, a premature end, bytes between the data and a
// marker) — returns false, and the caller decodes with libjpeg-turbo, whose error messages and
// warnings then apply unchanged.
//
// decode_image uses it on x86-64 (SSE2), where it was measured; elsewhere it is as correct
// but unmeasured (libjpeg-turbo has NEON code on ARM), so libjpeg-turbo decodes there.

#include <opencv2/core/mat.hpp>

#include <cstddef>

namespace whisker::data {

// Decodes `size` bytes of a JPEG file into `rgb` (CV_8UC3, RGB order, not yet turned by EXIF
// orientation) at scale_num/8 of its size, scale_num 1 or 2. Returns false, with `rgb`
// unspecified, for anything it does not handle (see above). Thread-safe; allocates only `rgb`
// and per-call buffers.
bool decode_jpeg_reduced(const unsigned char* data, std::size_t size, int scale_num, cv::Mat& rgb);

}  // namespace whisker::data
