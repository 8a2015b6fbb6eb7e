#include "whisker/explain/render.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

namespace whisker::explain {

std::array<unsigned char, 3> heat_colour(float value) {
    // Turbo's polynomial approximation (Mikhailov, Google AI, 2019).
    const double v = std::clamp(static_cast<double>(value), 0.0, 1.0);
    const double r = 0.13572138 + v * (4.61539260 + v * (-42.66032258 + v * (132.13108234 + v * (-152.94239396 + v * 59.28637943))));
    const double g = 0.09140261 + v * (2.19418839 + v * (4.84296658 + v * (-14.18503333 + v * (4.27729857 + v * 2.82956604))));
    const double b = 0.10667330 + v * (12.64194608 + v * (-60.58204836 + v * (110.36276771 + v * (-89.90310912 + v * 27.34824973))));
    auto byte = [](double x) { return static_cast<unsigned char>(std::lround(std::clamp(x, 0.0, 1.0) * 255.0)); };
    return {byte(r), byte(g), byte(b)};
}

cv::Mat overlay_heatmap(const cv::Mat& rgb, const Heatmap& map, const CropBox& crop, double opacity) {
    CV_Assert(rgb.type() == CV_8UC3);
    opacity = std::clamp(opacity, 0.0, 1.0);
    cv::Mat out = rgb.clone();
    const int cols = rgb.cols, rows = rgb.rows;
    const int x0 = std::clamp(static_cast<int>(std::lround(crop.x0 * cols)), 0, cols);
    const int x1 = std::clamp(static_cast<int>(std::lround(crop.x1 * cols)), x0, cols);
    const int y0 = std::clamp(static_cast<int>(std::lround(crop.y0 * rows)), 0, rows);
    const int y1 = std::clamp(static_cast<int>(std::lround(crop.y1 * rows)), y0, rows);
    const std::vector<float> heat = map.resampled(x1 - x0, y1 - y0);
    const double unseen = 1.0 - kUnseenShade * opacity;
    for (int y = 0; y < rows; ++y) {
        auto* row = out.ptr<cv::Vec3b>(y);
        for (int x = 0; x < cols; ++x) {
            if (x < x0 || x >= x1 || y < y0 || y >= y1) {
                for (int k = 0; k < 3; ++k) row[x][k] = static_cast<unsigned char>(std::lround(row[x][k] * unseen));
                continue;
            }
            const float v = map.empty() ? 0.f : heat[static_cast<std::size_t>((y - y0) * (x1 - x0) + (x - x0))];
            const auto c = heat_colour(v);
            const double a = heat_cover(v, opacity);
            for (int k = 0; k < 3; ++k) row[x][k] = static_cast<unsigned char>(std::lround(row[x][k] * (1 - a) + c[static_cast<std::size_t>(k)] * a));
        }
    }
    if (x0 > 0 || y0 > 0 || x1 < cols || y1 < rows)
        cv::rectangle(out, cv::Rect(x0, y0, std::max(1, x1 - x0), std::max(1, y1 - y0)), cv::Scalar(255, 255, 255), 1);
    return out;
}

namespace {

constexpr int kPad = 8;
constexpr int kLine = 18;
constexpr double kFontScale = 0.45;

std::string ascii(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            out += static_cast<char>(c);
        } else {
            // One '?' per UTF-8 character (skip its continuation bytes).
            out += '?';
            while (i + 1 < s.size() && (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) ++i;
        }
    }
    return out;
}

// The caption cut with "..." to fit `width` px.
std::string fitted(std::string text, int width) {
    int base = 0;
    if (cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, kFontScale, 1, &base).width <= width) return text;
    while (!text.empty() && cv::getTextSize(text + "...", cv::FONT_HERSHEY_SIMPLEX, kFontScale, 1, &base).width > width) text.pop_back();
    return text + "...";
}

int columns_for(std::size_t n, const SheetLayout& layout) {
    if (layout.columns > 0) return layout.columns;
    const int c = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(std::max<std::size_t>(n, 1)))));
    return std::clamp(c, 1, 8);
}

}  // namespace

