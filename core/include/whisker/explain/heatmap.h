#pragma once
// Where the model looked, as plain values: what the workbench and the CLI draw. No tensors
// here (Qt files include this header); whisker/explain/gradcam.h computes them.
//
// Geometry. A heatmap covers the model's input: the validation transform's centre crop of
// the image (the shorter side scaled to the eval size, then a size x size crop), which can
// leave out the ends of the longer side. CropBox says where that square lies in the image as
// fractions of the decoded, upright image (EXIF orientation applied, as every view shows it),
// so a heatmap can be laid over the image at any display size:
//   pixel (x, y) of a W x H rendition is inside the crop when crop.x0*W <= x < crop.x1*W …,
//   and its heat is value_at((x/W - crop.x0) / crop.width(), (y/H - crop.y0) / crop.height()).

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace whisker::explain {

struct CropBox {
    double x0 = 0, y0 = 0, x1 = 1, y1 = 1;   // fractions of the image's width and height
    double width() const { return x1 - x0; }
    double height() const { return y1 - y0; }
};

// One class's Grad-CAM for one image.
struct Heatmap {
    int cls = -1;                   // the class explained (index into Dataset::classes)
    int width = 0, height = 0;      // the grid: the body output's resolution (7 x 7 for a ResNet at 224 px)
    // Row-major, width * height values in [0, 1]: the Grad-CAM divided by its largest value.
    // All zero when nothing in the image speaks for the class (peak 0).
    std::vector<float> values;
    double peak = 0;                // the largest value before that division (compare maps of one image)
    double probability = 0;         // the model's probability of `cls` on the plain (un-augmented) view
    bool empty() const { return values.empty(); }
    // Bilinear between the grid cells' centres (as an image upscaled with align_corners=false),
    // at fractions (fx, fy) in [0, 1] of the crop; 0 without values.
    float value_at(double fx, double fy) const;
    // The map resampled to cols x rows (bilinear, value_at at each pixel's centre), row-major.
    std::vector<float> resampled(int cols, int rows) const;
};

// The maps of one image, one per class asked for, in the order asked.
struct ImageExplanation {
    std::size_t record = 0;         // Dataset::images index
    CropBox crop;                   // where the maps lie in the image
    std::vector<Heatmap> maps;
    std::string error;              // non-empty: the image could not be read (no maps)
    const Heatmap* map_of(int cls) const {
        for (const auto& m : maps)
            if (m.cls == cls) return &m;
        return nullptr;
    }
};

// How heat looks, the same in the workbench and in the CLI's PNGs: Turbo (Google's rainbow
// colour map, dark blue -> green -> yellow -> dark red) for the colour, and a cover that grows
// with the heat (opacity * (0.3 + 0.7 v)) so that cold parts of the image stay readable.
std::array<unsigned char, 3> heat_colour(float v);   // RGB, v clamped to [0, 1]
inline double heat_cover(float v, double opacity) {
    const double t = v < 0 ? 0.0 : v > 1 ? 1.0 : static_cast<double>(v);
    return opacity * (0.3 + 0.7 * t);
}
// The part of the image the model did not see (outside the crop) is darkened by this much
// times the opacity.
constexpr double kUnseenShade = 0.6;

}  // namespace whisker::explain
