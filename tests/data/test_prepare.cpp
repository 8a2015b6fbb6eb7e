#include "test_support.h"

#include "whisker/common/archive.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/prepare.h"
#include "whisker/data/report.h"
#include "whisker/sample/sample_competition.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::data;

namespace {
std::map<std::string, std::string> listing(const fs::path& root) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(root))
        if (e.is_regular_file()) out[e.path().lexically_relative(root).string()] = read_file(e.path());
    return out;
}
const SkippedFile* skipped_named(const Dataset& d, const std::string& name) {
    for (const auto& s : d.skipped)
        if (fs::path(s.path).filename() == name) return &s;
    return nullptr;
}
std::set<std::string> valid_paths(const Dataset& d) {
    std::set<std::string> out;
    for (std::size_t i : d.indices(Split::Valid)) out.insert(d.images[i].path);
    return out;
}
}  // namespace

TEST(Prepare, KaggleNames) {
    EXPECT_EQ(class_from_kaggle_name("cat.12.jpg"), "cat");
    EXPECT_EQ(class_from_kaggle_name("golden_retriever.7.png"), "golden_retriever");
    EXPECT_EQ(class_from_kaggle_name("12.jpg"), "");
    EXPECT_EQ(class_from_kaggle_name("noext"), "");
    EXPECT_EQ(class_from_kaggle_name(".hidden.jpg"), "");
}

TEST(Prepare, KaggleZipsStratifiedSplit) {
    test::TempDir dir;
    test::write_sample(dir / "download", 60, 7);
    PrepareOptions o;
    o.project = dir / "project";
    o.source = dir / "download";
    o.valid_per_class = 5;
    const Dataset d = prepare_dataset(o);
    EXPECT_EQ(d.source_kind, "kaggle-zip");
    EXPECT_EQ(d.classes, (std::vector<std::string>{"cat", "dog"}));
    EXPECT_EQ(d.count(Split::Train), 50u);
    EXPECT_EQ(d.count(Split::Valid), 10u);
    EXPECT_EQ(d.count(Split::Test), 7u);
    const DatasetSummary s = summarize(d);
    EXPECT_EQ(s.counts[0][1], 5u);  // cats in valid
    EXPECT_EQ(s.counts[1][1], 5u);  // dogs in valid
    EXPECT_TRUE(d.skipped.empty());
    EXPECT_EQ(d.sample_submission, "sample_submission.csv");
    EXPECT_TRUE(fs::exists(dir / "project/sample_submission.csv"));
    // Extracted inside the project, stored relative to it.
    for (const auto& im : d.images) {
        EXPECT_FALSE(fs::path(im.path).is_absolute()) << im.path;
        EXPECT_TRUE(fs::exists(d.resolve(dir / "project", im)));
        if (im.split != Split::Test) {
            ASSERT_EQ(im.labels.size(), 1u);
            EXPECT_EQ(d.classes[static_cast<std::size_t>(im.labels[0])], class_from_kaggle_name(fs::path(im.path).filename().string()));
        } else {
            EXPECT_TRUE(im.labels.empty());
        }
    }
    // The manifest round-trips.
    const Dataset loaded = Dataset::load(dir / "project");
    EXPECT_EQ(loaded.to_json(), d.to_json());
}

TEST(Prepare, SplitIsReproducibleAndSeedDependent) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 80, 0);
    auto run = [&](const std::string& project, std::uint64_t seed) {
        PrepareOptions o;
        o.project = dir / project;
        o.source = dir / "dl";
        o.valid_frac = 0.25;
        o.seed = seed;
        return prepare_dataset(o);
    };
    const Dataset a = run("a", 1), b = run("b", 1), c = run("c", 2);
    EXPECT_EQ(valid_paths(a), valid_paths(b));
    EXPECT_NE(valid_paths(a), valid_paths(c));
    EXPECT_EQ(a.count(Split::Valid), 20u);  // 25% of 40 per class
}

TEST(Prepare, CompetitionZipWithNestedArchives) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 10, 3);
    {
        ZipWriter w(dir / "dogs-vs-cats-redux-kernels-edition.zip");
        for (const char* f : {"train.zip", "test.zip", "sample_submission.csv"}) w.add(f, read_file(dir / "dl" / f), true);
        w.commit();
    }
    PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "dogs-vs-cats-redux-kernels-edition.zip";
    const Dataset d = prepare_dataset(o);
    EXPECT_EQ(d.count(Split::Train) + d.count(Split::Valid), 10u);
    EXPECT_EQ(d.count(Split::Test), 3u);
    EXPECT_EQ(d.sample_submission, "sample_submission.csv");
}

