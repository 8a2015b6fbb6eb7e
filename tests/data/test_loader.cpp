#include "test_support.h"

#include "whisker/data/image_decode.h"
#include "whisker/data/loader.h"
#include "whisker/data/prepare.h"
#include "whisker/data/resize_cache.h"
#include "whisker/sample/sample_competition.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::data;

namespace {

// One small prepared sample project shared by the loader tests (built once).
class LoaderTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir;
        test::write_sample(*dir_ / "dl", 46, 9);
        PrepareOptions o;
        o.project = *dir_ / "p";
        o.source = *dir_ / "dl";
        o.valid_per_class = 4;
        dataset_ = new Dataset(prepare_dataset(o));
    }
    static void TearDownTestSuite() {
        delete dataset_;
        delete dir_;
    }
    static fs::path project() { return *dir_ / "p"; }
    static AugmentSettings augment() { return AugmentSettings::side_on(64); }
    static LoaderOptions options(int bs = 8, int threads = 2) {
        LoaderOptions o;
        o.batch_size = bs;
        o.threads = threads;
        return o;
    }
    struct EpochResult {
        std::vector<std::size_t> records;
        std::vector<std::int64_t> labels;
        std::vector<std::int64_t> batch_sizes;
        at::Tensor images;
    };
    static EpochResult run_epoch(DataLoader& l, int epoch) {
        EpochResult r;
        std::vector<at::Tensor> parts;
        l.start_epoch(epoch);
        while (auto b = l.next()) {
            EXPECT_EQ(b->images.dim(), 4);
            EXPECT_EQ(b->images.size(1), 3);
            EXPECT_EQ(b->images.size(2), 64);
            EXPECT_EQ(b->images.scalar_type(), at::kFloat);
            EXPECT_TRUE(b->failures.empty());
            r.batch_sizes.push_back(b->images.size(0));
            r.records.insert(r.records.end(), b->records.begin(), b->records.end());
            for (std::int64_t i = 0; i < b->labels.size(0); ++i) r.labels.push_back(b->labels[i].item<std::int64_t>());
            parts.push_back(b->images);
        }
        r.images = at::cat(parts);
        return r;
    }
    static test::TempDir* dir_;
    static Dataset* dataset_;
};
test::TempDir* LoaderTest::dir_ = nullptr;
Dataset* LoaderTest::dataset_ = nullptr;

}  // namespace

TEST_F(LoaderTest, EveryViewYieldsTheRightImagesWithTheRightLabels) {
    const Dataset& d = *dataset_;
    const std::map<View, Split> split_of{{View::Train, Split::Train}, {View::Valid, Split::Valid},
                                         {View::Fix, Split::Train},   {View::Aug, Split::Valid},
                                         {View::Test, Split::Test},   {View::TestAug, Split::Test}};
    for (const auto& [view, split] : split_of) {
        auto loader = make_loader(d, project(), view, augment(), options());
        const auto expected = d.indices(split);
        EXPECT_EQ(loader->size(), expected.size()) << view_name(view);
        const EpochResult r = run_epoch(*loader, 0);
        std::multiset<std::size_t> got(r.records.begin(), r.records.end());
        EXPECT_EQ(got, std::multiset<std::size_t>(expected.begin(), expected.end())) << view_name(view);
        for (std::size_t k = 0; k < r.records.size(); ++k) {
            const ImageRecord& rec = d.images[r.records[k]];
            EXPECT_EQ(r.labels[k], rec.labels.empty() ? -1 : rec.labels[0]) << view_name(view);
        }
        // In order for everything but the shuffled train view (fastai's fix/valid/test).
        if (view != View::Train) {
            EXPECT_EQ(r.records, expected) << view_name(view);
        }
        // drop_last=false: the last batch holds the remainder.
        const auto n = static_cast<std::int64_t>(expected.size());
        EXPECT_EQ(r.batch_sizes.back(), n % 8 == 0 ? 8 : n % 8) << view_name(view);
    }
    EXPECT_EQ(d.count(Split::Train), 38u);
    EXPECT_EQ(d.count(Split::Valid), 8u);
    EXPECT_EQ(d.count(Split::Test), 9u);
}

