// Process groups on c10d (TCPStore rendezvous; Gloo or NCCL), collectives with errors that
// name the rank and the timeout, and DDP-style bucketed gradient averaging.
#include "whisker/train/distributed.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/parallel.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#if defined(USE_DISTRIBUTED)
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if defined(USE_C10D_GLOO) && defined(WHISKER_HAVE_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define WHISKER_GLOO 1
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define WHISKER_NCCL 1
#endif
#endif

#ifdef WHISKER_HAVE_CUDA_RUNTIME
#include <cuda_runtime_api.h>
#endif

#include <fmt/format.h>

#ifdef __linux__
#include <csignal>
#include <sys/prctl.h>
#include <unistd.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#define WHISKER_LIVENESS_PROBE 1
#endif

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

namespace whisker::train {

namespace {

std::optional<std::string> env_value(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    return std::string(v);
}

int env_int(const char* name, const std::string& value) {
    try {
        std::size_t used = 0;
        const int v = std::stoi(value, &used);
        if (used != value.size()) throw std::invalid_argument(value);
        return v;
    } catch (const std::exception&) {
        throw UserError(std::string("the environment variable ") + name + "='" + value + "' is not a whole number");
    }
}

// The first host of a SLURM node list: "gpu[003-004,007],cpu1" -> "gpu003".
std::string first_slurm_host(const std::string& list) {
    std::string host;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const char c = list[i];
        if (c == ',') break;
        if (c == '[') {
            std::size_t j = i + 1;
            while (j < list.size() && list[j] != '-' && list[j] != ',' && list[j] != ']') host += list[j++];
            break;
        }
        host += c;
    }
    return host;
}

// The message of an exception from LibTorch or Gloo, without LibTorch's C++ stack trace.
[[maybe_unused]] std::string short_message(const std::exception& e) {
    std::string m;
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) m = ce->what_without_backtrace();
    else m = e.what();
    const auto cut = m.find("\nException raised from");
    if (cut != std::string::npos) m.resize(cut);
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
}

// ---- Liveness probe ----
// Gloo's "Timed out waiting 5000ms for recv operation to complete" names no rank, and with more
// than two ranks nothing else says which one went away. So every rank listens on a TCP port of
// its own that it never accepts on: while the process lives (however hung) the kernel completes
// connections to it, once the process has ended they are refused, and when its host or the
// network is down nothing answers. fail() knocks on every peer's port that way.

// What the probe found out about a peer.
enum class PeerState { Unknown, Alive, Ended, Unreachable };

// "rank 2", "ranks 0 and 1", "ranks 0, 1 and 3".
std::string rank_names(const std::vector<int>& ranks) {
    if (ranks.size() == 1) return fmt::format("rank {}", ranks[0]);
    std::string out = "ranks ";
    for (std::size_t i = 0; i < ranks.size(); ++i) {
        if (i > 0) out += i + 1 == ranks.size() ? " and " : ", ";
        out += std::to_string(ranks[i]);
    }
    return out;
}

#ifdef WHISKER_LIVENESS_PROBE
// The IPv4 address (network order) other hosts reach this one at: GLOO_SOCKET_IFNAME's (the
// interface Gloo talks on), else the local address of a UDP socket "connected" to MASTER_ADDR
// (the route's source address; no packet is sent). nullopt when neither works.
std::optional<std::uint32_t> reachable_address(const std::string& master_addr) {
    if (auto names = env_value("GLOO_SOCKET_IFNAME")) {
        const std::string name = names->substr(0, names->find(','));
        ifaddrs* list = nullptr;
        if (::getifaddrs(&list) == 0) {
            std::optional<std::uint32_t> found;
            for (ifaddrs* a = list; a && !found; a = a->ifa_next)
                if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && a->ifa_name && name == a->ifa_name)
                    found = reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr;
            ::freeifaddrs(list);
            if (found) return found;
        }
    }
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(master_addr.c_str(), "9", &hints, &res) != 0 || !res) return std::nullopt;
    std::optional<std::uint32_t> found;
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        sockaddr_in local{};
        socklen_t len = sizeof local;
        if (::connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 && local.sin_addr.s_addr != htonl(INADDR_ANY))
            found = local.sin_addr.s_addr;
        ::close(fd);
    }
    ::freeaddrinfo(res);
    return found;
}

// A listening TCP socket on every interface, on a free port (written to `port`); -1 on failure.
int open_liveness_listener(std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        return -1;
    }
    port = ntohs(a.sin_port);
    return fd;
}

