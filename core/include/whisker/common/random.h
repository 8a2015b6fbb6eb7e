#pragma once
// Portable, seedable random numbers.
//
// std::uniform_real_distribution and std::shuffle are implementation-defined, so the same seed
// could give other numbers with another standard library. Whisker's reproducibility promises
// (same seed, same split, same augmentations, same sample images) rest on this generator
// instead: xoshiro256** seeded through SplitMix64. Not thread-safe; use one Rng per thread or
// per item (derive_seed makes independent streams cheap).

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace whisker {

// Hashes several values into one well-mixed 64-bit seed (SplitMix64 finaliser).
std::uint64_t derive_seed(std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0);

class Rng {
public:
    explicit Rng(std::uint64_t seed);
    std::uint64_t next_u64();
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [lo, hi] (inclusive), unbiased.
    std::int64_t uniform_int(std::int64_t lo, std::int64_t hi);
    bool bernoulli(double p) { return uniform() < p; }
    // Standard normal (Box-Muller; one value per call).
    double normal();

private:
    std::uint64_t s_[4];
};

// Fisher-Yates shuffle driven by Rng (portable, unlike std::shuffle).
template <class T>
void shuffle_in_place(std::vector<T>& v, Rng& rng) {
    for (std::size_t i = v.size(); i > 1; --i) {
        const auto j = static_cast<std::size_t>(rng.uniform_int(0, static_cast<std::int64_t>(i - 1)));
        std::swap(v[i - 1], v[j]);
    }
}

}  // namespace whisker