TEST_F(LoaderTest, TrainShufflesPerEpochReproducibly) {
    auto a = make_loader(*dataset_, project(), View::Train, augment(), options());
    auto b = make_loader(*dataset_, project(), View::Train, augment(), options());
    EXPECT_EQ(a->epoch_order(0), b->epoch_order(0));
    EXPECT_NE(a->epoch_order(0), a->epoch_order(1));
    LoaderOptions other = options();
    other.seed = 7;
    auto c = make_loader(*dataset_, project(), View::Train, augment(), other);
    EXPECT_NE(a->epoch_order(0), c->epoch_order(0));
}

TEST_F(LoaderTest, AugmentedEpochsAreReproducibleWhateverTheThreadCount) {
    auto one = make_loader(*dataset_, project(), View::Train, augment(), options(8, 1));
    auto three = make_loader(*dataset_, project(), View::Train, augment(), options(8, 3));
    const EpochResult a = run_epoch(*one, 2), b = run_epoch(*three, 2);
    EXPECT_EQ(a.records, b.records);
    EXPECT_TRUE(at::equal(a.images, b.images));
    // A different epoch augments differently.
    const EpochResult c = run_epoch(*one, 3);
    EXPECT_FALSE(at::equal(a.images, c.images));
    // Restarting an epoch midway drops the old batches.
    one->start_epoch(2);
    (void)one->next();
    const EpochResult again = run_epoch(*one, 2);
    EXPECT_TRUE(at::equal(a.images, again.images));
}

// Every augmentation preset (and --no-flip) through the loader: an epoch is the same with 1
// and 4 threads, each image is the training transform of its own seeded draw, and the views
// without augmentation do not depend on the preset.
TEST_F(LoaderTest, EveryPresetIsReproducibleWhateverTheThreadCount) {
    std::vector<AugmentSettings> settings;
    for (AugmentPreset p : augment_presets()) settings.push_back(AugmentSettings::for_preset(p, 64, default_max_zoom(p)));
    settings.push_back(AugmentSettings::for_preset(AugmentPreset::SideOn, 64, 1.1, true));
    settings.push_back(AugmentSettings::for_preset(AugmentPreset::TopDown, 64, 1.25, true));
    std::vector<at::Tensor> epochs;
    for (const AugmentSettings& s : settings) {
        const std::string name = std::string(augment_preset_name(s.preset)) + (s.no_flip ? " no-flip" : "");
        auto one = make_loader(*dataset_, project(), View::Train, s, options(8, 1));
        auto four = make_loader(*dataset_, project(), View::Train, s, options(8, 4));
        EXPECT_EQ(one->augment().preset, s.preset);
        EXPECT_EQ(one->augment().no_flip, s.no_flip);
        const EpochResult a = run_epoch(*one, 1), b = run_epoch(*four, 1);
        EXPECT_EQ(a.records, b.records) << name;
        EXPECT_TRUE(at::equal(a.images, b.images)) << name;
        epochs.push_back(a.images);

        // The first image is the training transform of the draw its seed gives
        // (seed, epoch + 1, position), decoded as the loader decodes it.
        DecodeOptions decode;
        decode.min_shorter_side = s.min_decode_side();
        const DecodedImage img = decode_image_file(dataset_->resolve(project(), dataset_->images[a.records[0]]), decode);
        Rng rng(derive_seed(options().seed, 2, 0));
        std::vector<float> expected(3 * 64 * 64);
        training_transform(img.rgb, s, draw_augmentation(s, rng), expected.data());
        const at::Tensor first = a.images[0].contiguous();
        EXPECT_TRUE(std::equal(expected.begin(), expected.end(), first.data_ptr<float>())) << name;

        // The validation view is the same whatever the preset.
        auto valid = make_loader(*dataset_, project(), View::Valid, s, options(8, 2));
        EXPECT_TRUE(at::equal(run_epoch(*valid, 0).images,
                              run_epoch(*make_loader(*dataset_, project(), View::Valid, augment(), options(8, 2)), 0).images))
            << name;
    }
    // The presets augment differently (the same shuffle, other images) — except side-on without
    // flips, which is basic exactly (settings 4 and 2).
    for (std::size_t i = 0; i < epochs.size(); ++i)
        for (std::size_t j = i + 1; j < epochs.size(); ++j)
            EXPECT_EQ(at::equal(epochs[i], epochs[j]), i == 2 && j == 4) << i << " " << j;
}

