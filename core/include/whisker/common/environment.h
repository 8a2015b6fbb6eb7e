#pragma once
// Reading environment variables (Whisker reads TORCH_HOME, XDG_*, KAGGLE_*, WHISKER_*).

#include <cstdlib>
#include <string>

namespace whisker {

// The variable's value, or "" when it is not set.
inline std::string environment_variable(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

}  // namespace whisker
