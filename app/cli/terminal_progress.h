#pragma once
// A one-line progress bar on stderr with rate and time left, redrawn at most every 200 ms.
// Thread-safe: update() may be called from worker threads.

#include "whisker/common/parallel.h"

#include <chrono>
#include <mutex>
#include <string>

namespace whisker::cli {

class TerminalProgress {
public:
    explicit TerminalProgress(bool enabled) : enabled_(enabled) {}
    ~TerminalProgress() { finish(); }
    void update(const Progress& p);
    void finish();
    ProgressFn callback() {
        return [this](const Progress& p) { update(p); };
    }

private:
    bool enabled_;
    bool drawn_ = false;
    std::mutex mutex_;
    std::string stage_;
    std::chrono::steady_clock::time_point stage_start_{};
    std::chrono::steady_clock::time_point last_draw_{};
};

std::string format_duration(double seconds);

}  // namespace whisker::cli
