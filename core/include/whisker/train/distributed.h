#pragma once
// Data-parallel training on PyTorch's own distributed engine, c10d: NCCL between GPUs (where
// LibTorch has it), Gloo between CPUs. No communication layer of Whisker's own.
//
//   auto dist = Distributed::from_environment();   // torchrun / SLURM variables; nullptr alone
//   LearnerConfig config;  config.distributed = dist;
//   Learner learn(project, dataset, config);       // every rank: same weights (rank 0's)
//   learn.fit(...);                                // each rank trains on its shard
//
// How a process finds its group (the same variables PyTorch reads):
//   torchrun:  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//              (`torchrun --nproc-per-node 2 --no-python whisker-cli fit …` works; with
//              TORCHELASTIC_USE_AGENT_STORE=True the agent hosts the store, as in PyTorch)
//   SLURM:     SLURM_PROCID, SLURM_STEP_NUM_TASKS (srun), SLURM_LOCALID, MASTER_ADDR or the
//              first host of SLURM_STEP_NODELIST/SLURM_JOB_NODELIST, MASTER_PORT or
//              20000 + SLURM_JOB_ID % 10000
//   launch_local_workers() below (what `whisker-cli fit --nproc N` does) sets the torchrun
//   variables for N processes on 127.0.0.1 and a free port.
// Rank 0 hosts the rendezvous (c10d::TCPStore) unless torchrun's agent does.
//
// Semantics (what the Learner does with it):
//   - LearnerConfig::batch_size is the *global* batch; each rank takes batch_size / world.
//     The schedule, lr_find and checkpoints count global batches, so a run resumes on any
//     number of ranks.
//   - Each rank trains on its shard of every epoch (data::LoaderOptions::shard_*: PyTorch's
//     DistributedSampler, seeded and reshuffled per epoch).
//   - Gradients are averaged with bucketed all-reduce (GradientSync), launched from autograd
//     hooks while the backward pass is still running.
//   - BatchNorm as PyTorch's DDP with broadcast_buffers: batch statistics per rank, running
//     statistics are rank 0's; with LearnerConfig::sync_batch_norm (--sync-bn) statistics of
//     the global batch instead, as PyTorch's SyncBatchNorm (sync_batch_norm.h).
//   - Metrics are all-reduced: every rank gets the same numbers. Only rank 0 writes files.
//   - A collective that does not complete within `timeout` (a peer died or hangs) throws
//     UserError naming this rank, the peer and the timeout; so does a refused rendezvous.
//     After that first failure the group is spent: every later collective throws the same
//     error at once (no second timeout), so a rank ends within one timeout of losing a peer.
//     The peer is found by a liveness probe: every rank listens on a TCP port of its own
//     (published as liveness/<rank> in the store, never accepted on), and fail() connects to
//     all of them at once for at most min(2 s, timeout / 4): refused = that process ended, no
//     answer or unreachable = its machine or the network is down, connected = alive but hung.
//
// Threading: one thread per process uses a Distributed (collectives must be issued in the
// same order on every rank). GradientSync's hooks run on autograd's threads; that is safe.

#include "whisker/common/errors.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::train {

// What a collective throws when another rank died, hung or failed: this rank is not the cause.
// whisker-cli exits with kPeerFailureExitCode for it, so a launcher can tell the rank that
// failed first from those that followed.
class PeerFailure : public UserError {
public:
    using UserError::UserError;
};
constexpr int kPeerFailureExitCode = 3;

// Where this process sits in a group.
struct DistributedEnv {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_world_size = 1;        // processes on this machine
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    std::string source;              // "torchrun", "slurm" or "whisker" (launch_local_workers)
    bool agent_store = false;        // torchrun's agent hosts the TCPStore (rank 0 is a client)
    std::string store_prefix;        // key prefix in an agent's store ("/worker/attempt_N")
};

// Reads the variables above. nullopt when the process was not started as part of a group
// (or the group has one process). Throws UserError for inconsistent values.
std::optional<DistributedEnv> distributed_env_from_environment();

struct DistributedOptions {
    // How long a collective (or the rendezvous) may wait for the other ranks before this rank
    // gives up with an error. Long enough for the slowest legitimate wait: rank 0 writing a
    // checkpoint, the first batch of a cold disk.
    std::chrono::milliseconds timeout = std::chrono::seconds(300);
    std::string backend;             // "gloo" or "nccl"; empty: NCCL on CUDA when available, else Gloo
    // Intra-op threads of this rank on the CPU; 0: the cores divided by local_world_size.
    int threads = 0;
};

class Distributed {
public:
    // Joins the group (blocking until every rank has arrived, at most `timeout`).
    static std::shared_ptr<Distributed> create(const DistributedEnv& env, const DistributedOptions& options = {});
    // distributed_env_from_environment() + create(); nullptr when not in a group.
    static std::shared_ptr<Distributed> from_environment(const DistributedOptions& options = {});
    ~Distributed();
    Distributed(const Distributed&) = delete;
    Distributed& operator=(const Distributed&) = delete;

