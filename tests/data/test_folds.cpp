// Cross-validation folds (data/folds.h): stratified within one image per class, disjoint,
// covering every labelled image (excluded ones too, test images never), seeded, groups kept in
// one fold, fold views, clear errors, and the manifest's round trip (old manifests still load).
#include "whisker/common/errors.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

using namespace whisker;
using namespace whisker::data;

namespace {

// Classes a, b, c with 23, 17 and 9 labelled images (a fifth of them valid), 4 test images,
// and a few excluded ones.
Dataset make_dataset() {
    Dataset d;
    d.classes = {"a", "b", "c"};
    const int counts[] = {23, 17, 9};
    for (int c = 0; c < 3; ++c)
        for (int i = 0; i < counts[c]; ++i) {
            ImageRecord im;
            im.path = "train/" + d.classes[static_cast<std::size_t>(c)] + "." + std::to_string(i) + ".jpg";
            im.split = i % 5 == 0 ? Split::Valid : Split::Train;
            im.labels = {c};
            im.excluded = c == 0 && i >= 20;   // 3 excluded images of class a
            d.images.push_back(im);
        }
    for (int i = 0; i < 4; ++i) {
        ImageRecord im;
        im.path = "test/" + std::to_string(i) + ".jpg";
        im.split = Split::Test;
        d.images.push_back(im);
    }
    return d;
}

std::map<int, std::map<int, int>> usable_counts(const Dataset& d) {   // fold -> class -> images
    std::map<int, std::map<int, int>> out;
    for (const auto& im : d.images)
        if (im.split != Split::Test && !im.excluded) ++out[im.fold][im.labels[0]];
    return out;
}

}  // namespace

TEST(Folds, StratifiedDisjointAndCovering) {
    for (int k : {2, 3, 4, 5}) {
        Dataset d = make_dataset();
        assign_folds(d, {k, 7, {}, ""});
        EXPECT_EQ(d.folds(), k);
        std::map<int, int> per_class;
        std::size_t usable = 0;
        for (const auto& im : d.images) {
            if (im.split == Split::Test) {
                EXPECT_EQ(im.fold, -1) << "test images have no fold";
                continue;
            }
            ASSERT_GE(im.fold, 0) << im.path;   // every labelled image, excluded ones too
            ASSERT_LT(im.fold, k);
            if (!im.excluded) ++per_class[im.labels[0]], ++usable;
        }
        // Disjoint and covering: fold_members partitions the usable labelled images.
        const auto members = fold_members(d);
        ASSERT_EQ(members.size(), static_cast<std::size_t>(k));
        std::set<std::size_t> seen;
        std::size_t total = 0;
        for (const auto& m : members) {
            total += m.size();
            seen.insert(m.begin(), m.end());
        }
        EXPECT_EQ(total, usable);
        EXPECT_EQ(seen.size(), usable);
        // Each fold's share of a class within one image of the whole's.
        const auto counts = usable_counts(d);
        for (int f = 0; f < k; ++f)
            for (const auto& [c, n] : per_class) {
                const int got = counts.count(f) && counts.at(f).count(c) ? counts.at(f).at(c) : 0;
                EXPECT_LT(std::abs(got - static_cast<double>(n) / k), 1.0) << "k " << k << " fold " << f << " class " << c;
            }
        // The folds' sizes differ by at most one image.
        std::size_t lo = members[0].size(), hi = lo;
        for (const auto& m : members) lo = std::min(lo, m.size()), hi = std::max(hi, m.size());
        EXPECT_LE(hi - lo, 1u) << "k " << k;
    }
}

TEST(Folds, SeededAndReproducible) {
    Dataset a = make_dataset(), b = make_dataset(), c = make_dataset();
    assign_folds(a, {5, 42, {}, ""});
    assign_folds(b, {5, 42, {}, ""});
    assign_folds(c, {5, 43, {}, ""});
    std::vector<int> fa, fb, fc;
    for (std::size_t i = 0; i < a.images.size(); ++i) {
        fa.push_back(a.images[i].fold);
        fb.push_back(b.images[i].fold);
        fc.push_back(c.images[i].fold);
    }
    EXPECT_EQ(fa, fb);
    EXPECT_NE(fa, fc);
    EXPECT_EQ(fold_fingerprint(a, 2), fold_fingerprint(b, 2));
    EXPECT_NE(fold_fingerprint(a, 2), fold_fingerprint(c, 2));
}

