#include "whisker/sample/sample_competition.h"

#include "whisker/common/archive.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/random.h"

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <cstdio>
#include <sstream>

namespace fs = std::filesystem;

namespace whisker::sample {

namespace {

constexpr double kPi = 3.14159265358979323846;

cv::Scalar rgb(double r, double g, double b) { return cv::Scalar(r, g, b); }

cv::Scalar shade(const cv::Scalar& c, double f) {
    return cv::Scalar(std::clamp(c[0] * f, 0.0, 255.0), std::clamp(c[1] * f, 0.0, 255.0), std::clamp(c[2] * f, 0.0, 255.0));
}

cv::Scalar random_colour(Rng& r) { return rgb(r.uniform(0, 255), r.uniform(0, 255), r.uniform(0, 255)); }

// Fur colours shared by both classes, so colour says nothing about the class.
cv::Scalar fur_colour(Rng& r) {
    static const double palette[][3] = {
        {35, 30, 28}, {240, 236, 228}, {200, 120, 50}, {150, 110, 80}, {120, 120, 125},
        {225, 190, 140}, {90, 60, 40}, {180, 170, 160}, {60, 55, 70}, {230, 160, 90}};
    const auto& p = palette[r.uniform_int(0, 9)];
    const double jitter = r.uniform(0.8, 1.15);
    return rgb(std::min(255.0, p[0] * jitter), std::min(255.0, p[1] * jitter), std::min(255.0, p[2] * jitter));
}

// Maps the animal's own coordinates (body length ~1, facing +x, y down) into the image.
struct Pose {
    double cx, cy, scale, angle;  // angle in radians
    bool mirror;

