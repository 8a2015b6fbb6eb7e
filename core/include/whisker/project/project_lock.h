#pragma once
// Several programs, one project: an advisory lock that names who writes the project.
//
// Every job that writes a project's state (prepare, lr-find, fit, predict to a file, save,
// load, marks, submit) holds PROJECT/.whisker.lock for its duration: an flock(2) on the file,
// which holds who has it as JSON (program, PID, what it is doing, since when). A second writer
// — another whisker-cli, or the workbench — gets ProjectBusy naming the holder ("project is in
// use by whisker-cli fit (PID 4242) since 10:31"), never a silent overwrite. Readers (browsing,
// `data report`, looking at saved predictions) never take it.
//
// The kernel releases an flock when its process dies (even by kill -9), so a dead holder's
// lock is simply free: the next program takes it over, and its leftover text is ignored.
// Within one process the lock is shared: a job that already holds it (a training thread) does
// not block another of the same program (marking an image meanwhile); the program's own UI
// keeps such jobs apart. Processes a holder starts itself (data-parallel workers, via
// launch_local_workers) inherit its lock through WHISKER_PROJECT_LOCK_PARENT.
// Thread-safe.

#include "whisker/common/errors.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace whisker::project {

struct LockHolder {
    std::string program;       // "whisker-cli", "whisker"
    long pid = 0;
    std::string action;        // "fit", "prepare", "submit", …
    std::string since;         // local time it was taken, "2026-12-01 10:31:05"
    std::string host;
    // "whisker-cli fit (PID 4242) since 10:31"
    std::string describe() const;
    // Held by this very process (one of its own jobs).
    bool is_this_process() const;
};

// Thrown when another process holds the project. what(): "project … is in use by …".
class ProjectBusy : public UserError {
public:
    ProjectBusy(const std::filesystem::path& project, LockHolder holder);
    const LockHolder& holder() const { return holder_; }

private:
    LockHolder holder_;
};

// The name this program gives itself in locks it takes ("whisker-cli", "whisker"); set once
// at start-up. Default: the executable's file name.
void set_program_name(const std::string& name);

class ProjectLock {
public:
    static constexpr const char* kFileName = ".whisker.lock";

    // Takes the project's lock for `action` (the project folder is created when missing).
    // Throws ProjectBusy when another process holds it, UserError when the folder cannot be
    // written.
    static ProjectLock acquire(const std::filesystem::path& project, const std::string& action);
    // Who holds the project's lock now (this process included), or nothing. Never blocks.
    static std::optional<LockHolder> holder(const std::filesystem::path& project);

    ProjectLock() = default;
    ProjectLock(ProjectLock&&) noexcept;
    ProjectLock& operator=(ProjectLock&&) noexcept;
    ~ProjectLock();
    void release();
    bool held() const { return entry_ != nullptr; }

    struct Entry;   // one per locked project and process (project_lock.cpp)

private:
    std::shared_ptr<Entry> entry_;
};

}  // namespace whisker::project
