#include "whisker/data/folds.h"

#include "../common/union_find.h"

#include "whisker/common/errors.h"
#include "whisker/common/hash.h"
#include "whisker/common/random.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <numeric>

namespace whisker::data {

namespace {

bool labelled(const ImageRecord& im) { return im.split != Split::Test && !im.labels.empty(); }

// Images dealt together: a duplicate group, or one image.
struct Unit {
    std::vector<std::size_t> images;
    int stratum = 0;   // the class it is balanced as
};

// Deals `units` into K folds: units of several images first (largest first), each to the fold
// with the fewest images of its class so far (then the fewest images, then the lowest number
// after a seeded rotation); then single images class by class the same way, which leaves every
// class within one image of an equal share per fold.
void deal(std::vector<Unit> units, int k, std::size_t classes, Rng& rng, std::vector<int>& fold_of) {
    std::vector<std::vector<long>> per_class(classes, std::vector<long>(static_cast<std::size_t>(k), 0));
    std::vector<long> total(static_cast<std::size_t>(k), 0);
    shuffle_in_place(units, rng);
    std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) {
        if ((a.images.size() > 1) != (b.images.size() > 1)) return a.images.size() > 1;
        if (a.images.size() > 1) return a.images.size() > b.images.size();
        return a.stratum < b.stratum;
    });
    int rotation = static_cast<int>(rng.uniform_int(0, k - 1));
    int last_stratum = -1;
    for (const Unit& u : units) {
        if (u.images.size() == 1 && u.stratum != last_stratum) {
            // A new class: its surplus images start at another fold.
            last_stratum = u.stratum;
            rotation = (rotation + 1) % k;
        }
        const auto& counts = per_class[static_cast<std::size_t>(u.stratum)];
        int best = -1;
        for (int step = 0; step < k; ++step) {
            const int f = (rotation + step) % k;
            const auto fs = static_cast<std::size_t>(f);
            if (best < 0) {
                best = f;
                continue;
            }
            const auto bs = static_cast<std::size_t>(best);
            if (counts[fs] < counts[bs] || (counts[fs] == counts[bs] && total[fs] < total[bs])) best = f;
        }
        const auto bs = static_cast<std::size_t>(best);
        per_class[static_cast<std::size_t>(u.stratum)][bs] += static_cast<long>(u.images.size());
        total[bs] += static_cast<long>(u.images.size());
        for (std::size_t i : u.images) fold_of[i] = best;
    }
}

}  // namespace

