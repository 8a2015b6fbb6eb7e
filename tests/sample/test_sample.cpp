#include "test_support.h"

#include "whisker/common/archive.h"
#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/random.h"
#include "whisker/common/files.h"
#include "whisker/data/image_decode.h"
#include "whisker/sample/sample_competition.h"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>

namespace fs = std::filesystem;
using namespace whisker;

TEST(Sample, KaggleLayout) {
    test::TempDir dir;
    sample::SampleOptions o;
    o.train_images = 11;
    o.test_images = 4;
    sample::write_sample_competition(dir.path(), o);
    const auto train = list_archive(dir / "train.zip");
    ASSERT_EQ(train.size(), 11u);
    int cats = 0, dogs = 0;
    for (const auto& e : train) {
        cats += e.name.rfind("train/cat.", 0) == 0;
        dogs += e.name.rfind("train/dog.", 0) == 0;
        EXPECT_EQ(fs::path(e.name).extension(), ".jpg");
    }
    EXPECT_EQ(cats, 6);
    EXPECT_EQ(dogs, 5);
    EXPECT_EQ(train[0].name, "train/cat.0.jpg");
    const auto test = list_archive(dir / "test.zip");
    ASSERT_EQ(test.size(), 4u);
    EXPECT_EQ(test[0].name, "test/1.jpg");
    EXPECT_EQ(test[3].name, "test/4.jpg");
    const auto sub = parse_csv(read_file(dir / "sample_submission.csv"));
    ASSERT_EQ(sub.size(), 5u);
    EXPECT_EQ(sub[0], (CsvRow{"id", "label"}));
    EXPECT_EQ(sub[1], (CsvRow{"1", "0.5"}));
    const auto sol = parse_csv(read_file(dir / "sample_solution.csv"));
    ASSERT_EQ(sol.size(), 5u);
    for (std::size_t i = 1; i < sol.size(); ++i) EXPECT_TRUE(sol[i][1] == "0" || sol[i][1] == "1");
}

TEST(Sample, SameSeedSameBytesOtherSeedOtherBytes) {
    test::TempDir a, b, c;
    sample::SampleOptions o;
    o.train_images = 8;
    o.test_images = 2;
    o.threads = 1;
    sample::write_sample_competition(a.path(), o);
    o.threads = 2;
    sample::write_sample_competition(b.path(), o);
    o.seed = 99;
    sample::write_sample_competition(c.path(), o);
    for (const char* f : {"train.zip", "test.zip", "sample_submission.csv"}) EXPECT_EQ(read_file(a / f), read_file(b / f)) << f;
    EXPECT_NE(read_file(a / "train.zip"), read_file(c / "train.zip"));
}

TEST(Sample, ImagesVaryInSizeAndAreMostlyNotSquare) {
    int non_square = 0;
    int min_side = 10000, max_side = 0;
    for (int i = 0; i < 40; ++i) {
        const cv::Mat img = sample::draw_animal(i % 2 == 1, derive_seed(5, i));
        ASSERT_EQ(img.type(), CV_8UC3);
        min_side = std::min({min_side, img.cols, img.rows});
        max_side = std::max({max_side, img.cols, img.rows});
        non_square += img.cols != img.rows;
    }
    EXPECT_GE(min_side, 150);
    EXPECT_LE(max_side, 500);
    EXPECT_LT(min_side, 220);
    EXPECT_GT(max_side, 400);
    EXPECT_GE(non_square, 30);
}

TEST(Sample, ClassesDifferOnAverageButNotTrivially) {
    // Mean colour says nothing about the class (shared palettes), so a classifier must look at
    // shapes: the per-class mean intensities are close.
    double sum[2] = {0, 0};
    for (int i = 0; i < 60; ++i) {
        const bool dog = i % 2 == 1;
        const cv::Mat img = sample::draw_animal(dog, derive_seed(11, i));
        const cv::Scalar m = cv::mean(img);
        sum[dog] += (m[0] + m[1] + m[2]) / 3;
    }
    EXPECT_LT(std::abs(sum[0] - sum[1]) / 30, 25.0);
}

TEST(Sample, BadArgumentsAreRefused) {
    test::TempDir dir;
    sample::SampleOptions o;
    o.train_images = 1;
    EXPECT_THROW(sample::write_sample_competition(dir.path(), o), UserError);
}