// "10.1.2.3:45678" -> sockaddr_in (nullopt if malformed).
std::optional<sockaddr_in> parse_endpoint(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    if (::inet_pton(AF_INET, text.substr(0, colon).c_str(), &a.sin_addr) != 1) return std::nullopt;
    try {
        const int port = std::stoi(text.substr(colon + 1));
        if (port <= 0 || port > 65535) return std::nullopt;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
    } catch (const std::exception&) {
        return std::nullopt;
    }
    return a;
}

PeerState state_of_connect_error(int error) {
    switch (error) {
    case 0: return PeerState::Alive;
    case ECONNREFUSED: return PeerState::Ended;
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
#ifdef EHOSTDOWN
    case EHOSTDOWN:
#endif
        return PeerState::Unreachable;
    default: return PeerState::Unknown;
    }
}

// Connects to every peer at once (non-blocking) and waits at most `budget` for the answers.
// Never throws, never blocks longer than the budget; closes every socket it opened.
std::vector<PeerState> probe_peers(const std::vector<std::optional<sockaddr_in>>& peers, std::chrono::milliseconds budget) {
    std::vector<PeerState> state(peers.size(), PeerState::Unknown);
    std::vector<pollfd> pending;
    std::vector<std::size_t> who;
    for (std::size_t i = 0; i < peers.size(); ++i) {
        if (!peers[i]) continue;
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) continue;
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&*peers[i]), sizeof(sockaddr_in)) == 0) {
            state[i] = PeerState::Alive;
            ::close(fd);
        } else if (errno == EINPROGRESS || errno == EINTR) {
            pending.push_back(pollfd{fd, POLLOUT, 0});
            who.push_back(i);
        } else {
            state[i] = state_of_connect_error(errno);
            ::close(fd);
        }
    }
    const auto deadline = std::chrono::steady_clock::now() + budget;
    while (!pending.empty()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        const int ready = ::poll(pending.data(), static_cast<nfds_t>(pending.size()), static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) break;
        for (std::size_t k = pending.size(); k-- > 0;) {
            if (pending[k].revents == 0) continue;
            int error = 0;
            socklen_t len = sizeof error;
            if (::getsockopt(pending[k].fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
            state[who[k]] = state_of_connect_error(error);
            ::close(pending[k].fd);
            pending.erase(pending.begin() + static_cast<long>(k));
            who.erase(who.begin() + static_cast<long>(k));
        }
    }
    // No answer within the budget: the SYN went nowhere.
    for (std::size_t k = 0; k < pending.size(); ++k) {
        state[who[k]] = PeerState::Unreachable;
        ::close(pending[k].fd);
    }
    return state;
}
#endif

}  // namespace

