// Duplicates and leaks: planted copies of sample-competition pictures are found and reported
// in the right kind of group; the sample's distinct pictures make no group at the default
// threshold; the actions change marks only, and undo takes them back.
#include "whisker/explain/duplicates.h"

#include "whisker/data/image_decode.h"
#include "whisker/data/prepare.h"
#include "whisker/sample/sample_competition.h"

#include "test_support.h"

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <fstream>

namespace fs = std::filesystem;
using namespace whisker;
using whisker::data::Split;

namespace {

cv::Mat resized(const cv::Mat& m, double f) {
    cv::Mat out;
    cv::resize(m, out, cv::Size(), f, f, f < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
    return out;
}

struct Planted {
    test::TempDir dir;
    data::Dataset d;
    // Manifest indices of the planted images.
    std::size_t exact_train = 0, exact_valid = 0;          // same file bytes, train and valid
    std::size_t png_train = 0, png_valid = 0;              // the same decoded pixels as JPEG and PNG
    std::size_t resized_a = 0, resized_b = 0;              // halved + JPEG q60, both in train
    std::size_t cat_copy = 0, dog_copy = 0;                // one picture labelled cat and dog
    std::size_t leak_train = 0, leak_test = 0;             // train picture upscaled into test
    std::size_t distinct = 0;                              // images that are nobody's copy

    void add(const std::string& name, const cv::Mat& rgb, Split split, int label, int quality = 90,
             std::size_t* index = nullptr) {
        const fs::path file = dir / ("data/" + name);
        test::write_image(file, rgb, quality);
        add_file(name, split, label, index);
    }
    void add_file(const std::string& name, Split split, int label, std::size_t* index = nullptr) {
        data::ImageRecord im;
        im.path = "data/" + name;
        im.split = split;
        if (label >= 0) im.labels = {label};
        if (index) *index = d.images.size();
        d.images.push_back(im);
    }

    Planted() {
        d.classes = {"cat", "dog"};
        int seed = 1000;
        auto picture = [&](bool dog) { return sample::draw_animal(dog, static_cast<std::uint64_t>(seed++)); };
        // 60 distinct pictures across the splits.
        for (int i = 0; i < 60; ++i) {
            const bool dog = i % 2;
            const Split split = i < 40 ? Split::Train : i < 50 ? Split::Valid : Split::Test;
            add("distinct" + std::to_string(i) + ".jpg", picture(dog), split, split == Split::Test ? -1 : dog);
        }
        distinct = d.images.size();
        // Exact: the same file twice.
        const cv::Mat a = picture(false);
        add("exact_train.jpg", a, Split::Train, 0, 90, &exact_train);
        fs::copy_file(dir / "data/exact_train.jpg", dir / "data/exact_valid.jpg");
        add_file("exact_valid.jpg", Split::Valid, 0, &exact_valid);
        // Exact pixels, different files: a JPEG and a PNG of its decoded pixels.
        const cv::Mat b = picture(true);
        add("png_train.jpg", b, Split::Train, 1, 85, &png_train);
        const data::DecodedImage decoded = data::decode_image_file(dir / "data/png_train.jpg");
        add("png_valid.png", decoded.rgb, Split::Valid, 1, 0, &png_valid);
        // Resized and recompressed, within train.
        const cv::Mat c = picture(false);
        add("resized_a.jpg", c, Split::Train, 0, 92, &resized_a);
        add("resized_b.jpg", resized(c, 0.5), Split::Train, 0, 60, &resized_b);
        // One picture, two labels (recompressed).
        const cv::Mat e = picture(true);
        add("cat_copy.jpg", e, Split::Train, 0, 90, &cat_copy);
        add("dog_copy.jpg", e, Split::Train, 1, 70, &dog_copy);
        // A training picture upscaled into the test set.
        const cv::Mat f = picture(true);
        add("leak_train.jpg", f, Split::Train, 1, 90, &leak_train);
        add("leak_test.jpg", resized(f, 1.6), Split::Test, -1, 80, &leak_test);
    }

    const explain::DuplicateGroup* group_with(const explain::DuplicateReport& r, std::size_t record) const {
        for (const auto& g : r.groups)
            if (std::find(g.records.begin(), g.records.end(), record) != g.records.end()) return &g;
        return nullptr;
    }
};

std::vector<std::size_t> sorted(std::vector<std::size_t> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

TEST(Duplicates, PlantedCopiesAreFoundInTheRightKindOfGroup) {
    Planted p;
    explain::DuplicateOptions o;
    o.threads = 2;
    const auto r = explain::find_duplicates(p.dir.path(), p.d, o);
    EXPECT_TRUE(r.unreadable.empty());
    ASSERT_EQ(r.groups.size(), 5u) << explain::format_duplicates(p.d, r);

    const auto* exact = p.group_with(r, p.exact_train);
    ASSERT_NE(exact, nullptr);
    EXPECT_EQ(sorted(exact->records), sorted({p.exact_train, p.exact_valid}));
    EXPECT_TRUE(exact->exact);
    EXPECT_TRUE(exact->inflates_validation);
    EXPECT_FALSE(exact->labels_differ || exact->test_leak || exact->repeated);

    const auto* png = p.group_with(r, p.png_train);
    ASSERT_NE(png, nullptr);
    EXPECT_EQ(sorted(png->records), sorted({p.png_train, p.png_valid}));
    EXPECT_TRUE(png->exact) << "a PNG of a JPEG's decoded pixels is the same picture";
    EXPECT_TRUE(png->inflates_validation);

    const auto* near = p.group_with(r, p.resized_a);
    ASSERT_NE(near, nullptr);
    EXPECT_EQ(sorted(near->records), sorted({p.resized_a, p.resized_b}));
    EXPECT_FALSE(near->exact);
    EXPECT_GE(near->min_similarity, explain::kDefaultNearThreshold);
    EXPECT_TRUE(near->repeated);
    EXPECT_FALSE(near->inflates_validation || near->labels_differ || near->test_leak);

    const auto* conflict = p.group_with(r, p.cat_copy);
    ASSERT_NE(conflict, nullptr);
    EXPECT_EQ(sorted(conflict->records), sorted({p.cat_copy, p.dog_copy}));
    EXPECT_TRUE(conflict->labels_differ);
    EXPECT_EQ(conflict->kinds(), "labels differ, repeated");

    const auto* leak = p.group_with(r, p.leak_train);
    ASSERT_NE(leak, nullptr);
    EXPECT_EQ(sorted(leak->records), sorted({p.leak_train, p.leak_test}));
    EXPECT_TRUE(leak->test_leak);
    EXPECT_FALSE(leak->inflates_validation || leak->labels_differ);
    // Members are listed train, valid, test.
    EXPECT_EQ(leak->records.front(), p.leak_train);

    for (std::size_t i = 0; i < p.distinct; ++i) EXPECT_EQ(p.group_with(r, i), nullptr) << p.d.images[i].path;
    EXPECT_EQ(r.count_inflating(), 2u);
    EXPECT_EQ(r.count_label_conflicts(), 1u);
    EXPECT_EQ(r.count_test_leaks(), 1u);
    EXPECT_EQ(r.count_unresolved(), 5u);
}

TEST(Duplicates, AboveOneFindsExactCopiesOnly) {
    Planted p;
    explain::DuplicateOptions o;
    o.threshold = 1.5;
    const auto r = explain::find_duplicates(p.dir.path(), p.d, o);
    ASSERT_EQ(r.groups.size(), 2u);
    for (const auto& g : r.groups) EXPECT_TRUE(g.exact);
}

TEST(Duplicates, SampleCompetitionHasNoFalseGroupAtTheDefaultThreshold) {
    // 300 distinct pictures as the sample competition writes them (JPEG, random sizes),
    // across train, valid and test.
    test::TempDir dir;
    test::write_sample(dir / "dl", 240, 60);
    data::PrepareOptions po;
    po.project = dir / "p";
    po.source = dir / "dl";
    po.threads = 2;
    const data::Dataset d = data::prepare_dataset(po);
    ASSERT_EQ(d.images.size(), 300u);
    const auto r = explain::find_duplicates(po.project, d);
    EXPECT_TRUE(r.groups.empty()) << explain::format_duplicates(d, r);
}

TEST(Duplicates, DescriptorIgnoresResizingAndRecompressionButNotAnotherPicture) {
    const cv::Mat a = sample::draw_animal(false, 7), b = sample::draw_animal(false, 8);
    auto print = [](const cv::Mat& m, int quality) {
        const std::string bytes = test::encode_image(m, ".jpg", quality);
        const auto decoded = data::decode_image(bytes);
        return explain::fingerprint_pixels(decoded.rgb.ptr<unsigned char>(0), decoded.rgb.cols, decoded.rgb.rows);
    };
    const auto fa = print(a, 95);
    EXPECT_GT(explain::descriptor_similarity(fa, print(resized(a, 0.25), 50)), explain::kDefaultNearThreshold);
    EXPECT_GT(explain::descriptor_similarity(fa, print(resized(a, 2.0), 30)), explain::kDefaultNearThreshold);
    EXPECT_LT(explain::descriptor_similarity(fa, print(b, 95)), 0.95);
    EXPECT_NE(fa.pixels, print(a, 94).pixels);
    // A flat image has no shape: only exact copies of it count.
    const cv::Mat grey(40, 50, CV_8UC3, cv::Scalar(128, 128, 128));
    const auto flat = explain::fingerprint_pixels(grey.ptr<unsigned char>(0), grey.cols, grey.rows);
    EXPECT_TRUE(flat.flat());
    EXPECT_EQ(explain::descriptor_similarity(flat, flat), 0.0);
}

TEST(Duplicates, ActionsAreMarksThatUndoTakesBack) {
    Planted p;
    auto r = explain::find_duplicates(p.dir.path(), p.d);
    const auto exact = *p.group_with(r, p.exact_train);
    const int exact_id = exact.id;

    // Keep the train/valid group in train: its valid copy is excluded, the group resolved.
    const auto changed = explain::keep_group_in_split(p.d, exact, Split::Train);
    EXPECT_EQ(changed, std::vector<std::string>{"data/exact_valid.jpg"});
    EXPECT_TRUE(p.d.images[p.exact_valid].excluded);
    EXPECT_FALSE(p.d.images[p.exact_train].excluded);
    EXPECT_THROW(explain::keep_group_in_split(p.d, exact, Split::Test), UserError);

    // The conflicting labels: relabel both as dog.
    const auto conflict = *p.group_with(r, p.cat_copy);
    EXPECT_EQ(explain::relabel_group(p.d, conflict, 1).size(), 1u);
    EXPECT_EQ(p.d.images[p.cat_copy].labels, std::vector<int>{1});
    EXPECT_TRUE(p.d.images[p.cat_copy].relabelled());

    explain::update_kinds(p.d, r.groups);
    EXPECT_TRUE(r.group(exact_id)->resolved());
    EXPECT_FALSE(p.group_with(r, p.cat_copy)->labels_differ);

    // Numbers stay the same when the scan runs again with the marks in the manifest.
    const auto again = explain::find_duplicates(p.dir.path(), p.d);
    ASSERT_EQ(again.groups.size(), r.groups.size());
    EXPECT_EQ(again.group(exact_id)->records, exact.records);
    EXPECT_TRUE(again.group(exact_id)->resolved());
    // 4 left: the relabelled pair is still one picture twice in train (repeated).
    EXPECT_EQ(again.count_unresolved(), 4u);
    EXPECT_EQ(again.group(p.group_with(r, p.cat_copy)->id)->kinds(), "repeated");
    EXPECT_NE(explain::format_duplicates(p.d, again, true).find("resolved by your marks"), std::string::npos);

    // Undo restores what the source said.
    EXPECT_EQ(explain::undo_group(p.d, exact).size(), 1u);
    EXPECT_EQ(explain::undo_group(p.d, conflict).size(), 1u);
    EXPECT_FALSE(p.d.images[p.exact_valid].excluded);
    EXPECT_EQ(p.d.images[p.cat_copy].labels, std::vector<int>{0});
    EXPECT_EQ(p.d.marked_count(), 0u);

    // Excluding all but one copy keeps the first.
    const auto near = *p.group_with(r, p.resized_a);
    EXPECT_EQ(explain::exclude_group(p.d, near, true), std::vector<std::string>{"data/resized_b.jpg"});
    // The files themselves are never touched.
    EXPECT_TRUE(fs::exists(p.dir / "data/resized_b.jpg"));
    EXPECT_TRUE(fs::exists(p.dir / "data/exact_valid.jpg"));
}

TEST(Duplicates, FingerprintsAreCachedAndRenewedWhenAFileChanges) {
    Planted p;
    const auto first = explain::find_duplicates(p.dir.path(), p.d);
    ASSERT_TRUE(fs::exists(p.dir / "cache/duplicates/fingerprints.bin"));
    // Replace the leaked test copy by a different picture: the cache entry is stale.
    test::write_image(p.dir / "data/leak_test.jpg", sample::draw_animal(false, 99999), 80);
    fs::last_write_time(p.dir / "data/leak_test.jpg", fs::last_write_time(p.dir / "data/leak_test.jpg") + std::chrono::seconds(5));
    const auto second = explain::find_duplicates(p.dir.path(), p.d);
    EXPECT_EQ(second.groups.size(), first.groups.size() - 1);
    EXPECT_EQ(second.count_test_leaks(), 0u);
    // A damaged cache is rebuilt, not fatal.
    std::ofstream(p.dir / "cache/duplicates/fingerprints.bin") << "garbage";
    EXPECT_EQ(explain::find_duplicates(p.dir.path(), p.d).groups.size(), second.groups.size());
}

TEST(Duplicates, ReportsInCsvAndJson) {
    Planted p;
    const auto r = explain::find_duplicates(p.dir.path(), p.d);
    explain::write_duplicates_csv(p.dir / "dups.csv", p.dir.path(), p.d, r);
    std::ifstream in(p.dir / "dups.csv");
    std::string header, line;
    std::getline(in, header);
    EXPECT_EQ(header, "group,kinds,exact,similarity,split,label,marked,path");
    int rows = 0;
    while (std::getline(in, line)) ++rows;
    EXPECT_EQ(rows, 10);
    const std::string json = explain::duplicates_json(p.d, r);
    EXPECT_NE(json.find("\"labels_differ\": true"), std::string::npos);
    EXPECT_NE(json.find("\"test_leak\": true"), std::string::npos);
}