TEST_F(LoaderTest, ValidViewIsTheValidationTransform) {
    auto loader = make_loader(*dataset_, project(), View::Valid, augment(), options(4, 2));
    loader->start_epoch(0);
    auto batch = loader->next();
    ASSERT_TRUE(batch);
    const ImageRecord& rec = dataset_->images[batch->records[0]];
    const DecodedImage img = decode_image_file(dataset_->resolve(project(), rec));
    std::vector<float> expected(3 * 64 * 64);
    validation_transform(img.rgb, augment(), expected.data());
    const float* got = batch->images.data_ptr<float>();
    // The loader may decode reduced via DCT scaling, which changes pixels slightly; without it,
    // the result must be identical.
    LoaderOptions exact = options(4, 2);
    exact.dct_scaling = false;
    auto exact_loader = make_loader(*dataset_, project(), View::Valid, augment(), exact);
    exact_loader->start_epoch(0);
    auto exact_batch = exact_loader->next();
    const float* exact_got = exact_batch->images.data_ptr<float>();
    double max_diff = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        ASSERT_EQ(exact_got[i], expected[i]) << i;
        max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - expected[i])));
    }
    EXPECT_LT(max_diff, 1.0);  // normalised units: small resampling differences only
}

TEST_F(LoaderTest, AFileThatBreaksAfterPrepareIsReportedNotFatal) {
    test::TempDir dir;
    std::vector<LoadItem> items;
    for (int i = 0; i < 5; ++i) {
        const fs::path f = dir / ("img" + std::to_string(i) + ".jpg");
        test::write_image(f, test::pattern_image(80, 70, i));
        items.push_back({f, {i % 2}, static_cast<std::size_t>(i)});
    }
    test::write_bytes(items[2].path, "broken now");
    DataLoader loader(items, false, false, augment(), options(4, 2), 2, false);
    loader.start_epoch(0);
    auto b1 = loader.next();
    ASSERT_TRUE(b1);
    EXPECT_EQ(b1->images.size(0), 3);
    EXPECT_EQ(b1->labels.size(0), 3);
    EXPECT_EQ(b1->records, (std::vector<std::size_t>{0, 1, 3}));
    ASSERT_EQ(b1->failures.size(), 1u);
    EXPECT_EQ(b1->failures[0].path, items[2].path.string());
    EXPECT_NE(b1->failures[0].reason.find("not an image"), std::string::npos);
    auto b2 = loader.next();
    ASSERT_TRUE(b2);
    EXPECT_EQ(b2->images.size(0), 1);
    EXPECT_FALSE(loader.next());
}

