#pragma once
// Heatmaps drawn into images (OpenCV, no Qt): what `whisker-cli explain` writes.

#include "whisker/explain/heatmap.h"

#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace whisker::explain {

// `rgb` (8-bit RGB, the whole upright image) with `map` laid over the part the model saw
// (`crop`, heatmap.h), heat_colour/heat_cover at `opacity` in [0, 1]; the rest of the image
// darkened (kUnseenShade) and the crop outlined when it is not the whole image.
cv::Mat overlay_heatmap(const cv::Mat& rgb, const Heatmap& map, const CropBox& crop, double opacity = 0.5);

struct SheetTile {
    cv::Mat image;                      // 8-bit RGB, any size (fitted into the tile)
    std::vector<std::string> caption;   // lines under it (ASCII; other characters show as '?')
};

struct SheetLayout {
    int tile_side = 224;                // the image area of a tile: its height, px
    int tile_width = 0;                 // and its width (0: tile_side; e.g. 2 x for two maps side by side)
    int columns = 0;                    // 0: about square (ceil(sqrt(n)), at most 8)
    int caption_lines = 0;              // 0: the most lines any tile has
};
// The tiles on a grid, row by row, on white, each image fitted and centred in its area with
// its caption below. An empty list gives a small white image.
cv::Mat contact_sheet(const std::vector<SheetTile>& tiles, const SheetLayout& layout = {});
// Where a tile of the sheet lies (for tests): tile `i` of `n`.
cv::Rect contact_sheet_tile(std::size_t i, std::size_t n, const SheetLayout& layout, int caption_lines);

// The image shrunk (INTER_AREA) so that its longer side is at most `max_side`; as it is when
// it already fits.
cv::Mat downscaled(const cv::Mat& rgb, int max_side);

// Writes an 8-bit RGB image as PNG, atomically. UserError when it cannot be written.
void write_png(const std::filesystem::path& path, const cv::Mat& rgb);
// Reads a PNG/JPEG/… as 8-bit RGB (empty Mat when it cannot be read).
cv::Mat read_rgb(const std::filesystem::path& path);

}  // namespace whisker::explain
