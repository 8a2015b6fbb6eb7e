#pragma once
// Small helpers for CPU-parallel loops and progress reporting of long jobs.

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace whisker {

// Progress of a long job, reported through a ProgressFn. `total` may be 0 when unknown.
struct Progress {
    std::string stage;          // e.g. "extracting train.zip", "checking images"
    std::uint64_t done = 0;
    std::uint64_t total = 0;
};
// Called from worker threads, possibly concurrently: keep it cheap and thread-safe.
using ProgressFn = std::function<void(const Progress&)>;

// Number of worker threads to use when the caller says 0: the number of online CPUs.
int default_thread_count();

// Runs fn(i) for i in [0, n) on `threads` threads (0 = default_thread_count()), handing out
// indices dynamically. The first exception thrown by fn stops the loop and is rethrown here.
// If `cancel` becomes true, remaining indices are skipped and Cancelled is thrown.
void parallel_for(std::size_t n, int threads, const std::function<void(std::size_t)>& fn,
                  const std::atomic<bool>* cancel = nullptr);

}  // namespace whisker