    cv::Point map(double x, double y) const {
        if (mirror) x = -x;
        const double c = std::cos(angle), s = std::sin(angle);
        return cv::Point(static_cast<int>(std::lround((cx + scale * (x * c - y * s)) * 16)),
                         static_cast<int>(std::lround((cy + scale * (x * s + y * c)) * 16)));
    }
    int len(double l) const { return std::max(1, static_cast<int>(std::lround(l * scale * 16))); }
    double deg(double local_deg) const { return (mirror ? -local_deg : local_deg) + angle * 180.0 / kPi; }
};
// Drawing in 1/16 pixel units (shift 4) gives smooth anti-aliased shapes.
constexpr int kShift = 4;

void ellipse(cv::Mat& img, const Pose& p, double x, double y, double a, double b, double ang, const cv::Scalar& col) {
    cv::ellipse(img, p.map(x, y), cv::Size(p.len(a), p.len(b)), p.deg(ang), 0, 360, col, cv::FILLED, cv::LINE_AA, kShift);
}
void polygon(cv::Mat& img, const Pose& p, std::initializer_list<std::pair<double, double>> pts, const cv::Scalar& col) {
    std::vector<cv::Point> v;
    for (auto [x, y] : pts) v.push_back(p.map(x, y));
    cv::fillConvexPoly(img, v, col, cv::LINE_AA, kShift);
}
void segment(cv::Mat& img, const Pose& p, double x0, double y0, double x1, double y1, double width, const cv::Scalar& col) {
    const int thickness = std::max(1, static_cast<int>(std::lround(width * p.scale)));
    cv::line(img, p.map(x0, y0), p.map(x1, y1), col, thickness, cv::LINE_AA, kShift);
}
// A smooth tail: a quadratic Bezier drawn as a thick polyline.
void curve(cv::Mat& img, const Pose& p, double x0, double y0, double xc, double yc, double x1, double y1, double width,
           const cv::Scalar& col) {
    std::vector<cv::Point> pts;
    for (int i = 0; i <= 16; ++i) {
        const double t = i / 16.0, u = 1 - t;
        pts.push_back(p.map(u * u * x0 + 2 * u * t * xc + t * t * x1, u * u * y0 + 2 * u * t * yc + t * t * y1));
    }
    const int thickness = std::max(1, static_cast<int>(std::lround(width * p.scale)));
    cv::polylines(img, pts, false, col, thickness, cv::LINE_AA, kShift);
}

void draw_background(cv::Mat& img, Rng& r) {
    const cv::Scalar top = random_colour(r), bottom = shade(random_colour(r), 0.8);
    const double horizon = r.uniform(0.4, 0.8);
    for (int y = 0; y < img.rows; ++y) {
        const double t = static_cast<double>(y) / img.rows;
        const double w = t < horizon ? t / horizon * 0.3 : 0.7 + 0.3 * (t - horizon) / (1 - horizon);
        img.row(y).setTo(top * (1 - w) + bottom * w);
    }
    const int clutter = static_cast<int>(r.uniform_int(1, 9));
    for (int i = 0; i < clutter; ++i) {
        const cv::Scalar col = random_colour(r);
        const cv::Point c(static_cast<int>(r.uniform(0, img.cols)), static_cast<int>(r.uniform(0, img.rows)));
        const int s = static_cast<int>(r.uniform(0.03, 0.2) * std::min(img.cols, img.rows)) + 2;
        switch (r.uniform_int(0, 3)) {
            case 0: cv::rectangle(img, cv::Rect(c.x - s, c.y - s / 2, 2 * s, s), col, cv::FILLED, cv::LINE_AA); break;
            case 1: cv::circle(img, c, s, col, cv::FILLED, cv::LINE_AA); break;
            case 2: cv::line(img, c, c + cv::Point(static_cast<int>(r.uniform(-3, 3) * s), static_cast<int>(r.uniform(-3, 3) * s)),
                             col, static_cast<int>(r.uniform(1, 6)), cv::LINE_AA); break;
            default: cv::ellipse(img, c, cv::Size(s, s / 3 + 1), r.uniform(0, 180), 0, 360, col, cv::FILLED, cv::LINE_AA); break;
        }
    }
}

void draw_pattern(cv::Mat& img, const Pose& p, Rng& r, const cv::Scalar& fur) {
    const int kind = static_cast<int>(r.uniform_int(0, 3));  // 0 plain, 1 stripes, 2 spots, 3 patches
    const cv::Scalar mark = shade(fur, r.bernoulli(0.5) ? 0.55 : 1.45);
    if (kind == 1) {
        for (double x = -0.4; x < 0.4; x += r.uniform(0.07, 0.12)) segment(img, p, x, -0.18, x + 0.03, 0.1, 0.025, mark);
    } else if (kind == 2) {
        const int n = static_cast<int>(r.uniform_int(4, 10));
        for (int i = 0; i < n; ++i) ellipse(img, p, r.uniform(-0.4, 0.4), r.uniform(-0.15, 0.12), r.uniform(0.02, 0.05), r.uniform(0.02, 0.04), 0, mark);
    } else if (kind == 3) {
        ellipse(img, p, r.uniform(-0.3, 0.3), r.uniform(-0.1, 0.05), r.uniform(0.08, 0.18), r.uniform(0.06, 0.12), r.uniform(0, 180), mark);
    }
}

}  // namespace

cv::Mat draw_animal(bool dog, std::uint64_t seed, cv::Rect* animal_box) {
    Rng r(seed);
    const int w = static_cast<int>(r.uniform_int(150, 500));
    int h = static_cast<int>(std::lround(w / r.uniform(0.6, 1.7)));
    h = std::clamp(h, 150, 500);
    cv::Mat img(h, w, CV_8UC3);
    draw_background(img, r);
    const cv::Mat background = animal_box ? img.clone() : cv::Mat();

    const double body_len = r.uniform(0.45, 0.7) * std::min(w, h) * (dog ? 1.05 : 0.95);
    Pose p{r.uniform(0.35, 0.65) * w, r.uniform(0.4, 0.6) * h, body_len, r.uniform(-0.45, 0.45), r.bernoulli(0.5)};
    const cv::Scalar fur = fur_colour(r);
    const cv::Scalar dark = shade(fur, 0.6);

    // Overlapping cues: each class usually has its own, sometimes the other's.
    const bool pointed_ears = dog ? r.bernoulli(0.1) : !r.bernoulli(0.08);
    const double snout = dog ? r.uniform(0.14, 0.3) : r.uniform(0.02, 0.12);
    const bool long_tail = dog ? r.bernoulli(0.12) : !r.bernoulli(0.12);
    const double leg_w = dog ? r.uniform(0.06, 0.1) : r.uniform(0.045, 0.08);
    const double body_h = dog ? r.uniform(0.2, 0.3) : r.uniform(0.14, 0.23);
    const double head_r = r.uniform(0.13, 0.2);
    const double hx = 0.5 + r.uniform(-0.02, 0.06), hy = -0.2 - r.uniform(0.0, 0.12);

    // Tail (behind the body).
    const double tail_w = long_tail ? r.uniform(0.03, 0.05) : r.uniform(0.05, 0.08);
    if (long_tail)
        curve(img, p, -0.45, -0.05, -0.75, r.uniform(-0.1, 0.2), -0.7, r.uniform(-0.6, -0.35), tail_w, fur);
    else
        curve(img, p, -0.45, -0.08, -0.58, -0.2, -0.55 - r.uniform(0, 0.1), -0.35 - r.uniform(0, 0.1), tail_w, fur);
    // Legs, body, neck.
    for (double lx : {-0.36, -0.24, 0.24, 0.36}) {
        const double step = r.uniform(-0.06, 0.06);
        segment(img, p, lx, 0.05, lx + step, dog ? 0.55 : 0.45, leg_w, lx < 0 ? shade(fur, 0.9) : fur);
        ellipse(img, p, lx + step + 0.02, dog ? 0.55 : 0.45, leg_w * 0.8, leg_w * 0.4, 0, dark);
    }
    ellipse(img, p, 0, 0, 0.5, body_h, 0, fur);
    draw_pattern(img, p, r, fur);
    ellipse(img, p, 0.4, -0.1, 0.14, 0.12, -40, fur);
    // Ears behind or beside the head.
    if (pointed_ears) {
        polygon(img, p, {{hx - 0.15, hy - 0.06}, {hx - 0.1, hy - head_r - 0.22}, {hx - 0.0, hy - 0.12}}, fur);
        polygon(img, p, {{hx + 0.02, hy - 0.12}, {hx + 0.08, hy - head_r - 0.2}, {hx + 0.14, hy - 0.05}}, fur);
        polygon(img, p, {{hx - 0.11, hy - 0.1}, {hx - 0.09, hy - head_r - 0.11}, {hx - 0.04, hy - 0.12}}, rgb(230, 160, 170));
    }
    ellipse(img, p, hx, hy, head_r, head_r * r.uniform(0.85, 1.0), 0, fur);
    if (!pointed_ears) {
        // Floppy ears hanging down the side of the head.
        ellipse(img, p, hx - 0.07, hy + 0.08, r.uniform(0.07, 0.1), head_r * r.uniform(1.2, 1.6), r.uniform(5, 25), shade(fur, 0.45));
    }
    // Snout and nose.
    const double sx = hx + head_r * 0.6 + snout * 0.5, sy = hy + head_r * 0.3;
    ellipse(img, p, sx, sy, snout * 0.7 + 0.03, r.uniform(0.045, 0.07), r.uniform(-5, 15), shade(fur, 1.1));
    const double nose_x = sx + snout * 0.6 + 0.02;
    if (dog) ellipse(img, p, nose_x, sy - 0.015, r.uniform(0.025, 0.04), 0.025, 0, rgb(20, 15, 15));
    else polygon(img, p, {{nose_x - 0.03, sy - 0.03}, {nose_x + 0.01, sy - 0.03}, {nose_x - 0.01, sy}}, rgb(220, 120, 130));
    if (dog && r.bernoulli(0.4)) ellipse(img, p, sx, sy + 0.06, 0.03, 0.04, 0, rgb(225, 90, 110));  // tongue
    // Eyes: cats' slit pupils in green/yellow irises, dogs' round dark eyes.
    const double ex = hx + head_r * 0.35, ey = hy - head_r * 0.25;
    if (!dog || r.bernoulli(0.1)) {
        ellipse(img, p, ex, ey, 0.035, 0.028, 0, r.bernoulli(0.5) ? rgb(120, 200, 60) : rgb(220, 200, 40));
        ellipse(img, p, ex, ey, 0.008, 0.026, 0, rgb(10, 10, 10));
    } else {
        ellipse(img, p, ex, ey, 0.03, 0.03, 0, rgb(40, 25, 15));
        ellipse(img, p, ex + 0.008, ey - 0.008, 0.008, 0.008, 0, rgb(240, 240, 240));
    }
    // Whiskers (cats, and a few scruffy dogs).
    if (!dog ? !r.bernoulli(0.1) : r.bernoulli(0.15)) {
        const cv::Scalar wc = r.bernoulli(0.5) ? rgb(245, 245, 245) : rgb(30, 30, 30);
        for (int k = -1; k <= 1; ++k) segment(img, p, nose_x - 0.03, sy, nose_x + 0.15, sy + 0.04 * k - 0.01, 0.006, wc);
    }
    if (animal_box) {
        cv::Mat changed;
        cv::absdiff(img, background, changed);
        cv::cvtColor(changed, changed, cv::COLOR_RGB2GRAY);
        std::vector<cv::Point> points;
        cv::findNonZero(changed, points);
        *animal_box = points.empty() ? cv::Rect() : cv::boundingRect(points);
    }
    // Foreground occluders, blur, noise.
    if (r.bernoulli(0.2)) {
        const int n = static_cast<int>(r.uniform_int(1, 2));
        for (int i = 0; i < n; ++i) {
            const cv::Point c(static_cast<int>(r.uniform(0, w)), static_cast<int>(r.uniform(0, h)));
            const int s = static_cast<int>(r.uniform(0.04, 0.12) * std::min(w, h)) + 2;
            cv::circle(img, c, s, random_colour(r), cv::FILLED, cv::LINE_AA);
        }
    }
    if (r.bernoulli(0.4)) {
        const double sigma = r.uniform(0.5, 1.6);
        cv::GaussianBlur(img, img, cv::Size(0, 0), sigma);
    }
    const double noise = r.uniform(0, 10);
    if (noise > 1) {
        for (int y = 0; y < h; ++y) {
            auto* row = img.ptr<cv::Vec3b>(y);
            for (int x = 0; x < w; ++x)
                for (int k = 0; k < 3; ++k)
                    row[x][k] = cv::saturate_cast<uchar>(row[x][k] + noise * r.normal());
        }
    }
    return img;
}

void write_sample_competition(const fs::path& dir, const SampleOptions& o) {
    if (o.train_images < 2) throw UserError("the sample needs at least 2 training images (one per class)");
    if (o.test_images < 0) throw UserError("the number of test images cannot be negative");
    struct Job { std::string name; bool dog; std::uint64_t seed; int quality; cv::Rect box; };
    std::vector<Job> train_jobs, test_jobs;
    const int cats = (o.train_images + 1) / 2, dogs = o.train_images / 2;
    for (int i = 0; i < cats; ++i) train_jobs.push_back({fmt::format("train/cat.{}.jpg", i), false, derive_seed(o.seed, 1, i), 0, {}});
    for (int i = 0; i < dogs; ++i) train_jobs.push_back({fmt::format("train/dog.{}.jpg", i), true, derive_seed(o.seed, 2, i), 0, {}});
    Rng label_rng(derive_seed(o.seed, 3));
    for (int i = 1; i <= o.test_images; ++i)
        test_jobs.push_back({fmt::format("test/{}.jpg", i), label_rng.bernoulli(0.5), derive_seed(o.seed, 4, i), 0, {}});

    std::vector<Job*> all;
    for (auto& j : train_jobs) all.push_back(&j);
    for (auto& j : test_jobs) all.push_back(&j);
    std::vector<std::string> jpegs(all.size());
    std::atomic<std::uint64_t> done{0};
    parallel_for(all.size(), o.threads, [&](std::size_t i) {
        Job& job = *all[i];
        const cv::Mat rgb_img = draw_animal(job.dog, job.seed, &job.box);
        cv::Mat bgr;
        cv::cvtColor(rgb_img, bgr, cv::COLOR_RGB2BGR);
        Rng q(derive_seed(job.seed, 99));
        std::vector<unsigned char> buf;
        cv::imencode(".jpg", bgr, buf, {cv::IMWRITE_JPEG_QUALITY, static_cast<int>(q.uniform_int(70, 95))});
        jpegs[i].assign(reinterpret_cast<const char*>(buf.data()), buf.size());
        const auto n = ++done;
        if (o.progress && (n % 32 == 0 || n == all.size())) o.progress({"drawing sample images", n, all.size()});
    }, o.cancel);

    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw UserError("cannot create '" + dir.string() + "': " + ec.message());
    {
        ZipWriter train(dir / "train.zip");
        for (std::size_t i = 0; i < train_jobs.size(); ++i) train.add(train_jobs[i].name, jpegs[i]);
        train.commit();
    }
    {
        ZipWriter test(dir / "test.zip");
        for (std::size_t i = 0; i < test_jobs.size(); ++i) test.add(test_jobs[i].name, jpegs[train_jobs.size() + i]);
        test.commit();
    }
    std::string submission = "id,label\n", solution = "id,label\n";
    for (int i = 1; i <= o.test_images; ++i) {
        submission += fmt::format("{},0.5\n", i);
        solution += fmt::format("{},{}\n", i, test_jobs[static_cast<std::size_t>(i - 1)].dog ? 1 : 0);
    }
    write_file_atomically(dir / "sample_submission.csv", submission);
    write_file_atomically(dir / "sample_solution.csv", solution);
    std::string boxes = "file,x0,y0,x1,y1\n";
    for (const Job* job : all)
        boxes += fmt::format("{},{},{},{},{}\n", job->name, job->box.x, job->box.y, job->box.x + job->box.width,
                             job->box.y + job->box.height);
    write_file_atomically(dir / "sample_boxes.csv", boxes);
}

std::map<std::string, cv::Rect> read_sample_boxes(const fs::path& dir) {
    const fs::path file = dir / "sample_boxes.csv";
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
        throw UserError("'" + file.string() + "' does not exist", "write the sample again with 'whisker-cli sample DIR'");
    std::map<std::string, cv::Rect> out;
    std::istringstream in(read_file(file));
    std::string line;
    std::getline(in, line);   // the header
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto comma = line.find(',');
        int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
        if (comma == std::string::npos ||
            std::sscanf(line.c_str() + comma + 1, "%d,%d,%d,%d", &x0, &y0, &x1, &y1) != 4 || x1 < x0 || y1 < y0)
            throw UserError("'" + file.string() + "' has a damaged line: " + line, "write the sample again");
        out[line.substr(0, comma)] = cv::Rect(x0, y0, x1 - x0, y1 - y0);
    }
    return out;
}

}  // namespace whisker::sample