std::optional<DistributedEnv> distributed_env_from_environment() {
    DistributedEnv e;
    if (auto rank = env_value("RANK"), world = env_value("WORLD_SIZE"); rank && world) {
        e.source = env_value("TORCHELASTIC_RUN_ID") ? "torchrun" : (env_value("WHISKER_LAUNCHED") ? "whisker" : "torchrun");
        e.rank = env_int("RANK", *rank);
        e.world_size = env_int("WORLD_SIZE", *world);
        if (auto v = env_value("LOCAL_RANK")) e.local_rank = env_int("LOCAL_RANK", *v);
        e.local_world_size = e.world_size;
        if (auto v = env_value("LOCAL_WORLD_SIZE")) e.local_world_size = env_int("LOCAL_WORLD_SIZE", *v);
        e.master_addr = env_value("MASTER_ADDR").value_or("127.0.0.1");
        if (auto v = env_value("MASTER_PORT")) e.master_port = env_int("MASTER_PORT", *v);
        if (env_value("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True") {
            e.agent_store = true;
            e.store_prefix = "/worker/attempt_" + env_value("TORCHELASTIC_RESTART_COUNT").value_or("0");
        }
    } else if (auto procid = env_value("SLURM_PROCID"), ntasks = env_value("SLURM_STEP_NUM_TASKS"); procid && ntasks) {
        // Only inside an srun step: a batch script itself also has SLURM_PROCID=0.
        e.source = "slurm";
        e.rank = env_int("SLURM_PROCID", *procid);
        e.world_size = env_int("SLURM_STEP_NUM_TASKS", *ntasks);
        if (auto v = env_value("SLURM_LOCALID")) e.local_rank = env_int("SLURM_LOCALID", *v);
        e.local_world_size = e.world_size;
        if (auto v = env_value("SLURM_STEP_TASKS_PER_NODE")) {
            // "4(x2)" or "4,3": this machine's count is close enough to the first.
            try {
                e.local_world_size = std::max(1, std::stoi(*v));
            } catch (const std::exception&) {
            }
        }
        if (auto v = env_value("MASTER_ADDR")) e.master_addr = *v;
        else if (auto nodes = env_value("SLURM_STEP_NODELIST").value_or(env_value("SLURM_JOB_NODELIST").value_or("")); !nodes.empty())
            e.master_addr = first_slurm_host(nodes);
        if (auto v = env_value("MASTER_PORT")) e.master_port = env_int("MASTER_PORT", *v);
        else if (auto job = env_value("SLURM_JOB_ID")) e.master_port = 20000 + env_int("SLURM_JOB_ID", *job) % 10000;
    } else {
        return std::nullopt;
    }
    if (e.world_size < 1 || e.rank < 0 || e.rank >= e.world_size)
        throw UserError(fmt::format("rank {} does not fit a group of {} processes ({} variables)", e.rank, e.world_size, e.source));
    if (e.master_port <= 0 || e.master_port > 65535) throw UserError(fmt::format("MASTER_PORT {} is not a port", e.master_port));
    if (e.world_size == 1) return std::nullopt;
    return e;
}

// ------------------------------------------------------------------------------------------
// The process group
// ------------------------------------------------------------------------------------------

#if defined(USE_DISTRIBUTED)
namespace {
using WorkPtr = c10::intrusive_ptr<c10d::Work>;

// The backends are ProcessGroups in LibTorch 1.x and Backends in 2.x; their collectives have
// the same signatures, so a template covers both.
struct Comm {
    virtual ~Comm() = default;
    virtual WorkPtr allreduce(std::vector<at::Tensor>& t, c10d::ReduceOp op) = 0;
    virtual WorkPtr broadcast(std::vector<at::Tensor>& t, int root) = 0;
    virtual WorkPtr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) = 0;
    virtual WorkPtr barrier() = 0;
};

template <class PG>
struct CommOf : Comm {
    c10::intrusive_ptr<PG> pg;
    explicit CommOf(c10::intrusive_ptr<PG> p) : pg(std::move(p)) {}
    WorkPtr allreduce(std::vector<at::Tensor>& t, c10d::ReduceOp op) override {
        c10d::AllreduceOptions o;
        o.reduceOp = op;
        return pg->allreduce(t, o);
    }
    WorkPtr broadcast(std::vector<at::Tensor>& t, int root) override {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        return pg->broadcast(t, o);
    }
    WorkPtr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) override {
        return pg->allgather(out, in, c10d::AllgatherOptions());
    }
    WorkPtr barrier() override { return pg->barrier(c10d::BarrierOptions()); }
};
}  // namespace
#endif

struct Distributed::Impl {
    DistributedEnv env;
    DistributedOptions options;
    std::string backend;
    int cuda_device = -1;
    int threads = 1;
    at::Device comm_device = at::Device(at::kCPU);
#if defined(USE_DISTRIBUTED)
    c10::intrusive_ptr<c10d::Store> store;
    std::unique_ptr<Comm> comm;
#endif
    Distributed* self = nullptr;
    // The liveness probe (see probe_peers): this rank's listening socket (-1: none) and every
    // rank's endpoint (nullopt: unknown, and this rank's own).
    int liveness_fd = -1;
#ifdef WHISKER_LIVENESS_PROBE
    std::vector<std::optional<sockaddr_in>> liveness_peers;
#endif
    // The first failure of a collective (see fail()). The group is of no use after it: a
    // collective issued later would wait the whole timeout again for peers that will never
    // join it (and the probe would run again), so a rank that went on to another collective -
    // a clean-up, a caller that caught the error - could take several timeouts to end. Later
    // collectives raise this error at once instead. Set from any thread (autograd's, too).
    mutable std::mutex failure_mutex;
    std::optional<PeerFailure> failure;
    void throw_if_failed() const {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (failure) throw *failure;
    }

    ~Impl() {
#ifdef WHISKER_LIVENESS_PROBE
        if (liveness_fd >= 0) ::close(liveness_fd);
#endif
    }

#if defined(USE_DISTRIBUTED)
    // Waits for a collective; any failure becomes the rank/timeout error.
    void wait(const WorkPtr& work, const char* what) {
        throw_if_failed();
        try {
            if (!work->wait(options.timeout))
                self->fail(what, "the operation did not complete");
        } catch (const UserError&) {
            throw;
        } catch (const std::exception& e) {
            self->fail(what, short_message(e));
        }
    }
    template <class F>
    WorkPtr issue(const char* what, F&& f) {
        throw_if_failed();
        try {
            return f();
        } catch (const std::exception& e) {
            self->fail(what, short_message(e));
        }
    }
#endif
};

Distributed::Distributed(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->self = this; }
Distributed::~Distributed() = default;