void assign_folds(Dataset& d, const FoldOptions& o) {
    const int k = o.folds;
    if (k < 2) throw UserError(fmt::format("--folds {}: cross-validation needs at least 2 folds", k), "use e.g. --folds 5");
    const std::size_t n = d.images.size();
    const std::size_t classes = d.classes.size();

    // Usable images per class (multi-label: every label counts).
    std::vector<long> usable_per_class(classes, 0);
    std::size_t usable = 0;
    for (const auto& im : d.images) {
        if (!labelled(im) || im.excluded) continue;
        ++usable;
        for (int l : im.labels) ++usable_per_class[static_cast<std::size_t>(l)];
    }
    if (usable < static_cast<std::size_t>(k))
        throw UserError(fmt::format("{} folds need at least {} labelled images, and the dataset has {}", k, k, usable),
                        "use fewer folds");
    std::vector<std::string> short_classes;
    long fewest = usable_per_class.empty() ? 0 : *std::max_element(usable_per_class.begin(), usable_per_class.end());
    for (std::size_t c = 0; c < classes; ++c) {
        if (usable_per_class[c] > 0 && usable_per_class[c] < k) {
            short_classes.push_back(fmt::format("'{}' ({})", d.classes[c], usable_per_class[c]));
            fewest = std::min(fewest, usable_per_class[c]);
        }
    }
    if (!short_classes.empty()) {
        std::string names;
        for (const auto& s : short_classes) names += (names.empty() ? "" : ", ") + s;
        throw UserError(fmt::format("{} folds need at least {} images of every class, and {} {} fewer: a fold would be "
                                    "validated without {}",
                                    k, k, short_classes.size() == 1 ? "class" : "classes", names + (short_classes.size() == 1 ? " has" : " have"),
                                    short_classes.size() == 1 ? "that class" : "those classes"),
                        fewest >= 2 ? fmt::format("use --folds {} or fewer, or add images of {}", fewest,
                                                  short_classes.size() == 1 ? "that class" : "those classes")
                                    : "add images of those classes, or exclude them from the dataset");
    }

    // The stratum of an image: its class; for multi-label, its rarest label.
    auto stratum_of = [&](const ImageRecord& im) {
        int best = im.labels.front();
        for (int l : im.labels)
            if (usable_per_class[static_cast<std::size_t>(l)] < usable_per_class[static_cast<std::size_t>(best)]) best = l;
        return best;
    };

    // Units: groups merged transitively, labelled members only.
    UnionFind uf(n);
    for (const auto& g : o.groups) {
        std::size_t first = n;
        for (std::size_t i : g) {
            if (i >= n || !labelled(d.images[i])) continue;
            if (first == n) first = i;
            else uf.join(first, i);
        }
    }
    std::map<std::size_t, Unit> by_root;
    for (std::size_t i = 0; i < n; ++i)
        if (labelled(d.images[i])) by_root[uf.find(i)].images.push_back(i);
    // Units with a usable image are balanced together; all-excluded units afterwards, apart.
    std::vector<Unit> in_use, excluded_only;
    for (auto& [root, u] : by_root) {
        std::map<int, int> votes;
        bool any_usable = false;
        for (std::size_t i : u.images) {
            const auto& im = d.images[i];
            if (im.excluded) continue;
            any_usable = true;
            ++votes[stratum_of(im)];
        }
        if (!any_usable)
            for (std::size_t i : u.images) ++votes[stratum_of(d.images[i])];
        u.stratum = std::max_element(votes.begin(), votes.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
        (any_usable ? in_use : excluded_only).push_back(std::move(u));
    }

    std::vector<int> fold_of(n, -1);
    Rng rng(derive_seed(o.seed, 0xf01d5));
    deal(std::move(in_use), k, classes, rng, fold_of);
    deal(std::move(excluded_only), k, classes, rng, fold_of);
    for (std::size_t i = 0; i < n; ++i) d.images[i].fold = fold_of[i];
    d.split.folds = k;
    d.split.fold_seed = o.seed;
    d.split.fold_grouping = o.groups.empty() ? std::string() : o.grouping;
}

void clear_folds(Dataset& d) {
    for (auto& im : d.images) im.fold = -1;
    d.split.folds = 0;
    d.split.fold_seed = 0;
    d.split.fold_grouping.clear();
}

void check_fold(const Dataset& d, int fold) {
    if (d.folds() <= 0)
        throw UserError("the dataset has no cross-validation folds",
                        "assign them first: whisker-cli data folds PROJECT --folds 5 (or data prepare … --folds 5)");
    if (fold < 0 || fold >= d.folds())
        throw UserError(fmt::format("there is no fold {}: the dataset has {} folds, numbered 0 to {}", fold, d.folds(), d.folds() - 1),
                        fmt::format("use --fold 0 … --fold {}, or run them all with --folds", d.folds() - 1));
}

Dataset fold_view(const Dataset& d, int fold) {
    check_fold(d, fold);
    Dataset v = d;
    for (auto& im : v.images) {
        if (!labelled(im)) continue;
        if (im.fold < 0)
            throw UserError("image " + im.path + " has no fold", "assign the folds again: whisker-cli data folds PROJECT --folds " +
                                                                      std::to_string(d.folds()));
        im.split = im.fold == fold ? Split::Valid : Split::Train;
    }
    return v;
}

std::vector<std::vector<std::size_t>> fold_members(const Dataset& d) {
    std::vector<std::vector<std::size_t>> out(static_cast<std::size_t>(std::max(d.folds(), 0)));
    for (std::size_t i = 0; i < d.images.size(); ++i) {
        const auto& im = d.images[i];
        if (labelled(im) && !im.excluded && im.fold >= 0 && im.fold < d.folds()) out[static_cast<std::size_t>(im.fold)].push_back(i);
    }
    return out;
}

std::string fold_fingerprint(const Dataset& d, int fold) {
    check_fold(d, fold);
    std::string ident = fmt::format("{}|{}|", d.folds(), fold);
    for (const auto& c : d.classes) ident += c + ",";
    ident += "\n";
    for (const auto& im : d.images) {
        if (!labelled(im) || im.excluded) continue;
        ident += (im.fold == fold ? "v:" : "t:") + im.path + ":";
        for (int l : im.labels) ident += std::to_string(l) + ",";
        ident += "\n";
    }
    return sha256_hex(ident);
}

std::string describe_folds(const Dataset& d) {
    if (d.folds() <= 0) return "no folds";
    const auto members = fold_members(d);
    std::size_t lo = members.front().size(), hi = lo;
    for (const auto& m : members) {
        lo = std::min(lo, m.size());
        hi = std::max(hi, m.size());
    }
    std::string s = fmt::format("{} folds of {} images, stratified by class", d.folds(), lo == hi ? std::to_string(lo) : fmt::format("{}-{}", lo, hi));
    if (!d.split.fold_grouping.empty()) s += ", " + d.split.fold_grouping + " kept in one fold";
    return s;
}

}  // namespace whisker::data
