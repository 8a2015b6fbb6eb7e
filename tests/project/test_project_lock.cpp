// The project lock: who holds PROJECT/.whisker.lock, a second process refused with the holder's
// name, a killed holder's lock taken over, re-entrance within one process, and a worker that
// inherits its launcher's lock (WHISKER_PROJECT_LOCK_PARENT).
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/project/project_lock.h"
#include "whisker/common/local_time.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <ctime>
#include <poll.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::project;
using nlohmann::json;

namespace {

std::string lock_text(const fs::path& project) {
    const fs::path f = project / ProjectLock::kFileName;
    return fs::exists(f) ? read_file(f) : std::string();
}

std::string today() { return whisker::local_time_text("%Y-%m-%d"); }

// A forked process that takes the project's lock (as program `program`) and then sleeps until
// it is killed. Forked before the parent takes any lock on the project.
class LockingChild {
public:
    LockingChild(const fs::path& project, const std::string& program, const std::string& action) {
        int fds[2];
        if (pipe(fds) != 0) throw std::runtime_error("pipe");
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork");
        if (pid_ == 0) {
            ::close(fds[0]);
            char ok = '1';
            try {
                set_program_name(program);
                static ProjectLock held;   // kept until the process dies
                held = ProjectLock::acquire(project, action);
            } catch (...) {
                ok = '0';
            }
            if (write(fds[1], &ok, 1) != 1) _exit(3);
            if (ok != '1') _exit(2);
            for (;;) pause();
        }
        ::close(fds[1]);
        pollfd p{fds[0], POLLIN, 0};
        char c = 0;
        const bool ready = poll(&p, 1, 20000) == 1 && read(fds[0], &c, 1) == 1;
        ::close(fds[0]);
        if (!ready || c != '1') {
            kill_and_wait();
            throw std::runtime_error("the child process could not take the lock");
        }
    }
    ~LockingChild() { kill_and_wait(); }
    LockingChild(const LockingChild&) = delete;
    LockingChild& operator=(const LockingChild&) = delete;
    pid_t pid() const { return pid_; }
    void kill_and_wait() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
};

class ProjectLockTest : public ::testing::Test {
protected:
    void SetUp() override {
        ::unsetenv("WHISKER_PROJECT_LOCK_PARENT");
        set_program_name("lock-test");
    }
    void TearDown() override {
        ::unsetenv("WHISKER_PROJECT_LOCK_PARENT");
        set_program_name("");
    }
    test::TempDir dir_;
    fs::path project() const { return dir_ / "p"; }
};

}  // namespace

TEST_F(ProjectLockTest, AcquireWritesWhoHoldsItAndHolderReportsIt) {
    EXPECT_FALSE(ProjectLock::holder(project()).has_value());   // no project, no lock file
    {
        ProjectLock lock = ProjectLock::acquire(project(), "fit");   // creates the folder
        EXPECT_TRUE(lock.held());
        ASSERT_TRUE(fs::is_directory(project()));
        const json j = json::parse(lock_text(project()));
        EXPECT_EQ(j.at("program"), "lock-test");
        EXPECT_EQ(j.at("pid").get<long>(), static_cast<long>(getpid()));
        EXPECT_EQ(j.at("action"), "fit");
        const std::string since = j.at("since");
        ASSERT_EQ(since.size(), 19u) << since;   // "2026-12-01 10:31:05"
        EXPECT_EQ(since.substr(0, 10), today());

        const auto h = ProjectLock::holder(project());
        ASSERT_TRUE(h.has_value());
        EXPECT_EQ(h->program, "lock-test");
        EXPECT_EQ(h->pid, static_cast<long>(getpid()));
        EXPECT_EQ(h->action, "fit");
        EXPECT_EQ(h->since, since);
        EXPECT_TRUE(h->is_this_process());
        EXPECT_EQ(h->describe(), "lock-test fit (PID " + std::to_string(getpid()) + ") since " + since.substr(11, 5));
    }
    // Released: nobody holds it, and no holder text is left behind.
    EXPECT_FALSE(ProjectLock::holder(project()).has_value());
    EXPECT_TRUE(fs::exists(project() / ProjectLock::kFileName));
    EXPECT_EQ(fs::file_size(project() / ProjectLock::kFileName), 0u);
}

TEST_F(ProjectLockTest, DescribeNamesProgramActionPidAndTime) {
    LockHolder h;
    h.program = "whisker-cli";
    h.action = "fit";
    h.pid = 4242;
    h.since = today() + " 10:31:05";
    EXPECT_EQ(h.describe(), "whisker-cli fit (PID 4242) since 10:31");
    h.since = "2020-01-02 10:31:05";   // another day: the date too
    EXPECT_EQ(h.describe(), "whisker-cli fit (PID 4242) since 2020-01-02 10:31");
    h.host = "elsewhere.invalid";
    EXPECT_EQ(h.describe(), "whisker-cli fit (PID 4242 on elsewhere.invalid) since 2020-01-02 10:31");
    EXPECT_FALSE(h.is_this_process());
    LockHolder unnamed;
    unnamed.program = "another program";
    EXPECT_EQ(unnamed.describe(), "another program");
}