TEST(Prepare, FolderTreeWithBadFilesGivesAUsefulReportAndKeepsTheRest) {
    test::TempDir dir;
    const auto counts = test::write_bad_tree(dir / "src");
    const auto before = listing(dir / "src");
    PrepareOptions o;
    o.project = dir / "project";
    o.source = dir / "src";
    o.threads = 2;
    const Dataset d = prepare_dataset(o);

    EXPECT_EQ(d.source_kind, "folder");
    EXPECT_TRUE(d.split.from_source);
    EXPECT_EQ(d.classes, (std::vector<std::string>{"bird", "cat", "dog"}));  // no "horse": empty
    EXPECT_EQ(d.count(Split::Train), static_cast<std::size_t>(counts.train_good));
    EXPECT_EQ(d.count(Split::Valid), static_cast<std::size_t>(counts.valid_good));
    EXPECT_EQ(d.count(Split::Test), static_cast<std::size_t>(counts.test_good));
    ASSERT_EQ(d.skipped.size(), static_cast<std::size_t>(counts.bad));
    ASSERT_NE(skipped_named(d, "empty.jpg"), nullptr);
    EXPECT_EQ(skipped_named(d, "empty.jpg")->reason, "empty file (0 bytes)");
    EXPECT_NE(skipped_named(d, "truncated.jpg")->reason.find("truncated"), std::string::npos);
    EXPECT_NE(skipped_named(d, "notes.jpg")->reason.find("text"), std::string::npos);
    EXPECT_NE(skipped_named(d, "tiny.png")->reason.find("too small"), std::string::npos);

    std::string warnings;
    for (const auto& w : d.warnings) warnings += w + "\n";
    EXPECT_NE(warnings.find("'train/horse' is empty"), std::string::npos) << warnings;
    EXPECT_NE(warnings.find("'bird' has no validation images"), std::string::npos) << warnings;

    // The odd names and the huge image are in, with their true sizes.
    bool found_unicode = false, found_huge = false;
    for (const auto& im : d.images) {
        if (fs::path(im.path).filename() == "chat noir été ü.jpg") found_unicode = true;
        if (fs::path(im.path).filename() == "huge.jpg") {
            found_huge = true;
            EXPECT_EQ(im.width, 6000);
            EXPECT_EQ(im.height, 4000);
        }
        EXPECT_TRUE(fs::path(im.path).is_absolute());  // the user's files stay where they are
    }
    EXPECT_TRUE(found_unicode);
    EXPECT_TRUE(found_huge);
    EXPECT_EQ(listing(dir / "src"), before);  // nothing moved, changed or deleted

    const std::string report = format_report(d);
    EXPECT_NE(report.find("Skipped files (4)"), std::string::npos) << report;
    EXPECT_NE(report.find("empty file (0 bytes)"), std::string::npos);
    EXPECT_NE(report.find("truncated.jpg"), std::string::npos);
    EXPECT_NE(report.find("max 6000 x 4000"), std::string::npos) << report;
}

TEST(Prepare, LabelsCsvMultiLabelAndMissingExtensions) {
    test::TempDir dir;
    for (int i = 0; i < 10; ++i) test::write_image(dir / "train" / ("img" + std::to_string(i) + ".jpg"), test::pattern_image(40, 40, i));
    std::string csv = "image_name,tags\n";
    for (int i = 0; i < 10; ++i) csv += "img" + std::to_string(i) + "," + (i % 2 ? "clear primary" : "haze") + "\n";
    csv += "missing_file,haze\n";
    csv += "img0.jpg,\n";
    write_file_atomically(dir / "train_v2.csv", csv);
    PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "train_v2.csv";
    const Dataset d = prepare_dataset(o);
    EXPECT_EQ(d.source_kind, "csv");
    EXPECT_TRUE(d.multi_label);
    EXPECT_EQ(d.classes, (std::vector<std::string>{"clear", "haze", "primary"}));
    EXPECT_EQ(d.count(Split::Train) + d.count(Split::Valid), 10u);
    EXPECT_EQ(d.count(Split::Valid), 2u);   // 20% of 10
    EXPECT_EQ(d.skipped.size(), 2u);        // the missing file and the empty label
    for (const auto& im : d.images)
        if (fs::path(im.path).filename() == "img1.jpg") {
            EXPECT_EQ(im.labels, (std::vector<int>{0, 2}));
        }
}

