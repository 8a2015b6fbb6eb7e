#include "whisker/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace whisker::train {

namespace {
constexpr double kPi = 3.14159265358979323846;
double cos_anneal(double start, double end, double pct) { return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0); }
}  // namespace

int sgdr_epochs(double cycle_len, int cycle_mult, int n_cycle) {
    if (cycle_mult == 1) return static_cast<int>(std::lround(cycle_len * n_cycle));
    return static_cast<int>(std::ceil(cycle_len * (1 - std::pow(cycle_mult, n_cycle)) / (1 - cycle_mult)));
}

std::vector<double> sgdr_multipliers(int batches_per_epoch, double cycle_len, int cycle_mult, int n_cycle) {
    const long total = static_cast<long>(sgdr_epochs(cycle_len, cycle_mult, n_cycle)) * batches_per_epoch;
    std::vector<double> out;
    out.reserve(static_cast<std::size_t>(total));
    double nb = batches_per_epoch * cycle_len;
    long cycle_iter = 0;
    for (long iteration = 0; iteration < total; ++iteration) {
        if (iteration < nb / 20) {
            ++cycle_iter;
            out.push_back(0.01);
            continue;
        }
        const double cos_out = std::cos(kPi * static_cast<double>(cycle_iter) / nb) + 1;
        ++cycle_iter;
        if (cycle_iter == static_cast<long>(nb)) {
            cycle_iter = 0;
            nb *= cycle_mult;
        }
        out.push_back(cos_out / 2);
    }
    return out;
}

std::vector<double> lr_find_rates(double start, double end, int batches, bool linear) {
    std::vector<double> out;
    for (int i = 0; i < batches; ++i) {
        const double t = static_cast<double>(i) / batches;
        out.push_back(linear ? start + (end - start) * t : start * std::pow(end / start, t));
    }
    return out;
}

std::vector<double> one_cycle_multipliers(int steps, const OneCycle& oc) {
    std::vector<double> out;
    const int up = static_cast<int>(std::lround(steps * oc.pct_start));
    for (int i = 0; i < steps; ++i) {
        if (i < up) out.push_back(cos_anneal(1.0 / oc.div, 1.0, static_cast<double>(i) / std::max(1, up)));
        else out.push_back(cos_anneal(1.0, 1.0 / oc.div_final, static_cast<double>(i - up) / std::max(1, steps - up)));
    }
    return out;
}

std::vector<double> one_cycle_momenta(int steps, const OneCycle& oc) {
    std::vector<double> out;
    const int up = static_cast<int>(std::lround(steps * oc.pct_start));
    for (int i = 0; i < steps; ++i) {
        if (i < up) out.push_back(cos_anneal(oc.mom_max, oc.mom_min, static_cast<double>(i) / std::max(1, up)));
        else out.push_back(cos_anneal(oc.mom_min, oc.mom_max, static_cast<double>(i - up) / std::max(1, steps - up)));
    }
    return out;
}

LrSuggestions suggest_learning_rates(const std::vector<double>& lrs, const std::vector<double>& losses) {
    LrSuggestions s;
    std::vector<double> x, y;  // log10 lr, loss (finite points only)
    for (std::size_t i = 0; i < lrs.size() && i < losses.size(); ++i)
        if (std::isfinite(losses[i]) && lrs[i] > 0) {
            x.push_back(std::log10(lrs[i]));
            y.push_back(losses[i]);
        }
    if (x.size() < 5) return s;
    // Minimum: the lowest loss, but only after the curve has settled: an early spike or an
    // early dip of the first few noisy points is ignored by skipping the first 5%.
    const std::size_t skip = x.size() / 20;
    const auto min_it = std::min_element(y.begin() + static_cast<long>(skip), y.end());
    const std::size_t imin = static_cast<std::size_t>(min_it - y.begin());
    s.minimum = std::pow(10.0, x[imin]) / 10.0;
    // Steepest: most negative slope (central differences) before the minimum.
    double best_slope = std::numeric_limits<double>::infinity();
    std::size_t isteep = 0;
    for (std::size_t i = std::max<std::size_t>(1, skip); i + 1 < x.size() && i <= imin; ++i) {
        const double slope = (y[i + 1] - y[i - 1]) / (x[i + 1] - x[i - 1]);
        if (slope < best_slope) {
            best_slope = slope;
            isteep = i;
        }
    }
    s.steepest = std::pow(10.0, x[isteep]);
    // Valley, exactly fastai v2's: the longest decreasing subsequence of the losses; the
    // point int(len/3) + int(len/6) into it.
    const std::size_t n = y.size();
    std::vector<std::size_t> lds(n, 1);
    std::size_t max_start = 0, max_end = 0;
    for (std::size_t i = 1; i < n; ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (y[i] < y[j] && lds[i] < lds[j] + 1) lds[i] = lds[j] + 1;
            if (lds[max_end] < lds[i]) {
                max_end = i;
                max_start = max_end - lds[max_end];
            }
        }
    }
    const double sections = static_cast<double>(max_end - max_start) / 3.0;
    const std::size_t idx = max_start + static_cast<std::size_t>(sections) + static_cast<std::size_t>(sections / 2);
    s.valley = std::pow(10.0, x[std::min(idx, n - 1)]);
    s.valid = true;
    return s;
}

}  // namespace whisker::train
