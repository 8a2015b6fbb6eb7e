// Precomputed activations stored in 16 bits (LearnerConfig::precompute_dtype): half the cache,
// each activation fp32's rounded to the dtype, a head that trains like one on the fp32 cache,
// old fp32 caches still read, and a change of dtype recomputes. The small sample of the other
// train suites (resnet18 at 32 px, random body, fp32 precision unless a test says otherwise).
#include "small_learner_fixture.h"

#include "whisker/common/errors.h"
#include "whisker/models/checkpoint.h"
#include "whisker/train/learner.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::train;

namespace {

class PrecomputeDtypeTest : public test::SmallLearnerTest {
protected:
    static fs::path cache() { return *dir_ / "p" / "cache" / "precompute" / "resnet18-32.safetensors"; }

    struct HeadRun {
        FitResult fit;
        models::StateDict file;                    // the cache as written
        std::map<std::string, std::string> meta;
        std::uintmax_t bytes = 0;
        int computed = 0;                          // times the train activations were computed
    };

    static at::Tensor tensor(const models::StateDict& sd, const std::string& name) {
        for (const auto& [n, t] : sd)
            if (n == name) return t;
        ADD_FAILURE() << "the cache has no " << name;
        return at::Tensor();
    }

    // Fits the head of `l` on precomputed activations for `epochs` epochs at a constant rate,
    // counting how often the activations were computed (not read from the cache).
    static HeadRun fit_head(Learner& l, int epochs) {
        HeadRun r;
        l.set_progress([&r](const std::string& stage, long done, long) {
            if (stage == "precomputing train activations" && done == 1) ++r.computed;
        });
        FitOptions o;
        o.lrs = {1e-2};
        o.n_cycle = epochs;
        r.fit = l.fit(o);
        l.set_progress({});
        r.file = models::read_safetensors(cache(), &r.meta);
        r.bytes = fs::file_size(cache());
        return r;
    }

    // A fresh learner (seed 7: the same body, head and shuffles every time) on a cache of `dtype`.
    static HeadRun train_head(PrecomputeDtype dtype, int epochs, Precision precision = Precision::FP32) {
        LearnerConfig c = config();
        c.precompute_dtype = dtype;
        c.precision = precision;
        Learner l(*dir_ / "p", *dataset_, c);
        l.autosave = false;
        l.set_precompute(true);
        return fit_head(l, epochs);
    }