int Distributed::rank() const { return impl_->env.rank; }
int Distributed::world_size() const { return impl_->env.world_size; }
int Distributed::local_rank() const { return impl_->env.local_rank; }
const DistributedEnv& Distributed::env() const { return impl_->env; }
std::string Distributed::backend() const { return impl_->backend; }
std::chrono::milliseconds Distributed::timeout() const { return impl_->options.timeout; }
int Distributed::cuda_device() const { return impl_->cuda_device; }
int Distributed::threads() const { return impl_->threads; }

void Distributed::fail(const std::string& what, const std::string& detail) const {
    impl_->throw_if_failed();   // the error of the first failure, at once
    const int r = rank(), n = world_size();
    const std::chrono::milliseconds budget = std::min<std::chrono::milliseconds>(std::chrono::seconds(2), timeout() / 4);
    // Which peers ended, cannot be reached, or are alive but silent (the probe never throws;
    // anything else going wrong here must not hide the error being raised).
    std::vector<int> ended, unreachable, alive;
#ifdef WHISKER_LIVENESS_PROBE
    try {
        if (!impl_->liveness_peers.empty()) {
            const auto start = std::chrono::steady_clock::now();
            auto state = probe_peers(impl_->liveness_peers, budget);
            // A process being torn down (killed) closes Gloo's connections before its
            // listening socket: a peer that looked alive is asked again every 100 ms during the
            // first half of the budget, so that "ended" wins over a moment's "alive".
            for (;;) {
                std::vector<std::optional<sockaddr_in>> again(state.size());
                bool any = false;
                for (std::size_t q = 0; q < state.size(); ++q)
                    if (state[q] == PeerState::Alive) again[q] = impl_->liveness_peers[q], any = true;
                const auto elapsed = std::chrono::steady_clock::now() - start;
                if (!any || elapsed + std::chrono::milliseconds(100) > budget / 2) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(budget - (std::chrono::steady_clock::now() - start));
                const auto later = probe_peers(again, std::max(std::chrono::milliseconds(1), left));
                for (std::size_t q = 0; q < state.size(); ++q)
                    if (again[q] && later[q] != PeerState::Unknown) state[q] = later[q];
            }
            for (std::size_t q = 0; q < state.size(); ++q) {
                if (static_cast<int>(q) == r) continue;
                if (state[q] == PeerState::Ended) ended.push_back(static_cast<int>(q));
                else if (state[q] == PeerState::Unreachable) unreachable.push_back(static_cast<int>(q));
                else if (state[q] == PeerState::Alive) alive.push_back(static_cast<int>(q));
            }
        }
    } catch (...) {
        ended.clear(), unreachable.clear(), alive.clear();
    }
#endif
    // The rank(s) to blame: those that cannot be reached (a host or link down; the ranks that
    // ended meanwhile are most likely others that gave up on them), else those that ended.
    const std::vector<int>& blamed = !unreachable.empty() ? unreachable : ended;
    const std::string peer = !blamed.empty() ? rank_names(blamed) : n == 2 ? fmt::format("rank {}", 1 - r) : "another rank";
    std::string finding;
    auto add = [&finding](const std::string& part) { finding += (finding.empty() ? "" : "; ") + part; };
    const double budget_secs = static_cast<double>(budget.count()) / 1000.0;
    if (!unreachable.empty())
        add(fmt::format("{} cannot be reached (no answer within {:g} s: its machine or the network between us is down)",
                        rank_names(unreachable), budget_secs));
    if (!ended.empty()) add(fmt::format("{} {} ended", rank_names(ended), ended.size() == 1 ? "has" : "have"));
    if (!alive.empty())
        add(fmt::format("{} {} running but silent (hung, or slower than the timeout)", rank_names(alive),
                        alive.size() == 1 ? "is" : "are"));
    const double secs = static_cast<double>(timeout().count()) / 1000.0;
    std::string message = fmt::format("rank {} of {}: {} stopped answering or failed during {} (timeout {:g} s): {}", r, n, peer,
                                      what, secs, detail);
    if (!finding.empty()) message += " (liveness check: " + finding + ")";
    PeerFailure failure(message, !unreachable.empty()
                                     ? "check the network link of the machine(s) that cannot be reached; a rank that is only slow "
                                       "needs a longer --dist-timeout"
                                     : "the other ranks' messages say why; a rank that is only slow needs a longer --dist-timeout");
    {
        std::lock_guard<std::mutex> lock(impl_->failure_mutex);
        if (impl_->failure) throw *impl_->failure;   // another thread failed first
        impl_->failure = failure;
    }
    throw failure;
}

std::shared_ptr<Distributed> Distributed::from_environment(const DistributedOptions& options) {
    const auto e = distributed_env_from_environment();
    if (!e) return nullptr;
    return create(*e, options);
}

