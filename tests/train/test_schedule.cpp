// Schedules against hand-computed numbers (fastai 0.7 CosAnneal, LR_Finder; v2 one-cycle).
#include "whisker/train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace whisker::train;

namespace {
const double kPi = std::acos(-1.0);
}

TEST(Schedule, SgdrEpochCounts) {
    EXPECT_EQ(sgdr_epochs(1, 2, 3), 7);   // 1 + 2 + 4
    EXPECT_EQ(sgdr_epochs(1, 1, 3), 3);
    EXPECT_EQ(sgdr_epochs(2, 1, 2), 4);
    EXPECT_EQ(sgdr_epochs(1, 2, 1), 1);
}

TEST(Schedule, SgdrWarmupAndCosine) {
    const auto m = sgdr_multipliers(10, 1, 1, 1);
    ASSERT_EQ(m.size(), 10u);
    EXPECT_DOUBLE_EQ(m[0], 0.01);                                      // 0 < nb/20 = 0.5: warm-up
    EXPECT_NEAR(m[1], (std::cos(kPi * 1 / 10) + 1) / 2, 1e-12);        // 0.975528
    EXPECT_NEAR(m[5], 0.5, 1e-12);
    EXPECT_NEAR(m[9], (std::cos(kPi * 9 / 10) + 1) / 2, 1e-12);        // 0.024472
    // 100 batches per epoch: the first 5 are warm-up.
    const auto w = sgdr_multipliers(100, 1, 1, 1);
    for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(w[static_cast<std::size_t>(i)], 0.01);
    EXPECT_NEAR(w[5], (std::cos(kPi * 5 / 100) + 1) / 2, 1e-12);
}

TEST(Schedule, SgdrRestartsWithCycleMult) {
    const auto m = sgdr_multipliers(10, 1, 2, 3);
    ASSERT_EQ(m.size(), 70u);
    EXPECT_DOUBLE_EQ(m[10], 1.0);                                      // restart, cycle of 20
    EXPECT_NEAR(m[20], 0.5, 1e-12);                                    // halfway through it
    EXPECT_NEAR(m[29], (std::cos(kPi * 19 / 20) + 1) / 2, 1e-12);
    EXPECT_DOUBLE_EQ(m[30], 1.0);                                      // restart, cycle of 40
    EXPECT_NEAR(m[50], 0.5, 1e-12);
    EXPECT_NEAR(m[69], (std::cos(kPi * 39 / 40) + 1) / 2, 1e-12);
    // Without warm-up after the first cycle, and never above 1.
    for (double v : m) EXPECT_LE(v, 1.0);
}

TEST(Schedule, LrFindRates) {
    const auto e = lr_find_rates(1e-5, 10, 100, false);
    EXPECT_DOUBLE_EQ(e[0], 1e-5);
    EXPECT_NEAR(e[50], 1e-2, 1e-12);
    EXPECT_NEAR(e[99], 1e-5 * std::pow(1e6, 0.99), 1e-9);
    const auto l = lr_find_rates(1e-5, 10, 100, true);
    EXPECT_NEAR(l[50], 1e-5 + (10 - 1e-5) * 0.5, 1e-12);
}

TEST(Schedule, OneCycle) {
    const auto m = one_cycle_multipliers(100);
    EXPECT_NEAR(m[0], 1.0 / 25, 1e-12);
    EXPECT_NEAR(m[25], 1.0, 1e-12);
    EXPECT_LT(m[99], 1e-3);
    const auto mom = one_cycle_momenta(100);
    EXPECT_NEAR(mom[0], 0.95, 1e-12);
    EXPECT_NEAR(mom[25], 0.85, 1e-12);
    EXPECT_GT(mom[99], 0.94);
}

TEST(Schedule, SuggestionsOnACleanCurve) {
    std::vector<double> lrs, losses;
    for (int i = 0; i <= 100; ++i) {
        const double x = -6 + 6.0 * i / 100;  // log10 lr from 1e-6 to 1
        lrs.push_back(std::pow(10, x));
        losses.push_back(1 + std::pow(x + 2, 2) / 4 - (x < -2 ? 0 : 0));  // minimum at 1e-2
    }
    const auto s = suggest_learning_rates(lrs, losses);
    ASSERT_TRUE(s.valid);
    EXPECT_NEAR(std::log10(s.minimum), -3, 0.1);   // 1e-2 / 10
    EXPECT_LT(s.steepest, 1e-2);
    EXPECT_LT(s.valley, 1e-2);
    EXPECT_GT(s.valley, 1e-6);
}

TEST(Schedule, SuggestionsIgnoreNaNAndAnEarlySpike) {
    std::vector<double> lrs, losses;
    for (int i = 0; i <= 100; ++i) {
        const double x = -6 + 6.0 * i / 100;
        lrs.push_back(std::pow(10, x));
        losses.push_back(1 + std::pow(x + 2, 2) / 4);
    }
    losses[2] = 0.01;                                     // an early dip of a noisy start
    losses[60] = std::numeric_limits<double>::quiet_NaN();
    losses[99] = std::numeric_limits<double>::infinity();
    const auto s = suggest_learning_rates(lrs, losses);
    ASSERT_TRUE(s.valid);
    EXPECT_NEAR(std::log10(s.minimum), -3, 0.15);
}
