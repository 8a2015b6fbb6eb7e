// launch_local_workers: N processes with torchrun's variables on 127.0.0.1 (posix_spawn).
#include "whisker/train/distributed.h"

#include "whisker/common/errors.h"
#include "whisker/common/parallel.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace whisker::train {

namespace {

int free_local_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw UserError(std::string("cannot open a socket: ") + std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        const int err = errno;
        ::close(fd);
        throw UserError(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(err));
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

std::string describe_status(int rank, int world, int status) {
    if (WIFEXITED(status)) return fmt::format("rank {} of {} exited with code {}", rank, world, WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("rank {} of {} was killed by signal {}", rank, world, WTERMSIG(status));
    return fmt::format("rank {} of {} ended", rank, world);
}

int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

}  // namespace

LocalLaunchResult launch_local_workers(const LocalLaunchOptions& o) {
    if (o.nproc < 1) throw UserError("the number of processes must be at least 1");
    std::string exe = o.executable.string();
    if (exe.empty()) {
        char buf[4096];
        const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n <= 0) throw UserError("cannot find this program's path (/proc/self/exe)");
        exe.assign(buf, static_cast<std::size_t>(n));
    }
    const int port = o.master_port > 0 ? o.master_port : free_local_port();
    const int threads = o.threads_per_worker > 0 ? o.threads_per_worker : std::max(1, default_thread_count() / o.nproc);

    // The environment: ours without the group variables, then the group's.
    const char* group_vars[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RUN_ID",
                                "TORCHELASTIC_RESTART_COUNT", "WHISKER_LAUNCHED", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS",
                                "OMP_NUM_THREADS", "WHISKER_PROJECT_LOCK_PARENT"};
    std::vector<std::string> base;
    for (char** e = environ; e && *e; ++e) {
        const std::string kv = *e;
        const std::string key = kv.substr(0, kv.find('='));
        bool skip = false;
        for (const char* g : group_vars) skip = skip || key == g;
        if (!skip) base.push_back(kv);
    }
    // The caller's thread count, else the user's OMP_NUM_THREADS, else the cores / nproc.
    const char* omp = std::getenv("OMP_NUM_THREADS");
    base.push_back("OMP_NUM_THREADS=" + (o.threads_per_worker <= 0 && omp && *omp ? std::string(omp) : std::to_string(threads)));
    base.push_back("WORLD_SIZE=" + std::to_string(o.nproc));
    // The workers write the project under our lock (whisker/project/project_lock.h).
    base.push_back("WHISKER_PROJECT_LOCK_PARENT=" + std::to_string(getpid()));
    base.push_back("LOCAL_WORLD_SIZE=" + std::to_string(o.nproc));
    base.push_back("MASTER_ADDR=127.0.0.1");
    base.push_back("MASTER_PORT=" + std::to_string(port));
    base.push_back("WHISKER_LAUNCHED=" + std::to_string(::getpid()));

    std::vector<std::string> argv_s{exe};
    argv_s.insert(argv_s.end(), o.args.begin(), o.args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);

    struct Worker {
        pid_t pid = -1;
        bool running = false;
        int status = 0;
    };
    std::vector<Worker> workers(static_cast<std::size_t>(o.nproc));
    // The pipes read here: rank 0's stdout (on_output) and every rank's stderr (on_error).
    struct Stream {
        int fd = -1;
        int rank = 0;
        bool is_error = false;
        std::string pending;
    };
    std::vector<Stream> streams;
    auto kill_all = [&](int sig) {
        for (auto& w : workers)
            if (w.running) ::kill(w.pid, sig);
    };

    for (int r = 0; r < o.nproc; ++r) {
        std::vector<std::string> env_s = base;
        env_s.push_back("RANK=" + std::to_string(r));
        env_s.push_back("LOCAL_RANK=" + std::to_string(r));
        std::vector<char*> envp;
        for (auto& kv : env_s) envp.push_back(kv.data());
        envp.push_back(nullptr);

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        int pipe_fds[2] = {-1, -1}, err_fds[2] = {-1, -1};
        auto close_pipes = [&] {
            for (int fd : {pipe_fds[0], pipe_fds[1], err_fds[0], err_fds[1]})
                if (fd >= 0) ::close(fd);
        };
        if (r == 0 && o.on_output) {
            if (::pipe(pipe_fds) != 0) throw UserError(std::string("cannot create a pipe: ") + std::strerror(errno));
            posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], STDOUT_FILENO);
            posix_spawn_file_actions_addclose(&fa, pipe_fds[0]);
            posix_spawn_file_actions_addclose(&fa, pipe_fds[1]);
        } else if (r > 0) {
            posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        }
        if (o.on_error) {
            if (::pipe(err_fds) != 0) {
                close_pipes();
                throw UserError(std::string("cannot create a pipe: ") + std::strerror(errno));
            }
            posix_spawn_file_actions_adddup2(&fa, err_fds[1], STDERR_FILENO);
            posix_spawn_file_actions_addclose(&fa, err_fds[0]);
            posix_spawn_file_actions_addclose(&fa, err_fds[1]);
        }
        pid_t pid = -1;
        const int rc = ::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&fa);
        for (int* fd : {&pipe_fds[1], &err_fds[1]})
            if (*fd >= 0) {
                ::close(*fd);
                *fd = -1;
            }
        if (rc != 0) {
            close_pipes();
            kill_all(SIGKILL);
            for (auto& w : workers)
                if (w.running) ::waitpid(w.pid, nullptr, 0);
            for (auto& st : streams) ::close(st.fd);
            throw UserError(fmt::format("cannot start worker {} ({}): {}", r, exe, std::strerror(rc)));
        }
        if (pipe_fds[0] >= 0) streams.push_back({pipe_fds[0], r, false, {}});
        if (err_fds[0] >= 0) streams.push_back({err_fds[0], r, true, {}});
        workers[static_cast<std::size_t>(r)] = {pid, true, 0};
    }

    LocalLaunchResult result;
    using clock = std::chrono::steady_clock;
    std::optional<clock::time_point> deadline;   // set once a worker failed or a stop was asked
    bool stop_sent = false, killed = false;
    auto deliver = [&](Stream& st, const std::string& line) {
        if (st.is_error) o.on_error(st.rank, line);
        else o.on_output(line);
    };
    auto drain = [&](int timeout_ms) {
        if (streams.empty()) {
            if (timeout_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
            return;
        }
        std::vector<pollfd> fds;
        for (const auto& st : streams) fds.push_back({st.fd, POLLIN, 0});
        if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            Stream& st = streams[i];
            char buf[4096];
            const ssize_t n = ::read(st.fd, buf, sizeof buf);
            if (n <= 0) {
                ::close(st.fd);
                st.fd = -1;
                if (!st.pending.empty()) deliver(st, st.pending);
                st.pending.clear();
                continue;
            }
            st.pending.append(buf, static_cast<std::size_t>(n));
            std::size_t nl;
            while ((nl = st.pending.find('\n')) != std::string::npos) {
                deliver(st, st.pending.substr(0, nl));
                st.pending.erase(0, nl + 1);
            }
        }
        streams.erase(std::remove_if(streams.begin(), streams.end(), [](const Stream& st) { return st.fd < 0; }), streams.end());
    };
    for (;;) {
        bool any_running = false;
        for (std::size_t r = 0; r < workers.size(); ++r) {
            auto& w = workers[r];
            if (!w.running) continue;
            int status = 0;
            const pid_t got = ::waitpid(w.pid, &status, WNOHANG);
            if (got == w.pid) {
                w.running = false;
                w.status = status;
                const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                // The cause rather than a consequence: a worker that only lost its peer gives way
                // to one that was killed or failed by itself, even if it was reaped first.
                const bool peer_only = WIFEXITED(status) && WEXITSTATUS(status) == kPeerFailureExitCode;
                const bool replaces = result.failed_rank >= 0 && result.exit_code == kPeerFailureExitCode && !peer_only;
                if (!ok && (result.failed_rank < 0 || replaces) && !killed) {
                    result.failed_rank = static_cast<int>(r);
                    result.exit_code = exit_code_of(status);
                    result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
                    result.message = describe_status(static_cast<int>(r), o.nproc, status);
                    if (!deadline) deadline = clock::now() + o.kill_after;
                }
            } else {
                any_running = true;
            }
        }
        if (!any_running) break;
        if (o.stop && o.stop->load() && !stop_sent) {
            stop_sent = true;
            kill_all(SIGINT);
            if (!deadline) deadline = clock::now() + o.kill_after;
        }
        if (deadline && clock::now() > *deadline && !killed) {
            killed = true;
            kill_all(SIGKILL);
        }
        drain(100);
    }
    while (!streams.empty()) drain(100);
    if (killed && result.failed_rank < 0) {
        result.exit_code = 128 + SIGKILL;
        result.message = fmt::format("the workers did not stop within {} s and were killed",
                                     std::chrono::duration_cast<std::chrono::seconds>(o.kill_after).count());
    }
    return result;
}

}  // namespace whisker::train
