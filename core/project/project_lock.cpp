#include "whisker/project/project_lock.h"

#include "whisker/common/local_time.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sys/file.h>
#include <unistd.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::project {

namespace {

std::mutex g_mutex;
std::string g_program;

std::string program_name() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_program.empty()) return g_program;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("whisker") : exe.filename().string();
}

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return {};
    return buf;
}

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    off_t offset = 0;
    for (;;) {
        const ssize_t n = pread(fd, buf, sizeof buf, offset);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        offset += n;
    }
    return out;
}

LockHolder parse_holder(const std::string& text) {
    LockHolder h;
    h.program = "another program";
    try {
        const json j = json::parse(text);
        h.program = j.value("program", h.program);
        h.pid = j.value("pid", 0L);
        h.action = j.value("action", "");
        h.since = j.value("since", "");
        h.host = j.value("host", "");
    } catch (const json::exception&) {
        // Written a moment ago and not yet complete, or not ours: the holder stays unnamed.
    }
    return h;
}

fs::path lock_path(const fs::path& project) {
    std::error_code ec;
    const fs::path p = fs::weakly_canonical(fs::absolute(project, ec), ec);
    return (ec ? project : p) / ProjectLock::kFileName;
}

}  // namespace

std::string LockHolder::describe() const {
    std::string s = program;
    if (!action.empty()) s += " " + action;
    if (pid > 0) s += " (PID " + std::to_string(pid) + (host.empty() || host == host_name() ? "" : " on " + host) + ")";
    if (since.size() >= 16) {
        // Today: the time alone; another day: the date too.
        s += " since " + (since.compare(0, 10, local_time_text("%Y-%m-%d")) == 0 ? since.substr(11, 5) : since.substr(0, 16));
    }
    return s;
}

bool LockHolder::is_this_process() const { return pid == static_cast<long>(getpid()) && (host.empty() || host == host_name()); }

ProjectBusy::ProjectBusy(const fs::path& project, LockHolder holder)
    : UserError("project " + project.string() + " is in use by " + holder.describe(),
                "wait until it finishes, or stop it" + std::string(holder.pid > 0 ? " (PID " + std::to_string(holder.pid) + ")" : "") +
                    "; reading the project (browsing, data report) works meanwhile"),
      holder_(std::move(holder)) {}

void set_program_name(const std::string& name) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_program = name;
}

// One per locked project and process, shared by the jobs of this process that hold it.
struct ProjectLock::Entry {
    fs::path path;
    int fd = -1;           // -1: inherited from the parent process, which holds the flock
    ~Entry() {
        if (fd < 0) return;
        // Leave no holder behind (the file itself stays: removing a locked file races).
        if (ftruncate(fd, 0) != 0) {
        }
        ::close(fd);   // releases the flock
    }
};

namespace {
std::map<fs::path, std::weak_ptr<ProjectLock::Entry>>& registry() {
    static std::map<fs::path, std::weak_ptr<ProjectLock::Entry>> r;
    return r;
}
}  // namespace

ProjectLock ProjectLock::acquire(const fs::path& project, const std::string& action) {
    std::error_code ec;
    fs::create_directories(project, ec);
    const fs::path path = lock_path(project);
    const std::string program = program_name();
    std::lock_guard<std::mutex> guard(g_mutex);
    ProjectLock lock;
    if (auto live = registry()[path].lock()) {
        lock.entry_ = std::move(live);
        return lock;
    }
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        throw UserError("cannot lock the project: " + path.string() + ": " + std::strerror(errno),
                        "check that the project folder exists and is writable");
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        LockHolder h = parse_holder(read_all(fd));
        ::close(fd);
        if (err != EWOULDBLOCK) throw UserError("cannot lock the project: " + path.string() + ": " + std::strerror(err));
        // A process we started (a data-parallel worker) works under our lock.
        const char* parent = std::getenv("WHISKER_PROJECT_LOCK_PARENT");
        if (parent && h.pid > 0 && std::to_string(h.pid) == parent) {
            auto entry = std::make_shared<Entry>();
            entry->path = path;
            registry()[path] = entry;
            lock.entry_ = std::move(entry);
            return lock;
        }
        throw ProjectBusy(project, std::move(h));
    }
    const std::string text = json{{"program", program}, {"pid", static_cast<long>(getpid())}, {"action", action},
                                  {"since", local_time_text()}, {"host", host_name()}}
                                 .dump() +
                             "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
        // The lock itself is held; only its description could not be written (disk full).
    }
    auto entry = std::make_shared<Entry>();
    entry->path = path;
    entry->fd = fd;
    registry()[path] = entry;
    lock.entry_ = std::move(entry);
    return lock;
}

std::optional<LockHolder> ProjectLock::holder(const fs::path& project) {
    const fs::path path = lock_path(project);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::optional<LockHolder> out;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
    } else if (errno == EWOULDBLOCK) {
        out = parse_holder(read_all(fd));
    }
    ::close(fd);
    return out;
}

ProjectLock::ProjectLock(ProjectLock&& o) noexcept : entry_(std::move(o.entry_)) {}

ProjectLock& ProjectLock::operator=(ProjectLock&& o) noexcept {
    if (this != &o) {
        release();
        entry_ = std::move(o.entry_);
    }
    return *this;
}

ProjectLock::~ProjectLock() { release(); }

void ProjectLock::release() {
    if (!entry_) return;
    std::lock_guard<std::mutex> guard(g_mutex);
    entry_.reset();   // the last holder in this process closes the file, releasing the flock
}

}  // namespace whisker::project
