#pragma once
// Union-find over indices 0..n-1 (path halving; the smaller index is a set's root, so results
// do not depend on the order of joins). Groups of duplicate images, for the duplicates report
// and for keeping a group inside one cross-validation fold. Internal to whisker_core.

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

namespace whisker {

struct UnionFind {
    std::vector<std::size_t> parent;
    explicit UnionFind(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), std::size_t{0}); }
    std::size_t find(std::size_t x) {
        while (parent[x] != x) x = parent[x] = parent[parent[x]];
        return x;
    }
    void join(std::size_t a, std::size_t b) {
        a = find(a);
        b = find(b);
        if (a != b) parent[std::max(a, b)] = std::min(a, b);
    }
};

}  // namespace whisker
