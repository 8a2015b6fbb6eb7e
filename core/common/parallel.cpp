#include "whisker/common/parallel.h"

#include "whisker/common/errors.h"

#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace whisker {

int default_thread_count() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

void parallel_for(std::size_t n, int threads, const std::function<void(std::size_t)>& fn,
                  const std::atomic<bool>* cancel) {
    if (threads <= 0) threads = default_thread_count();
    threads = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), n));
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;

    auto worker = [&] {
        for (;;) {
            if (failed.load(std::memory_order_relaxed)) return;
            if (cancel && cancel->load(std::memory_order_relaxed)) return;
            const std::size_t i = next.fetch_add(1);
            if (i >= n) return;
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!first_error) first_error = std::current_exception();
                failed = true;
                return;
            }
        }
    };
    if (threads <= 1) {
        worker();
    } else {
        std::vector<std::thread> pool;
        pool.reserve(static_cast<std::size_t>(threads));
        for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
        for (auto& th : pool) th.join();
    }
    if (first_error) std::rethrow_exception(first_error);
    if (cancel && cancel->load()) throw Cancelled();
}

}  // namespace whisker
