#include "whisker/common/local_time.h"

namespace whisker {

std::string local_time_text(const char* format, std::time_t t) {
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    const std::size_t n = std::strftime(buf, sizeof buf, format, &tm);
    return std::string(buf, n);
}

}  // namespace whisker