TEST(Prepare, MarksExcludeRelabelUndoAndSurviveAReprepare) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 20, 0);
    PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "dl";
    Dataset d = prepare_dataset(o);
    const std::string a = d.images[0].path, b = d.images[1].path;
    const std::vector<int> b_label = d.images[1].labels;
    const int other = 1 - b_label.at(0);
    EXPECT_TRUE(d.set_excluded(a, true));
    EXPECT_TRUE(d.relabel(b, {other}));
    EXPECT_FALSE(d.set_excluded("no/such.jpg", true));
    EXPECT_THROW(d.relabel(b, {7}), UserError);
    EXPECT_EQ(d.images[1].labels, std::vector<int>{other});
    EXPECT_EQ(d.images[1].original_labels, b_label);
    EXPECT_EQ(d.marked_count(), 2u);
    EXPECT_EQ(d.count(Split::Train) + d.count(Split::Valid), 19u);   // the excluded one is not used
    // Relabelling twice keeps what the source said; the round trip keeps the marks.
    EXPECT_TRUE(d.relabel(b, {other}));
    EXPECT_EQ(d.images[1].original_labels, b_label);
    d.save(dir / "p");
    const Dataset loaded = Dataset::load(dir / "p");
    EXPECT_TRUE(loaded.images[0].excluded);
    EXPECT_EQ(loaded.images[1].labels, std::vector<int>{other});
    EXPECT_TRUE(loaded.images[1].relabelled());
    // A new prepare (same source) keeps both marks.
    const Dataset again = prepare_dataset(o);
    EXPECT_EQ(again.marked_count(), 2u);
    for (const auto& im : again.images) {
        EXPECT_EQ(im.excluded, im.path == a) << im.path;
        if (im.path == b) EXPECT_EQ(im.labels, std::vector<int>{other});
    }
    // Undo restores the source's label; relabelling back to it is no mark at all.
    Dataset undo = again;
    EXPECT_TRUE(undo.clear_marks(b));
    EXPECT_TRUE(undo.clear_marks(a));
    EXPECT_EQ(undo.marked_count(), 0u);
    for (const auto& im : undo.images)
        if (im.path == b) EXPECT_EQ(im.labels, b_label);
    EXPECT_TRUE(undo.relabel(b, {other}));
    EXPECT_TRUE(undo.relabel(b, b_label));
    EXPECT_EQ(undo.marked_count(), 0u);
}

TEST(Prepare, ClearErrorsForUnusableSources) {
    test::TempDir dir;
    PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "nothing-here";
    EXPECT_THROW(prepare_dataset(o), UserError);
    fs::create_directories(dir / "empty");
    o.source = dir / "empty";
    try {
        prepare_dataset(o);
        FAIL();
    } catch (const UserError& e) {
        EXPECT_FALSE(e.hint().empty());
    }
    o.valid_frac = 1.5;
    EXPECT_THROW(prepare_dataset(o), UserError);
}

TEST(Prepare, MaterializeFastaiLayout) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 12, 2);
    PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "dl";
    o.valid_per_class = 2;
    const Dataset d = prepare_dataset(o);
    EXPECT_EQ(materialize_layout(d, dir / "p", dir / "layout"), 14u);
    int train_cats = 0, valid_dogs = 0, test = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir / "layout")) {
        if (!e.is_regular_file()) continue;
        const std::string rel = e.path().lexically_relative(dir / "layout").string();
        train_cats += rel.rfind("train/cat/", 0) == 0;
        valid_dogs += rel.rfind("valid/dog/", 0) == 0;
        test += rel.rfind("test/", 0) == 0;
    }
    EXPECT_EQ(train_cats, 4);
    EXPECT_EQ(valid_dogs, 2);
    EXPECT_EQ(test, 2);
    EXPECT_EQ(materialize_layout(d, dir / "p", dir / "layout"), 0u);  // idempotent
    // Re-preparing from the layout (a folder tree) gives the same split.
    PrepareOptions o2;
    o2.project = dir / "p2";
    o2.source = dir / "layout";
    const Dataset d2 = prepare_dataset(o2);
    EXPECT_EQ(d2.count(Split::Valid), 4u);
    EXPECT_EQ(d2.count(Split::Test), 2u);
}