// Workers build a batch together, a few images each (the chunk is 1 image with 4 threads and
// batches of 16, 4 with 1 thread and 16): the batches, their rows, records, labels and the
// files left out are the same whatever the thread count, also when an epoch is restarted
// while its batches are half built, or started at a later batch (a resumed fit).
TEST_F(LoaderTest, WorkersShareEachBatchAndGiveTheSameBatches) {
    test::TempDir dir;
    std::vector<LoadItem> items;
    for (int i = 0; i < 40; ++i) {
        const fs::path f = dir / ("img" + std::to_string(i) + ".jpg");
        test::write_image(f, test::pattern_image(70 + i, 66, i));
        items.push_back({f, {i % 3}, static_cast<std::size_t>(i)});
    }
    for (int broken : {5, 17, 18, 39}) test::write_bytes(items[static_cast<std::size_t>(broken)].path, "broken now");
    struct Seen {
        std::vector<at::Tensor> images, labels;
        std::vector<std::vector<std::size_t>> records;
        std::vector<std::vector<std::string>> failed;
    };
    auto take = [](DataLoader& l, int epoch, std::size_t first_batch) {
        Seen s;
        l.start_epoch(epoch, first_batch);
        while (auto b = l.next()) {
            s.images.push_back(b->images);
            s.labels.push_back(b->labels);
            s.records.push_back(b->records);
            std::vector<std::string> failed;
            for (const auto& f : b->failures) failed.push_back(f.path);
            s.failed.push_back(failed);
        }
        return s;
    };
    auto expect_same = [](const Seen& a, const Seen& b, std::size_t skip_a) {
        ASSERT_EQ(a.images.size(), b.images.size() + skip_a);
        for (std::size_t i = 0; i < b.images.size(); ++i) {
            EXPECT_TRUE(at::equal(a.images[i + skip_a], b.images[i])) << "batch " << i;
            EXPECT_TRUE(at::equal(a.labels[i + skip_a], b.labels[i])) << "batch " << i;
            EXPECT_EQ(a.records[i + skip_a], b.records[i]) << "batch " << i;
            EXPECT_EQ(a.failed[i + skip_a], b.failed[i]) << "batch " << i;
        }
    };
    DataLoader one(items, true, true, augment(), options(16, 1), 3, false);
    DataLoader four(items, true, true, augment(), options(16, 4), 3, false);
    const Seen reference = take(one, 1, 0);
    ASSERT_EQ(reference.images.size(), 3u);
    std::size_t rows = 0, failed = 0;
    for (std::size_t i = 0; i < reference.images.size(); ++i) {
        rows += static_cast<std::size_t>(reference.images[i].size(0));
        failed += reference.failed[i].size();
        EXPECT_EQ(reference.records[i].size(), static_cast<std::size_t>(reference.images[i].size(0)));
    }
    EXPECT_EQ(rows, 36u);
    EXPECT_EQ(failed, 4u);
    expect_same(reference, take(four, 1, 0), 0);
    // Restarted while the first batches are being built: the old epoch's work is dropped.
    for (int restart = 0; restart < 5; ++restart) {
        four.start_epoch(0);
        if (restart % 2) (void)four.next();
        expect_same(reference, take(four, 1, 0), 0);
    }
    expect_same(reference, take(four, 1, 2), 2);
    expect_same(take(one, 2, 0), take(four, 2, 0), 0);
}

TEST_F(LoaderTest, MultiLabelBatchesAreMultiHot) {
    test::TempDir dir;
    std::vector<LoadItem> items;
    for (int i = 0; i < 3; ++i) {
        const fs::path f = dir / ("m" + std::to_string(i) + ".png");
        test::write_image(f, test::pattern_image(70, 70, i));
        items.push_back({f, i == 1 ? std::vector<int>{0, 2} : std::vector<int>{1}, static_cast<std::size_t>(i)});
    }
    DataLoader loader(items, true, false, augment(), options(3, 1), 3, true);
    loader.start_epoch(0);
    auto b = loader.next();
    ASSERT_TRUE(b);
    ASSERT_EQ(b->labels.sizes(), (at::IntArrayRef{3, 3}));
    EXPECT_TRUE(at::equal(b->labels, at::tensor({0.f, 1.f, 0.f, 1.f, 0.f, 1.f, 0.f, 1.f, 0.f}).view({3, 3})));
}

