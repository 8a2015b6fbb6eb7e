#pragma once
// Local wall-clock time as text, for what users read: "2026-12-01 10:31:05" in checkpoints,
// locks and the submission history. Thread-safe.

#include <ctime>
#include <string>

namespace whisker {

// `t` (default: now) in the local time zone, formatted with strftime's `format`.
std::string local_time_text(const char* format = "%Y-%m-%d %H:%M:%S", std::time_t t = std::time(nullptr));

}  // namespace whisker