    // Every 16-bit activation is the fp32 one rounded to nearest: a relative error of at most
    // half an ulp (2^-11 for fp16's 11 significant bits, 2^-8 for bf16's 8), or half the
    // spacing of fp16's subnormals (2^-25) below its smallest normal. 1e-6 relative on top
    // allows for a last-bit difference between two fp32 passes of the body.
    static void expect_rounded(const at::Tensor& sixteen, const at::Tensor& fp32, double half_ulp, double subnormal) {
        ASSERT_EQ(sixteen.sizes(), fp32.sizes());
        const at::Tensor error = (sixteen.to(at::kFloat) - fp32).abs();
        const at::Tensor bound = fp32.abs() * (half_ulp + 1e-6) + subnormal;
        EXPECT_TRUE((error <= bound).all().item<bool>())
            << "largest error " << error.max().item<double>() << " at a bound of " << bound.min().item<double>();
        // It is rounded, not fp32 under another name: some activations change.
        EXPECT_GT(error.max().item<double>(), 0.0);
    }
};

TEST_F(PrecomputeDtypeTest, AutoStoresWhatThePrecisionComputes) {
    EXPECT_EQ(resolve_precompute_dtype(PrecomputeDtype::Auto, Precision::FP32), PrecomputeDtype::FP32);
    EXPECT_EQ(resolve_precompute_dtype(PrecomputeDtype::Auto, Precision::BF16), PrecomputeDtype::BF16);
    EXPECT_EQ(resolve_precompute_dtype(PrecomputeDtype::Auto, Precision::FP16), PrecomputeDtype::FP16);
    EXPECT_EQ(resolve_precompute_dtype(PrecomputeDtype::FP16, Precision::BF16), PrecomputeDtype::FP16);
    EXPECT_EQ(resolve_precompute_dtype(PrecomputeDtype::FP32, Precision::BF16), PrecomputeDtype::FP32);
    for (PrecomputeDtype d : {PrecomputeDtype::Auto, PrecomputeDtype::FP32, PrecomputeDtype::FP16, PrecomputeDtype::BF16})
        EXPECT_EQ(parse_precompute_dtype(precompute_dtype_name(d)), d);
    EXPECT_THROW(parse_precompute_dtype("int8"), UserError);
    EXPECT_THROW(parse_precompute_dtype("FP16"), UserError);
}

TEST_F(PrecomputeDtypeTest, SixteenBitCachesAreHalfTheSizeAndRoundTheFp32Activations) {
    const HeadRun f32 = train_head(PrecomputeDtype::FP32, 1);
    const HeadRun f16 = train_head(PrecomputeDtype::FP16, 1);
    const HeadRun b16 = train_head(PrecomputeDtype::BF16, 1);
    EXPECT_EQ(f32.meta.at("dtype"), "fp32");
    EXPECT_EQ(f16.meta.at("dtype"), "fp16");
    EXPECT_EQ(b16.meta.at("dtype"), "bf16");
    for (const char* name : {"train_x", "valid_x", "test_x"}) {
        SCOPED_TRACE(name);
        const at::Tensor x32 = tensor(f32.file, name), x16 = tensor(f16.file, name), xb16 = tensor(b16.file, name);
        ASSERT_TRUE(x32.defined() && x16.defined() && xb16.defined());
        EXPECT_EQ(x32.scalar_type(), at::kFloat);
        EXPECT_EQ(x16.scalar_type(), at::kHalf);
        EXPECT_EQ(xb16.scalar_type(), at::kBFloat16);
        EXPECT_EQ(x16.nbytes() * 2, x32.nbytes());
        EXPECT_EQ(xb16.nbytes() * 2, x32.nbytes());
        expect_rounded(x16, x32, std::ldexp(1.0, -11), std::ldexp(1.0, -25));
        expect_rounded(xb16, x32, std::ldexp(1.0, -8), 0.0);   // bf16 has fp32's range
    }
    // The same rows in the same order, and the same labels.
    for (const char* name : {"train_records", "valid_records", "train_y", "valid_y"}) {
        EXPECT_TRUE(at::equal(tensor(f32.file, name), tensor(f16.file, name))) << name;
        EXPECT_TRUE(at::equal(tensor(f32.file, name), tensor(b16.file, name))) << name;
    }
    // The file: the activations' half plus labels, row numbers and the header (a few %).
    std::printf("[ cache    ] fp32 %ju bytes, fp16 %ju (%.3f), bf16 %ju (%.3f)\n", f32.bytes, f16.bytes,
                static_cast<double>(f16.bytes) / static_cast<double>(f32.bytes), b16.bytes,
                static_cast<double>(b16.bytes) / static_cast<double>(f32.bytes));
    EXPECT_LT(static_cast<double>(f16.bytes), 0.51 * static_cast<double>(f32.bytes));
    EXPECT_LT(static_cast<double>(b16.bytes), 0.51 * static_cast<double>(f32.bytes));
}

TEST_F(PrecomputeDtypeTest, AHeadTrainedOnASixteenBitCacheValidatesLikeOneOnFp32) {
    // One epoch (10 steps at 1e-3) of the same head from the same start on the same rows in the
    // same order: only the stored activations differ, each by at most 2^-11 (fp16) or 2^-8 (bf16)
    // of itself. The tolerance is what perturbations of that size do to this training anyway:
    // multiplying each fp32 activation by 1 + u, u uniform in [-2^-11, 2^-11] ([-2^-8, 2^-8]),
    // moved the final validation loss by up to 6e-4 (1e-2) of itself over four draws. Rounding
    // must do no worse than 3x (2x) that. (Longer fits at 1e-2 on these 8 validation images, a
    // head with BatchNorm over batches of 4, are chaotic: the same noise moves them by up to 8%.)
    auto head = [](PrecomputeDtype dtype) {
        LearnerConfig c = config();
        c.precompute_dtype = dtype;
        Learner l(*dir_ / "p", *dataset_, c);
        l.autosave = false;
        l.set_precompute(true);
        FitOptions o;
        o.lrs = {1e-3};
        return l.fit(o).epochs.at(0);
    };
    const EpochRecord f32 = head(PrecomputeDtype::FP32), f16 = head(PrecomputeDtype::FP16), b16 = head(PrecomputeDtype::BF16);
    std::printf("[ val loss ] fp32 %.6f, fp16 %.6f (%+.2e), bf16 %.6f (%+.2e)\n", f32.val_loss, f16.val_loss,
                f16.val_loss / f32.val_loss - 1, b16.val_loss, b16.val_loss / f32.val_loss - 1);
    ASSERT_TRUE(std::isfinite(f32.val_loss) && f32.val_loss > 0);
    EXPECT_NE(f16.val_loss, f32.val_loss);   // the head did see other numbers
    EXPECT_NEAR(f16.val_loss, f32.val_loss, 2e-3 * f32.val_loss);
    EXPECT_NEAR(b16.val_loss, f32.val_loss, 2e-2 * f32.val_loss);
    EXPECT_NEAR(f16.accuracy, f32.accuracy, 0.125 + 1e-9);   // one of the 8 images at most
    EXPECT_NEAR(b16.accuracy, f32.accuracy, 0.125 + 1e-9);
}

TEST_F(PrecomputeDtypeTest, BF16PrecisionStoresItsActivationsInBF16WithoutLoss) {
    // Under bf16 autocast the body's pooled features are bf16 already: auto stores them as they
    // are, so the fp32 cache of the same pass holds exactly the same numbers in twice the room.
    const HeadRun wide = train_head(PrecomputeDtype::FP32, 1, Precision::BF16);
    const HeadRun automatic = train_head(PrecomputeDtype::Auto, 1, Precision::BF16);
    EXPECT_EQ(automatic.meta.at("dtype"), "bf16");
    for (const char* name : {"train_x", "valid_x"}) {
        const at::Tensor x = tensor(automatic.file, name);
        EXPECT_EQ(x.scalar_type(), at::kBFloat16) << name;
        EXPECT_TRUE(at::equal(x.to(at::kFloat), tensor(wide.file, name))) << name;
    }
    EXPECT_NEAR(automatic.fit.epochs.back().val_loss, wide.fit.epochs.back().val_loss, 1e-6);
}

TEST_F(PrecomputeDtypeTest, OldFp32CachesLoadAndADtypeChangeRecomputes) {
    auto l = make();
    l->autosave = false;
    l->set_precompute(true);
    const HeadRun first = fit_head(*l, 1);
    EXPECT_EQ(first.computed, 1);
    // The cache as Whisker wrote it before the choice existed: no "dtype" in its metadata.
    std::map<std::string, std::string> old_meta = first.meta;
    old_meta.erase("dtype");
    models::write_safetensors(cache(), first.file, old_meta);

    auto fresh = make();   // the same weights: the old cache is theirs
    fresh->autosave = false;
    fresh->set_precompute(true);
    EXPECT_EQ(fit_head(*fresh, 1).computed, 0);

    fresh->set_precompute_dtype(PrecomputeDtype::FP16);
    EXPECT_EQ(fresh->precompute_dtype(), PrecomputeDtype::FP16);
    const HeadRun to16 = fit_head(*fresh, 1);
    EXPECT_EQ(to16.computed, 1);
    EXPECT_EQ(to16.meta.at("dtype"), "fp16");
    EXPECT_EQ(tensor(to16.file, "train_x").scalar_type(), at::kHalf);
    EXPECT_EQ(fit_head(*fresh, 1).computed, 0);   // kept in memory

    // A 16-bit cache is read back by a learner that asks for it.
    LearnerConfig c = config();
    c.precompute_dtype = PrecomputeDtype::FP16;
    Learner reader(*dir_ / "p", *dataset_, c);
    reader.autosave = false;
    reader.set_precompute(true);
    EXPECT_EQ(fit_head(reader, 1).computed, 0);

    // Back to what auto means at fp32 precision: recomputed, stored as fp32 again. Then fp32
    // by name is the same storage: nothing to do.
    reader.set_precompute_dtype(PrecomputeDtype::Auto);
    const HeadRun back = fit_head(reader, 1);
    EXPECT_EQ(back.computed, 1);
    EXPECT_EQ(back.meta.at("dtype"), "fp32");
    EXPECT_EQ(tensor(back.file, "train_x").scalar_type(), at::kFloat);
    reader.set_precompute_dtype(PrecomputeDtype::FP32);
    EXPECT_EQ(fit_head(reader, 1).computed, 0);
}

}  // namespace