std::shared_ptr<Distributed> Distributed::create(const DistributedEnv& e, const DistributedOptions& options) {
#ifdef __linux__
    // A worker of launch_local_workers ends with its launcher (killed, or a GUI that quit).
    if (auto launcher = env_value("WHISKER_LAUNCHED")) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (std::to_string(::getppid()) != *launcher) throw UserError("the process that started this worker has ended");
    }
#endif
    auto impl = std::make_unique<Impl>();
    impl->env = e;
    impl->options = options;
    if (options.timeout.count() <= 0) throw UserError("the distributed timeout must be positive");

    // Threads: this rank's share of the machine's cores (torchrun's OMP_NUM_THREADS if set).
    const ComputeDevice device = detect_compute_device();   // sets LibTorch's threads once, first
    int threads = options.threads;
    if (threads <= 0) {
        if (auto omp = env_value("OMP_NUM_THREADS")) threads = std::max(1, std::atoi(omp->c_str()));
        else threads = std::max(1, default_thread_count() / std::max(1, e.local_world_size));
    }
    impl->threads = threads;
    at::set_num_threads(threads);

    if (device.cuda) {
        const int count = static_cast<int>(torch::cuda::device_count());
        impl->cuda_device = count > 0 ? e.local_rank % count : 0;
#ifdef WHISKER_HAVE_CUDA_RUNTIME
        cudaSetDevice(impl->cuda_device);
#endif
    }
    std::string backend = options.backend;
    if (backend.empty()) {
#if defined(WHISKER_NCCL)
        backend = device.cuda ? "nccl" : "gloo";
#else
        backend = "gloo";
#endif
    }
    impl->backend = backend;

#if !defined(USE_DISTRIBUTED)
    throw UserError("this LibTorch was built without distributed support (c10d)",
                    "train with one process, or use a LibTorch built with USE_DISTRIBUTED");
#else
    const std::string where = fmt::format("{}:{}", e.master_addr, e.master_port);
    const double secs = static_cast<double>(options.timeout.count()) / 1000.0;
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<std::uint16_t>(e.master_port);
        so.isServer = e.rank == 0 && !e.agent_store;
        so.numWorkers = static_cast<std::size_t>(e.world_size);
        so.waitWorkers = !e.agent_store;
        so.timeout = options.timeout;
        c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(e.master_addr, so);
        if (!e.store_prefix.empty()) store = c10::make_intrusive<c10d::PrefixStore>(e.store_prefix, store);
        impl->store = c10::make_intrusive<c10d::PrefixStore>("whisker", store);
    } catch (const std::exception& ex) {
        throw UserError(fmt::format("rank {} of {}: the group did not come together at {} within {:g} s: {}", e.rank,
                                    e.world_size, where, secs, short_message(ex)),
                        "check that every rank was started, with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE, "
                        "and that the port is free on rank 0's machine");
    }
#ifdef WHISKER_LIVENESS_PROBE
    // The liveness probe's endpoint, for fail() on the other ranks: "ip:port" (best effort).
    try {
        std::uint16_t port = 0;
        if (const auto address = reachable_address(e.master_addr)) {
            impl->liveness_fd = open_liveness_listener(port);
            if (impl->liveness_fd >= 0) {
                char text[INET_ADDRSTRLEN] = {};
                in_addr a{};
                a.s_addr = *address;
                ::inet_ntop(AF_INET, &a, text, sizeof text);
                const std::string value = fmt::format("{}:{}", text, port);
                impl->store->set(fmt::format("liveness/{}", e.rank), std::vector<std::uint8_t>(value.begin(), value.end()));
            }
        }
    } catch (const std::exception&) {
    }
#endif
    try {
        if (backend == "nccl") {
#if defined(WHISKER_NCCL)
            if (!device.cuda) throw UserError("the NCCL backend needs CUDA GPUs", "use --backend gloo on CPUs");
            // Let a timed-out NCCL collective raise instead of hanging.
            setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
            setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
            auto o = c10d::ProcessGroupNCCL::Options::create();
            o->timeout = options.timeout;
            impl->comm = std::make_unique<CommOf<c10d::ProcessGroupNCCL>>(
                c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, e.rank, e.world_size, o));
            impl->comm_device = at::Device(at::kCUDA, static_cast<at::DeviceIndex>(impl->cuda_device));
#else
            throw UserError("this LibTorch has no NCCL", "use the Gloo backend");
#endif
        } else if (backend == "gloo") {
#if defined(WHISKER_GLOO)
            auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
            const bool loopback = e.master_addr == "localhost" || e.master_addr.rfind("127.", 0) == 0;
            if (auto ifname = env_value("GLOO_SOCKET_IFNAME"))
                o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname->substr(0, ifname->find(','))));
            else if (loopback)
                o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
            else
                o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
            o->threads = 2;
            impl->comm = std::make_unique<CommOf<c10d::ProcessGroupGloo>>(
                c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, e.rank, e.world_size, o));