cv::Rect contact_sheet_tile(std::size_t i, std::size_t n, const SheetLayout& layout, int caption_lines) {
    const int columns = columns_for(n, layout);
    const int w = (layout.tile_width > 0 ? layout.tile_width : layout.tile_side) + 2 * kPad;
    const int h = layout.tile_side + 2 * kPad + caption_lines * kLine;
    return {static_cast<int>(i % static_cast<std::size_t>(columns)) * w, static_cast<int>(i / static_cast<std::size_t>(columns)) * h, w, h};
}

cv::Mat contact_sheet(const std::vector<SheetTile>& tiles, const SheetLayout& layout) {
    if (tiles.empty()) return cv::Mat(kPad * 2, kPad * 2, CV_8UC3, cv::Scalar(255, 255, 255));
    int lines = layout.caption_lines;
    if (lines <= 0)
        for (const auto& t : tiles) lines = std::max(lines, static_cast<int>(t.caption.size()));
    const int columns = columns_for(tiles.size(), layout);
    const int rows = static_cast<int>((tiles.size() + static_cast<std::size_t>(columns) - 1) / static_cast<std::size_t>(columns));
    const cv::Rect first = contact_sheet_tile(0, tiles.size(), layout, lines);
    cv::Mat sheet(rows * first.height, columns * first.width, CV_8UC3, cv::Scalar(255, 255, 255));
    const int side = layout.tile_side, width = layout.tile_width > 0 ? layout.tile_width : side;
    for (std::size_t i = 0; i < tiles.size(); ++i) {
        const cv::Rect cell = contact_sheet_tile(i, tiles.size(), layout, lines);
        const cv::Mat& img = tiles[i].image;
        if (!img.empty()) {
            const double s = std::min(static_cast<double>(width) / img.cols, static_cast<double>(side) / img.rows);
            const int w = std::max(1, static_cast<int>(std::lround(img.cols * s))), h = std::max(1, static_cast<int>(std::lround(img.rows * s)));
            cv::Mat fitted_img;
            cv::resize(img, fitted_img, cv::Size(w, h), 0, 0, s < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
            fitted_img.copyTo(sheet(cv::Rect(cell.x + kPad + (width - w) / 2, cell.y + kPad + (side - h) / 2, w, h)));
        }
        for (std::size_t l = 0; l < tiles[i].caption.size() && static_cast<int>(l) < lines; ++l) {
            const std::string text = fitted(ascii(tiles[i].caption[l]), width);
            cv::putText(sheet, text, cv::Point(cell.x + kPad, cell.y + kPad + side + kLine * static_cast<int>(l + 1) - 4),
                        cv::FONT_HERSHEY_SIMPLEX, kFontScale, l == 0 ? cv::Scalar(20, 20, 20) : cv::Scalar(80, 80, 80), 1, cv::LINE_AA);
        }
    }
    return sheet;
}

cv::Mat downscaled(const cv::Mat& rgb, int max_side) {
    const int longer = std::max(rgb.cols, rgb.rows);
    if (max_side <= 0 || longer <= max_side) return rgb;
    const double s = static_cast<double>(max_side) / longer;
    cv::Mat out;
    cv::resize(rgb, out, cv::Size(std::max(1, static_cast<int>(std::lround(rgb.cols * s))), std::max(1, static_cast<int>(std::lround(rgb.rows * s)))),
               0, 0, cv::INTER_AREA);
    return out;
}

void write_png(const std::filesystem::path& path, const cv::Mat& rgb) {
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    std::vector<unsigned char> buf;
    if (!cv::imencode(".png", bgr, buf)) throw UserError("cannot encode '" + path.string() + "' as PNG");
    write_file_atomically(path, std::string(reinterpret_cast<const char*>(buf.data()), buf.size()));
}

cv::Mat read_rgb(const std::filesystem::path& path) {
    cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_COLOR);
    if (bgr.empty()) return bgr;
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return rgb;
}

}  // namespace whisker::explain