TEST_F(ProjectLockTest, AnotherProcessHoldingItIsNamedAndAKilledHolderIsTakenOver) {
    fs::create_directories(project());
    LockingChild child(project(), "whisker-cli", "fit");
    const std::string child_pid = std::to_string(child.pid());

    const auto h = ProjectLock::holder(project());
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->program, "whisker-cli");
    EXPECT_EQ(h->pid, static_cast<long>(child.pid()));
    EXPECT_EQ(h->action, "fit");
    EXPECT_FALSE(h->is_this_process());

    try {
        ProjectLock::acquire(project(), "prepare");
        FAIL() << "acquired a lock another process holds";
    } catch (const ProjectBusy& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("in use by"), std::string::npos) << what;
        EXPECT_NE(what.find("whisker-cli fit (PID " + child_pid + ")"), std::string::npos) << what;
        EXPECT_NE(e.hint().find(child_pid), std::string::npos) << e.hint();
        EXPECT_EQ(e.holder().pid, static_cast<long>(child.pid()));
    }
    // ProjectBusy is a UserError: callers that report UserErrors report it too.
    EXPECT_THROW(ProjectLock::acquire(project(), "prepare"), UserError);

    // kill -9: the kernel drops the flock; the leftover text names a dead process and is ignored.
    child.kill_and_wait();
    EXPECT_NE(lock_text(project()).find(child_pid), std::string::npos);
    EXPECT_FALSE(ProjectLock::holder(project()).has_value());
    ProjectLock lock = ProjectLock::acquire(project(), "prepare");
    EXPECT_TRUE(lock.held());
    const auto now = ProjectLock::holder(project());
    ASSERT_TRUE(now.has_value());
    EXPECT_TRUE(now->is_this_process());
    EXPECT_EQ(now->action, "prepare");
    EXPECT_EQ(lock_text(project()).find(child_pid), std::string::npos);
}

TEST_F(ProjectLockTest, ReentrantWithinOneProcess) {
    ProjectLock a = ProjectLock::acquire(project(), "fit");
    ProjectLock b = ProjectLock::acquire(project(), "mark");   // a second job of the same program
    EXPECT_TRUE(a.held());
    EXPECT_TRUE(b.held());
    // From another thread too (a training thread and the UI's thread).
    bool other_thread_ok = false;
    std::thread t([&] {
        try {
            ProjectLock c = ProjectLock::acquire(project(), "save");
            other_thread_ok = c.held();
        } catch (...) {
        }
    });
    t.join();
    EXPECT_TRUE(other_thread_ok);

    a.release();
    EXPECT_FALSE(a.held());
    auto h = ProjectLock::holder(project());
    ASSERT_TRUE(h.has_value());
    EXPECT_TRUE(h->is_this_process());
    EXPECT_EQ(h->action, "fit");   // the first job's description stays while any job holds it

    // Moving keeps it; releasing the last one frees it and truncates the holder text.
    ProjectLock moved = std::move(b);
    EXPECT_FALSE(b.held());
    EXPECT_TRUE(moved.held());
    EXPECT_TRUE(ProjectLock::holder(project()).has_value());
    moved.release();
    EXPECT_FALSE(ProjectLock::holder(project()).has_value());
    EXPECT_EQ(lock_text(project()), "");
    moved.release();   // twice is harmless

    // Move-assigning over a held lock releases the one it replaces.
    ProjectLock x = ProjectLock::acquire(project(), "fit");
    x = ProjectLock();
    EXPECT_FALSE(x.held());
    EXPECT_FALSE(ProjectLock::holder(project()).has_value());
}

TEST_F(ProjectLockTest, AWorkerInheritsItsLaunchersLock) {
    fs::create_directories(project());
    LockingChild launcher(project(), "whisker-cli", "fit");
    const std::string launcher_pid = std::to_string(launcher.pid());

    // Another parent's PID: still busy.
    ::setenv("WHISKER_PROJECT_LOCK_PARENT", std::to_string(launcher.pid() + 100000).c_str(), 1);
    EXPECT_THROW(ProjectLock::acquire(project(), "fit"), ProjectBusy);

    ::setenv("WHISKER_PROJECT_LOCK_PARENT", launcher_pid.c_str(), 1);
    {
        ProjectLock lock = ProjectLock::acquire(project(), "fit");
        EXPECT_TRUE(lock.held());
        // Re-entrant for the worker's other jobs too.
        ProjectLock again = ProjectLock::acquire(project(), "save");
        EXPECT_TRUE(again.held());
        // The launcher stays the holder the world sees.
        const auto h = ProjectLock::holder(project());
        ASSERT_TRUE(h.has_value());
        EXPECT_EQ(h->pid, static_cast<long>(launcher.pid()));
    }
    ::unsetenv("WHISKER_PROJECT_LOCK_PARENT");
    // The worker's release leaves the launcher's lock and its text alone.
    const auto h = ProjectLock::holder(project());
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->pid, static_cast<long>(launcher.pid()));
    EXPECT_NE(lock_text(project()).find(launcher_pid), std::string::npos);
    EXPECT_THROW(ProjectLock::acquire(project(), "fit"), ProjectBusy);
}

TEST_F(ProjectLockTest, AnUnwritableProjectIsAUserErrorNotBusy) {
    test::write_bytes(dir_ / "file", "not a folder");
    try {
        ProjectLock::acquire(dir_ / "file" / "p", "fit");
        FAIL() << "locked a project inside a file";
    } catch (const ProjectBusy&) {
        FAIL() << "a folder that cannot be created is not a busy project";
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("cannot lock the project"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(ProjectLock::holder(dir_ / "file" / "p").has_value());
}