#else
            throw UserError("this build of Whisker has no Gloo (CPU) backend",
                            "install libgloo-dev (Debian) and rebuild, or train on GPUs with NCCL");
#endif
        } else {
            throw UserError("unknown distributed backend '" + backend + "'", "use gloo or nccl");
        }
    } catch (const UserError&) {
        throw;
    } catch (const std::exception& ex) {
        throw UserError(fmt::format("rank {} of {}: could not connect the {} group ({}, timeout {:g} s): {}", e.rank, e.world_size,
                                    backend, where, secs, short_message(ex)),
                        "a rank did not start or exited; with several machines set GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME");
    }
#ifdef WHISKER_LIVENESS_PROBE
    // The other ranks' endpoints. Gloo's rendezvous needed every rank, so their entries are
    // there; NCCL connects lazily, so wait a little for the late ones. Without them the probe
    // simply knows less.
    try {
        std::vector<std::string> keys;
        for (int q = 0; q < e.world_size; ++q)
            if (q != e.rank) keys.push_back(fmt::format("liveness/{}", q));
        try {
            if (!impl->store->check(keys))
                impl->store->wait(keys, std::min<std::chrono::milliseconds>(options.timeout, std::chrono::seconds(10)));
        } catch (const std::exception&) {
        }
        impl->liveness_peers.assign(static_cast<std::size_t>(e.world_size), std::nullopt);
        for (int q = 0; q < e.world_size; ++q) {
            const std::string key = fmt::format("liveness/{}", q);
            if (q == e.rank || !impl->store->check({key})) continue;
            const auto value = impl->store->get(key);
            impl->liveness_peers[static_cast<std::size_t>(q)] = parse_endpoint(std::string(value.begin(), value.end()));
        }
    } catch (const std::exception&) {
    }
#endif
    return std::shared_ptr<Distributed>(new Distributed(std::move(impl)));
#endif
}

#if defined(USE_DISTRIBUTED)

void Distributed::barrier() {
    auto& I = *impl_;
    I.wait(I.issue("a barrier", [&] { return I.comm->barrier(); }), "a barrier");
}

void Distributed::all_reduce_sum(at::Tensor& t) {
    auto& I = *impl_;
    std::vector<at::Tensor> ts{t.device() == I.comm_device ? t.contiguous() : t.to(I.comm_device).contiguous()};
    I.wait(I.issue("an all-reduce", [&] { return I.comm->allreduce(ts, c10d::ReduceOp::SUM); }), "an all-reduce");
    if (!ts[0].is_same(t)) t.copy_(ts[0]);
}