TEST_F(LoaderTest, ResizeCacheIsUsedAndInvalidatedWhenTheSourceChanges) {
    test::TempDir dir;
    const fs::path big = dir / "big.jpg", small = dir / "small.jpg";
    test::write_image(big, test::pattern_image(900, 600, 1));
    test::write_image(small, test::pattern_image(100, 80, 2));
    ResizeCache cache(dir.path(), ResizeCache::side_for(64));
    EXPECT_EQ(cache.shorter_side(), 83);
    const auto r = cache.build({big, small});
    EXPECT_EQ(r.written, 1u);
    EXPECT_EQ(r.small, 1u);
    const fs::path cached = cache.lookup(big);
    EXPECT_NE(cached, big);
    const DecodedImage shrunk = decode_image_file(cached);
    EXPECT_EQ(shrunk.rgb.rows, 83);
    EXPECT_EQ(shrunk.rgb.cols, 124);  // floor(900 * 83/600)
    EXPECT_EQ(cache.lookup(small), small);
    // A fresh object reads the index from disk.
    ResizeCache reopened(dir.path(), 83);
    EXPECT_EQ(reopened.lookup(big), cached);
    EXPECT_EQ(reopened.build({big, small}).current, 2u);
    // Changing the source makes the entry stale until rebuilt.
    test::write_image(big, test::pattern_image(900, 600, 3));
    fs::last_write_time(big, fs::last_write_time(big) + std::chrono::seconds(3));
    EXPECT_EQ(reopened.lookup(big), big);
    EXPECT_EQ(reopened.build({big}).written, 1u);
    EXPECT_NE(reopened.lookup(big), big);
}

// The profile (whisker-cli bench loader --profile): off, nothing is timed; on, it counts every
// image built, every stage of the training transform takes time, the stages add up to the
// workers' total (what they do not cover — the seed, the loop — is a few per cent at most),
// and the batches are the same as without it.
TEST_F(LoaderTest, ProfileTimesEveryStageAndTheStagesMakeUpTheTotal) {
    auto plain = make_loader(*dataset_, project(), View::Train, augment(), options(8, 2));
    const EpochResult without = run_epoch(*plain, 3);
    const LoaderProfile off = plain->profile();
    EXPECT_EQ(off.images, 0u);
    EXPECT_EQ(off.total, 0.0);

    LoaderOptions o = options(8, 2);
    o.profile = true;
    auto profiled = make_loader(*dataset_, project(), View::Train, augment(), o);
    const EpochResult with = run_epoch(*profiled, 3);
    EXPECT_TRUE(at::equal(without.images, with.images));
    const LoaderProfile p = profiled->profile();
    EXPECT_EQ(p.images, profiled->size());
    std::map<std::string, double> stage;
    double sum = 0;
    for (const auto& s : p.stages) {
        EXPECT_GE(s.seconds, 0.0) << s.name;
        stage[s.name] = s.seconds;
        sum += s.seconds;
    }
    for (const char* name : {"read file", "decode", "resize (to float, scale)", "crop+flip+lighting+normalise",
                             "batch (allocate, labels)"})
        EXPECT_GT(stage.at(name), 0.0) << name;
    // Side-on rotates 3 images in 4: over 37 images some rotate (mean in the same pass) and
    // some do not (mean on its own).
    EXPECT_GT(stage.at("rotate (+ lighting mean)"), 0.0);
    EXPECT_GT(stage.at("lighting mean"), 0.0);
    EXPECT_EQ(stage.at("trivial augment, erasing"), 0.0);
    EXPECT_GT(p.total, 0.0);
    EXPECT_LE(sum, p.total * 1.0001);
    EXPECT_GE(sum, p.total * 0.9);

    profiled->reset_profile();
    EXPECT_EQ(profiled->profile().images, 0u);
    EXPECT_EQ(profiled->profile().total, 0.0);
}

// Batches are written into buffers that come back when the consumer drops a batch; a batch
// still held is never overwritten.
TEST_F(LoaderTest, HeldBatchesAreNotOverwrittenByLaterOnes) {
    auto loader = make_loader(*dataset_, project(), View::Fix, augment(), options(4, 2));
    loader->start_epoch(0);
    std::vector<at::Tensor> held, copies;
    while (auto b = loader->next()) {
        held.push_back(b->images);
        copies.push_back(b->images.clone());
    }
    ASSERT_GT(held.size(), 2u);
    for (std::size_t i = 0; i < held.size(); ++i) EXPECT_TRUE(at::equal(held[i], copies[i])) << i;
    // Epochs after the buffers came back give the same (unaugmented) images.
    held.clear();
    const EpochResult again = run_epoch(*loader, 1);
    EXPECT_TRUE(at::equal(again.images, at::cat(copies)));
}