    int rank() const;
    int world_size() const;
    int local_rank() const;
    bool is_main() const { return rank() == 0; }
    const DistributedEnv& env() const;
    std::string backend() const;                 // "gloo" or "nccl"
    std::chrono::milliseconds timeout() const;
    // The CUDA device of this rank (LOCAL_RANK modulo the devices seen), or -1 on CPUs.
    int cuda_device() const;
    // Threads for this rank's loader and LibTorch on the CPU.
    int threads() const;

    // ---- collectives: every rank calls them in the same order ----
    void barrier();
    // In place, element-wise sum over the ranks (any device; moved to the backend's and back).
    void all_reduce_sum(at::Tensor& tensor);
    std::vector<double> all_reduce_sum(std::vector<double> values);
    // Element-wise maximum / minimum over ranks.
    std::vector<double> all_reduce_max(std::vector<double> values);
    // True on every rank when `flag` is true on any rank.
    bool any(bool flag);
    // Replaces every tensor by root's (in place; same shapes on every rank).
    void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
    // Each rank's rows (dim 0; the other dims equal), concatenated in rank order, on every
    // rank. Ranks may hold different numbers of rows (also none). The result is on the CPU.
    at::Tensor all_gather_rows(const at::Tensor& local);

    // Raises the error every failure of a collective turns into: "rank R of N: rank Q stopped
    // answering or failed during WHAT (timeout T s): DETAIL (liveness check: …)", naming the
    // peers the probe found unreachable (else those that ended; else "another rank", or the
    // other rank of two). Takes up to min(2 s, timeout / 4) for the probe.
    [[noreturn]] void fail(const std::string& what, const std::string& detail) const;

    struct Impl;
    Impl& impl() { return *impl_; }

private:
    explicit Distributed(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Averages the gradients of `params` over the ranks, as PyTorch's DDP does: parameters in
// reverse order (roughly the order backward produces their gradients) are packed into buckets
// of about `bucket_bytes`; a bucket's all-reduce starts from an autograd hook as soon as all
// its gradients exist (buckets in order, the same on every rank), overlapping the rest of the
// backward pass; finish() waits, divides by the world size and writes each parameter's grad.
// Usage per step: arm(); loss.backward(); finish();  — or arm(); finish(); on a rank that has
// nothing to back-propagate (it contributes zeros). Hooks are removed by the destructor.
// Gradient accumulation (DDP's no_sync): backward passes while not armed only add to each
// parameter's .grad on this rank; the armed backward then averages .grad plus its own
// gradient, so one all-reduce serves the whole group of micro-batches.
// Zero the gradients (or set them to none) before a step that does not accumulate.
class GradientSync {
public:
    GradientSync(Distributed& dist, std::vector<at::Tensor> params, std::size_t bucket_bytes = 25u << 20);
    ~GradientSync();
    GradientSync(const GradientSync&) = delete;
    GradientSync& operator=(const GradientSync&) = delete;
    void arm();
    void finish();
    std::size_t buckets() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// ---- starting N local workers (whisker-cli --nproc N; the workbench's "use all GPUs") ----

struct LocalLaunchOptions {
    // The program to run and its arguments (argv[1…]); empty executable: this program.
    std::filesystem::path executable;
    std::vector<std::string> args;
    int nproc = 2;
    int master_port = 0;                     // 0: a free port on 127.0.0.1
    // LibTorch threads per worker (OMP_NUM_THREADS); 0: the caller's OMP_NUM_THREADS if set,
    // else the cores divided by nproc.
    int threads_per_worker = 0;
    // When set, rank 0's standard output is read through a pipe and handed over line by line
    // (on the calling thread); otherwise the workers share this process's stdout. Ranks other
    // than 0 keep only their standard error.
    std::function<void(const std::string& line)> on_output;
    // When set, every worker's standard error is read through a pipe and handed over line by
    // line with its rank (on the calling thread), e.g. to show the workers' errors in a window;
    // otherwise the workers share this process's stderr.
    std::function<void(int rank, const std::string& line)> on_error;
    // Checked every 100 ms; once true, SIGINT goes to every worker (they stop within a batch,
    // save, and exit); SIGKILL follows `kill_after` later if they have not ended.
    const std::atomic<bool>* stop = nullptr;
    // After a worker fails, the others get this long to end on their own (they fail at their
    // next collective) before they are killed.
    std::chrono::milliseconds kill_after = std::chrono::seconds(30);
};

struct LocalLaunchResult {
    // The worker that failed first — a worker killed by a signal or failing on its own rather
    // than one that only lost its peer (kPeerFailureExitCode) — and its exit code.
    int exit_code = 0;
    int failed_rank = -1;                    // -1 if none failed
    int signal = 0;                          // the signal that killed it, 0 if it exited
    std::string message;                     // "rank 1 of 2 exited with code 1", "… was killed by signal 9"
};

// Starts `nproc` workers with the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT, OMP_NUM_THREADS; CUDA_VISIBLE_DEVICES
// is left alone: each worker picks cuda:LOCAL_RANK) and waits for all of them. A worker whose
// group is made by Distributed::create ends when the launcher ends (Linux: PR_SET_PDEATHSIG).
// Blocking; call it from a worker thread in a GUI.
LocalLaunchResult launch_local_workers(const LocalLaunchOptions& options);

// How many workers "use all GPUs" means on this machine: the CUDA devices (0 without CUDA).
int local_gpu_count();

}  // namespace whisker::train