namespace {
std::vector<double> reduce_values(Distributed::Impl& I, std::vector<double> values, c10d::ReduceOp op) {
    if (values.empty()) return values;
    at::Tensor t = at::tensor(values, at::kDouble).to(I.comm_device);
    std::vector<at::Tensor> ts{t};
    I.wait(I.issue("an all-reduce", [&] { return I.comm->allreduce(ts, op); }), "an all-reduce");
    const at::Tensor c = ts[0].to(at::kCPU).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
}  // namespace

std::vector<double> Distributed::all_reduce_sum(std::vector<double> values) {
    return reduce_values(*impl_, std::move(values), c10d::ReduceOp::SUM);
}
std::vector<double> Distributed::all_reduce_max(std::vector<double> values) {
    return reduce_values(*impl_, std::move(values), c10d::ReduceOp::MAX);
}
bool Distributed::any(bool flag) { return all_reduce_max({flag ? 1.0 : 0.0})[0] > 0.5; }

void Distributed::broadcast(std::vector<at::Tensor>& tensors, int root) {
    auto& I = *impl_;
    if (tensors.empty()) return;
    // One flat buffer per dtype: a handful of collectives instead of hundreds.
    std::map<at::ScalarType, std::vector<std::size_t>> by_type;
    for (std::size_t i = 0; i < tensors.size(); ++i) by_type[tensors[i].scalar_type()].push_back(i);
    for (auto& [type, idx] : by_type) {
        std::vector<at::Tensor> parts;
        for (std::size_t i : idx) parts.push_back(tensors[i].detach().reshape({-1}).to(I.comm_device));
        std::vector<at::Tensor> flat{at::cat(parts)};
        I.wait(I.issue("a broadcast", [&] { return I.comm->broadcast(flat, root); }), "a broadcast");
        std::int64_t off = 0;
        for (std::size_t i : idx) {
            const auto n = tensors[i].numel();
            at::NoGradGuard no_grad;
            tensors[i].detach().copy_(flat[0].narrow(0, off, n).view(tensors[i].sizes()));
            off += n;
        }
    }
}

at::Tensor Distributed::all_gather_rows(const at::Tensor& local) {
    auto& I = *impl_;
    const int n = world_size();
    const auto rows = local.defined() ? local.size(0) : 0;
    std::vector<double> counts(static_cast<std::size_t>(n), 0.0);
    counts[static_cast<std::size_t>(rank())] = static_cast<double>(rows);
    counts = all_reduce_sum(counts);
    std::int64_t most = 0;
    for (double c : counts) most = std::max(most, static_cast<std::int64_t>(c));
    // Every rank needs the row shape; ranks without rows take it from one that has some.
    std::vector<double> shape_info;
    if (local.defined() && local.dim() >= 1) {
        shape_info.push_back(static_cast<double>(local.dim()));
        for (int d = 1; d < local.dim(); ++d) shape_info.push_back(static_cast<double>(local.size(d)));
        shape_info.push_back(static_cast<double>(static_cast<int>(local.scalar_type())));
    }
    shape_info.resize(8, -1.0);
    shape_info = all_reduce_max(shape_info);
    const int dims = static_cast<int>(shape_info[0]);
    if (dims < 1) return at::Tensor();
    std::vector<std::int64_t> shape{most};
    for (int d = 1; d < dims; ++d) shape.push_back(static_cast<std::int64_t>(shape_info[static_cast<std::size_t>(d)]));
    const auto type = static_cast<at::ScalarType>(static_cast<int>(shape_info[static_cast<std::size_t>(dims)]));
    at::Tensor padded = at::zeros(shape, at::TensorOptions().dtype(type).device(I.comm_device));
    if (rows > 0) padded.narrow(0, 0, rows).copy_(local);
    std::vector<at::Tensor> in{padded};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < n; ++r) out[0].push_back(at::empty_like(padded));
    I.wait(I.issue("an all-gather", [&] { return I.comm->allgather(out, in); }), "an all-gather");
    std::vector<at::Tensor> parts;
    for (int r = 0; r < n; ++r)
        parts.push_back(out[0][static_cast<std::size_t>(r)].narrow(0, 0, static_cast<std::int64_t>(counts[static_cast<std::size_t>(r)])));
    return at::cat(parts).to(at::kCPU);
}

// ------------------------------------------------------------------------------------------
// Gradient averaging
// ------------------------------------------------------------------------------------------

struct GradientSync::Impl {
    Distributed* dist = nullptr;
    std::vector<at::Tensor> params;
    std::vector<unsigned> hooks;
    struct Bucket {
        std::vector<std::size_t> members;
        std::vector<std::int64_t> offsets;
        at::Tensor flat;
        std::size_t pending = 0;
        WorkPtr work;
        bool launched = false;
    };
    std::vector<Bucket> buckets;
    std::vector<std::size_t> bucket_of, offset_of;
    std::vector<bool> got;
    std::mutex mutex;
    bool armed = false;
    std::size_t next_launch = 0;
    std::string hook_error;

    at::Tensor slot(std::size_t i) {
        const auto& b = buckets[bucket_of[i]];
        return b.flat.narrow(0, static_cast<std::int64_t>(offset_of[i]), params[i].numel()).view(params[i].sizes());
    }
    // Under the mutex: starts every complete bucket that is next in line.
    void launch_ready() {
        auto& I = dist->impl();
        while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
            auto& b = buckets[next_launch++];
            std::vector<at::Tensor> t{b.flat};
            b.work = I.issue("the gradient all-reduce", [&] { return I.comm->allreduce(t, c10d::ReduceOp::SUM); });
            b.launched = true;
        }
    }
    void ready(std::size_t i, const at::Tensor& grad) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!armed || got[i]) return;
        try {
            at::NoGradGuard no_grad;
            slot(i).copy_(grad);
            // Gradient accumulation: the micro-batches before this one left their sum in
            // .grad (the hook runs before this backward adds to it); the average covers it.
            if (const at::Tensor& earlier = params[i].grad(); earlier.defined()) slot(i).add_(earlier.to(slot(i).device()));
            got[i] = true;
            --buckets[bucket_of[i]].pending;
            launch_ready();
        } catch (const std::exception& e) {
            // Never throw through autograd: finish() reports it.
            if (hook_error.empty()) hook_error = short_message(e);
        }
    }
};