TEST(Folds, GroupsStayInOneFold) {
    Dataset d = make_dataset();
    // Near-duplicate groups: within a class, across classes (labels differ), with a test image
    // (ignored), and two overlapping groups (merged).
    const std::vector<std::vector<std::size_t>> groups = {{0, 1, 2}, {3, 25}, {30, 31}, {31, 32, 49}, {4, 50}};
    assign_folds(d, {4, 1, groups, "near-duplicate groups"});
    EXPECT_EQ(d.images[0].fold, d.images[1].fold);
    EXPECT_EQ(d.images[1].fold, d.images[2].fold);
    EXPECT_EQ(d.images[3].fold, d.images[25].fold);
    EXPECT_EQ(d.images[30].fold, d.images[32].fold);
    EXPECT_EQ(d.images[31].fold, d.images[32].fold);
    EXPECT_EQ(d.images[50].fold, -1);   // a test image stays out of the folds
    EXPECT_EQ(d.split.fold_grouping, "near-duplicate groups");
    EXPECT_NE(describe_folds(d).find("near-duplicate groups kept in one fold"), std::string::npos) << describe_folds(d);
    // The groups are small: every class stays within two images of an equal share.
    std::map<int, int> per_class;
    for (const auto& im : d.images)
        if (im.split != Split::Test && !im.excluded) ++per_class[im.labels[0]];
    for (const auto& [f, counts] : usable_counts(d))
        for (const auto& [c, n] : counts) EXPECT_LE(std::abs(n - per_class[c] / 4.0), 2.0) << f << " " << c;
}

TEST(Folds, ClearErrors) {
    Dataset d = make_dataset();
    try {
        assign_folds(d, {10, 1, {}, ""});   // class c has 9 images
        FAIL() << "10 folds with 9 images of a class";
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("'c' (9)"), std::string::npos) << e.what();
        EXPECT_NE(e.hint().find("--folds 9 or fewer"), std::string::npos) << e.hint();
    }
    EXPECT_EQ(d.folds(), 0) << "a failed deal changes nothing";
    EXPECT_THROW(assign_folds(d, {1, 1, {}, ""}), UserError);
    try {
        check_fold(d, 0);
        FAIL() << "no folds";
    } catch (const UserError& e) {
        EXPECT_NE(e.hint().find("data folds"), std::string::npos) << e.hint();
    }
    assign_folds(d, {5, 1, {}, ""});
    try {
        check_fold(d, 7);
        FAIL() << "fold 7 of 5";
    } catch (const UserError& e) {
        EXPECT_STREQ(e.what(), "there is no fold 7: the dataset has 5 folds, numbered 0 to 4");
    }
}

TEST(Folds, ViewMakesTheFoldTheValidSplit) {
    Dataset d = make_dataset();
    assign_folds(d, {3, 5, {}, ""});
    const Dataset v = fold_view(d, 1);
    ASSERT_EQ(v.images.size(), d.images.size());
    for (std::size_t i = 0; i < d.images.size(); ++i) {
        const auto& im = d.images[i];
        if (im.split == Split::Test) EXPECT_EQ(v.images[i].split, Split::Test);
        else EXPECT_EQ(v.images[i].split, im.fold == 1 ? Split::Valid : Split::Train) << im.path;
        EXPECT_EQ(v.images[i].path, im.path);
    }
    EXPECT_EQ(v.count(Split::Valid), fold_members(d)[1].size());
    EXPECT_EQ(v.count(Split::Train), fold_members(d)[0].size() + fold_members(d)[2].size());
}

TEST(Folds, ManifestRoundTripAndOldManifests) {
    Dataset d = make_dataset();
    d.split.valid_frac = 0.2;
    assign_folds(d, {4, 9, {{0, 1}}, "near-duplicate groups (similarity >= 0.98)"});
    const Dataset back = Dataset::from_json(d.to_json());
    EXPECT_EQ(back.folds(), 4);
    EXPECT_EQ(back.split.fold_seed, 9u);
    EXPECT_EQ(back.split.fold_grouping, d.split.fold_grouping);
    for (std::size_t i = 0; i < d.images.size(); ++i) EXPECT_EQ(back.images[i].fold, d.images[i].fold);
    // A manifest from before folds: no "fold"/"folds" keys.
    Dataset old = make_dataset();
    old.split.valid_frac = 0.2;
    const Dataset loaded = Dataset::from_json(old.to_json());
    EXPECT_EQ(loaded.folds(), 0);
    for (const auto& im : loaded.images) EXPECT_EQ(im.fold, -1);
    EXPECT_EQ(old.to_json().find("\"fold"), std::string::npos);
    // A fold out of range is a damaged manifest.
    std::string text = d.to_json();
    const auto at = text.find("\"fold\": ");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 9, "\"fold\": 9");
    EXPECT_THROW(Dataset::from_json(text), UserError);
    clear_folds(d);
    EXPECT_EQ(d.folds(), 0);
    EXPECT_EQ(fold_members(d).size(), 0u);
}
