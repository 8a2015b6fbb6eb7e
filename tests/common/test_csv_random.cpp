#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/parallel.h"
#include "whisker/common/random.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

using namespace whisker;

TEST(Csv, QuotesCommasNewlinesAndBom) {
    const auto rows = parse_csv("\xEF\xBB\xBFid,label\r\n\"a,b\",\"say \"\"hi\"\"\"\n\"multi\nline\",x\n\nlast,1");
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0], (CsvRow{"id", "label"}));
    EXPECT_EQ(rows[1], (CsvRow{"a,b", "say \"hi\""}));
    EXPECT_EQ(rows[2], (CsvRow{"multi\nline", "x"}));
    EXPECT_EQ(rows[3], (CsvRow{"last", "1"}));
}

TEST(Csv, UnterminatedQuoteNamesTheLine) {
    try {
        parse_csv("a,b\n\"open,2\n3,4\n");
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
}

TEST(Csv, EscapeRoundTrips) {
    const CsvRow row{"plain", "with,comma", "with \"quote\"", "two\nlines"};
    std::string line;
    for (const auto& f : row) line += (line.empty() ? "" : ",") + csv_escape(f);
    EXPECT_EQ(parse_csv(line).at(0), row);
}

TEST(Random, SameSeedSameNumbersKnownValues) {
    Rng a(42), b(42);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
    // Pinned values: if the generator changed, the splits, augmentations and sample images of
    // existing projects would silently change with it.
    Rng pinned(1);
    EXPECT_EQ(pinned.next_u64(), 0xb3f2af6d0fc710c5ULL);
    EXPECT_EQ(pinned.next_u64(), 0x853b559647364ceaULL);
    EXPECT_EQ(pinned.next_u64(), 0x92f89756082a4514ULL);
    EXPECT_DOUBLE_EQ(Rng(42).uniform(), 0.083862971059882163);
    EXPECT_EQ(derive_seed(42, 1, 2), 0x68f179f1ac765f64ULL);
    EXPECT_NE(Rng(1).next_u64(), Rng(2).next_u64());
}

TEST(Random, UniformRangesAndMoments) {
    Rng r(7);
    double sum = 0, sum_sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        const double u = r.uniform();
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
        sum += u;
        sum_sq += u * u;
    }
    EXPECT_NEAR(sum / n, 0.5, 0.005);
    EXPECT_NEAR(sum_sq / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
    std::set<std::int64_t> seen;
    for (int i = 0; i < 1000; ++i) {
        const auto k = r.uniform_int(3, 7);
        ASSERT_GE(k, 3);
        ASSERT_LE(k, 7);
        seen.insert(k);
    }
    EXPECT_EQ(seen.size(), 5u);
    double ns = 0, ns2 = 0;
    for (int i = 0; i < n; ++i) {
        const double z = r.normal();
        ns += z;
        ns2 += z * z;
    }
    EXPECT_NEAR(ns / n, 0.0, 0.01);
    EXPECT_NEAR(ns2 / n, 1.0, 0.02);
}

TEST(Random, ShuffleIsAPermutationAndSeeded) {
    std::vector<int> v(100), w;
    std::iota(v.begin(), v.end(), 0);
    w = v;
    Rng r1(5), r2(5);
    shuffle_in_place(v, r1);
    shuffle_in_place(w, r2);
    EXPECT_EQ(v, w);
    std::vector<int> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < 100; ++i) EXPECT_EQ(sorted[static_cast<std::size_t>(i)], i);
    std::vector<int> id(100);
    std::iota(id.begin(), id.end(), 0);
    EXPECT_NE(v, id);
}

TEST(Random, DerivedSeedsDiffer) {
    std::set<std::uint64_t> seeds;
    for (std::uint64_t e = 0; e < 10; ++e)
        for (std::uint64_t i = 0; i < 100; ++i) seeds.insert(derive_seed(42, e, i));
    EXPECT_EQ(seeds.size(), 1000u);
}

TEST(Parallel, RunsEveryIndexOnceAndPropagatesErrors) {
    std::vector<std::atomic<int>> hits(1000);
    parallel_for(hits.size(), 4, [&](std::size_t i) { hits[i]++; });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_THROW(parallel_for(100, 2, [](std::size_t i) { if (i == 50) throw std::runtime_error("boom"); }),
                 std::runtime_error);
    std::atomic<bool> cancel{true};
    EXPECT_THROW(parallel_for(100, 2, [](std::size_t) {}, &cancel), Cancelled);
}