GradientSync::GradientSync(Distributed& dist, std::vector<at::Tensor> params, std::size_t bucket_bytes)
    : impl_(std::make_shared<Impl>()) {
    auto& I = *impl_;
    I.dist = &dist;
    I.params = std::move(params);
    const std::size_t n = I.params.size();
    I.bucket_of.assign(n, 0);
    I.offset_of.assign(n, 0);
    I.got.assign(n, false);
    const at::Device comm_device = dist.impl().comm_device;
    // Reverse order, one dtype per bucket, about bucket_bytes each.
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = n - 1 - i;
    std::size_t bytes = 0;
    for (std::size_t i : order) {
        const at::Tensor& p = I.params[i];
        const std::size_t sz = static_cast<std::size_t>(p.numel()) * p.element_size();
        if (I.buckets.empty() || bytes + sz > bucket_bytes ||
            I.params[I.buckets.back().members.front()].scalar_type() != p.scalar_type()) {
            I.buckets.emplace_back();
            bytes = 0;
        }
        auto& b = I.buckets.back();
        I.bucket_of[i] = I.buckets.size() - 1;
        I.offset_of[i] = b.offsets.empty() ? 0 : static_cast<std::size_t>(b.offsets.back() + I.params[b.members.back()].numel());
        b.offsets.push_back(static_cast<std::int64_t>(I.offset_of[i]));
        b.members.push_back(i);
        bytes += sz;
    }
    for (auto& b : I.buckets) {
        std::int64_t total = 0;
        for (std::size_t i : b.members) total += I.params[i].numel();
        b.flat = at::zeros({total}, at::TensorOptions().dtype(I.params[b.members.front()].scalar_type()).device(comm_device));
    }
    std::weak_ptr<Impl> weak = impl_;
    for (std::size_t i = 0; i < n; ++i) {
        I.hooks.push_back(I.params[i].register_hook([weak, i](const at::Tensor& grad) {
            if (auto self = weak.lock()) self->ready(i, grad);
        }));
    }
}

GradientSync::~GradientSync() {
    auto& I = *impl_;
    for (std::size_t i = 0; i < I.hooks.size(); ++i) {
        try {
            I.params[i].remove_hook(I.hooks[i]);
        } catch (const std::exception&) {
        }
    }
}

std::size_t GradientSync::buckets() const { return impl_->buckets.size(); }

void GradientSync::arm() {
    auto& I = *impl_;
    std::lock_guard<std::mutex> lock(I.mutex);
    std::fill(I.got.begin(), I.got.end(), false);
    for (auto& b : I.buckets) {
        b.pending = b.members.size();
        b.launched = false;
        b.work.reset();
    }
    I.next_launch = 0;
    I.hook_error.clear();
    I.armed = true;
}

void GradientSync::finish() {
    auto& I = *impl_;
    auto& D = I.dist->impl();
    {
        std::lock_guard<std::mutex> lock(I.mutex);
        if (!I.armed) throw std::logic_error("GradientSync::finish without arm");
        I.armed = false;
        if (!I.hook_error.empty()) I.dist->fail("the gradient all-reduce", I.hook_error);
        // Parameters that got no gradient in this backward contribute what earlier
        // micro-batches accumulated, or zeros.
        at::NoGradGuard no_grad;
        for (std::size_t i = 0; i < I.params.size(); ++i)
            if (!I.got[i]) {
                if (const at::Tensor& earlier = I.params[i].grad(); earlier.defined()) I.slot(i).copy_(earlier);
                else I.slot(i).zero_();
                I.got[i] = true;
                --I.buckets[I.bucket_of[i]].pending;
            }
        I.launch_ready();
    }
    const double world = static_cast<double>(I.dist->world_size());
    at::NoGradGuard no_grad;
    for (auto& b : I.buckets) {
        D.wait(b.work, "the gradient all-reduce");
        b.flat.div_(world);
        for (std::size_t i : b.members) {
            at::Tensor& p = I.params[i];
            const at::Tensor avg = I.slot(i);
            if (p.grad().defined()) p.mutable_grad().copy_(avg);
            else p.mutable_grad() = avg.to(p.device()).clone();
        }
    }
}

#else  // no c10d: a Distributed can never be created; these are never reached

void Distributed::barrier() {}
void Distributed::all_reduce_sum(at::Tensor&) {}
std::vector<double> Distributed::all_reduce_sum(std::vector<double> v) { return v; }
std::vector<double> Distributed::all_reduce_max(std::vector<double> v) { return v; }
bool Distributed::any(bool flag) { return flag; }
void Distributed::broadcast(std::vector<at::Tensor>&, int) {}
at::Tensor Distributed::all_gather_rows(const at::Tensor& local) { return local; }
struct GradientSync::Impl {};
GradientSync::GradientSync(Distributed&, std::vector<at::Tensor>, std::size_t) : impl_(std::make_shared<Impl>()) {}
GradientSync::~GradientSync() = default;
void GradientSync::arm() {}
void GradientSync::finish() {}
std::size_t GradientSync::buckets() const { return 0; }

#endif

int local_gpu_count() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

}  // namespace whisker::train
