#include "terminal_progress.h"

#include <fmt/format.h>

#include <cstdio>
#include <unistd.h>

namespace whisker::cli {

std::string format_duration(double s) {
    if (s < 0 || s > 1e7) return "--:--";
    const auto t = static_cast<long>(s + 0.5);
    if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
    return fmt::format("{:02}:{:02}", t / 60, t % 60);
}

void TerminalProgress::update(const Progress& p) {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (p.stage != stage_) {
        if (drawn_) std::fputc('\n', stderr);
        stage_ = p.stage;
        stage_start_ = now;
        last_draw_ = {};
    }
    const bool last = p.total > 0 && p.done >= p.total;
    if (!last && now - last_draw_ < std::chrono::milliseconds(200)) return;
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - stage_start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(p.done) / elapsed : 0.0;
    std::string line;
    if (p.total > 0) {
        const double frac = static_cast<double>(p.done) / static_cast<double>(p.total);
        const int width = 30, filled = static_cast<int>(frac * width);
        const double left = rate > 0 ? static_cast<double>(p.total - p.done) / rate : -1;
        line = fmt::format("{:<28.28} [{}{}] {:3.0f}% {}/{} {:.0f}/s, {} left", p.stage, std::string(filled, '#'),
                           std::string(width - filled, '.'), frac * 100, p.done, p.total, rate, format_duration(left));
    } else {
        line = fmt::format("{:<28.28} {} ({:.0f}/s)", p.stage, p.done, rate);
    }
    std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
}

void TerminalProgress::finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
    stage_.clear();
}

}  // namespace whisker::cli
