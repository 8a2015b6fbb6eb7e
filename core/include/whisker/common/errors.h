#pragma once
// Error types shared by the whole core.
//
// Whisker distinguishes broken contracts (a programming error: std::logic_error and friends)
// from expected failures that a user can fix. The latter are UserError: its what() says what
// went wrong, naming the file or value, and hint() says what to do about it.

#include <stdexcept>
#include <string>

namespace whisker {

class UserError : public std::runtime_error {
public:
    UserError(const std::string& what, std::string hint = {})
        : std::runtime_error(what), hint_(std::move(hint)) {}
    // What the user should do next; may be empty.
    const std::string& hint() const noexcept { return hint_; }

private:
    std::string hint_;
};

// Thrown by long jobs when their cancel flag was set; callers treat it as "stopped", not failed.
class Cancelled : public std::runtime_error {
public:
    Cancelled() : std::runtime_error("cancelled") {}
};

}  // namespace whisker
