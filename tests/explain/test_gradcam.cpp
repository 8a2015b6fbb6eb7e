// Grad-CAM (whisker/explain/gradcam.h): values computed by hand on a tiny network, every zoo
// family's target, the learner left bit for bit as it was, and — on the sample competition,
// whose answer key says where each animal is — heatmaps that land on the animal.
#include "test_support.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/loader.h"
#include "whisker/data/prepare.h"
#include "whisker/data/transforms.h"
#include "whisker/explain/gradcam.h"
#include "whisker/models/learner_model.h"
#include "whisker/sample/sample_competition.h"
#include "whisker/train/learner.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

using namespace whisker;

namespace {

at::Tensor linear_scores(const at::Tensor& pooled, const at::Tensor& weights) { return at::matmul(pooled, weights.t()); }

}  // namespace

// A feature map of 2 channels on a 2 x 2 grid, AdaptiveConcatPool2d (max, then average) and a
// linear layer: every gradient can be written down.
//   A0 = [[1, 2], [3, 4]], A1 = [[4, 0], [0, 1]]; pooled = [max0, max1, avg0, avg1]
//   class 0 weights [1, -1, 2, 0.5]:
//     dS/dA0 = 1 at the max (1,1) + 2/4 everywhere -> mean 0.75
//     dS/dA1 = -1 at the max (0,0) + 0.5/4 everywhere -> mean -0.125
//     map = ReLU(0.75 A0 - 0.125 A1) = [[0.25, 1.5], [2.25, 2.875]]
//   class 1 weights [0, 1, -1, 1]: alpha = (-0.25, 0.5), map = ReLU(-0.25 A0 + 0.5 A1) = [[1.75, 0], [0, 0]]
TEST(GradCam, MatchesValuesComputedByHand) {
    const at::Tensor a = at::tensor({1.f, 2.f, 3.f, 4.f, 4.f, 0.f, 0.f, 1.f}).view({1, 2, 2, 2});
    const at::Tensor w = at::tensor({1.f, -1.f, 2.f, 0.5f, 0.f, 1.f, -1.f, 1.f}).view({2, 4});
    at::Tensor scores;
    const at::Tensor maps =
        explain::grad_cam_of(a, [&](const at::Tensor& f) { return linear_scores(models::adaptive_concat_pool(f), w); }, {{0, 1}},
                             &scores);
    ASSERT_EQ(maps.sizes(), (at::IntArrayRef{1, 2, 2, 2}));
    const at::Tensor want0 = at::tensor({0.25f, 1.5f, 2.25f, 2.875f}).view({2, 2});
    const at::Tensor want1 = at::tensor({1.75f, 0.f, 0.f, 0.f}).view({2, 2});
    EXPECT_TRUE(at::allclose(maps[0][0], want0, 1e-6, 1e-6)) << maps[0][0];
    EXPECT_TRUE(at::allclose(maps[0][1], want1, 1e-6, 1e-6)) << maps[0][1];
    // The scores are what the function computed: class 0 = 4 - 4 + 2*2.5 + 0.5*1.25.
    EXPECT_NEAR(scores[0][0].item<double>(), 5.625, 1e-6);
    // The input's graph and the weights are not touched.
    EXPECT_FALSE(a.requires_grad());
    EXPECT_FALSE(w.grad().defined());
}

TEST(GradCam, FormulaOnGivenGradients) {
    const at::Tensor a = at::tensor({1.f, 2.f, 3.f, 4.f, 4.f, 0.f, 0.f, 1.f}).view({1, 2, 2, 2});
    const at::Tensor g = at::tensor({1.f, 1.f, 1.f, 1.f, -2.f, 0.f, 0.f, 0.f}).view({1, 2, 2, 2});
    // alpha = (1, -0.5): ReLU(A0 - 0.5 A1) = [[0, 2], [3, 3.5]]
    const at::Tensor m = explain::grad_cam(a, g);
    EXPECT_TRUE(at::allclose(m[0], at::tensor({0.f, 2.f, 3.f, 3.5f}).view({2, 2})));
}

TEST(GradCam, SoftmaxLogOddsAreLogPOverOneMinusP) {
    const at::Tensor z = at::tensor({1.0, 2.0, 3.0, 0.0, 0.0, 30.0}, at::kDouble).view({2, 3});
    const at::Tensor lo = explain::softmax_log_odds(z);
    EXPECT_NEAR(lo[0][0].item<double>(), 1.0 - std::log(std::exp(2.0) + std::exp(3.0)), 1e-12);
    EXPECT_TRUE(at::allclose(at::sigmoid(lo), at::softmax(z, 1), 1e-12, 1e-12));
    // A sure prediction still has a finite, large score (the log-probability would be ~0 there).
    EXPECT_NEAR(lo[1][2].item<double>(), 30.0 - std::log(2.0), 1e-9);
    // Two classes: z_c - z_other.
    const at::Tensor two = explain::softmax_log_odds(at::tensor({0.5, 2.0}, at::kDouble).view({1, 2}));
    EXPECT_NEAR(two[0][1].item<double>(), 1.5, 1e-12);
    EXPECT_NEAR(two[0][0].item<double>(), -1.5, 1e-12);
}

TEST(GradCam, HeatmapSamplesBilinearlyBetweenCellCentres) {
    explain::Heatmap h;
    h.width = 2;
    h.height = 1;
    h.values = {0.f, 1.f};
    EXPECT_FLOAT_EQ(h.value_at(0.25, 0.5), 0.f);   // the first cell's centre
    EXPECT_FLOAT_EQ(h.value_at(0.75, 0.5), 1.f);
    EXPECT_FLOAT_EQ(h.value_at(0.5, 0.5), 0.5f);
    EXPECT_FLOAT_EQ(h.value_at(0.0, 0.0), 0.f);    // clamped at the border
    const auto r = h.resampled(4, 1);
    ASSERT_EQ(r.size(), 4u);
    EXPECT_FLOAT_EQ(r[1], 0.25f);
}

// One architecture of every family: the maps sit on the body's grid (ViT: the patch grid), are
// non-negative, the probabilities are the model's own (so the recomputed ViT path is the
// model's forward), and the model's weights and modes are as they were.
TEST(GradCam, EveryFamilyHasMapsOnItsGrid) {
    detect_compute_device();
    struct Case {
        models::Arch arch;
        int size;
        int grid;
    };
    const std::vector<Case> cases = {
        {models::Arch::ResNet18, 64, 2},          {models::Arch::ResNeXt50_32x4d, 64, 2},  {models::Arch::VGG16_BN, 64, 2},
        {models::Arch::DenseNet121, 64, 2},       {models::Arch::ConvNeXt_Tiny, 64, 2},     {models::Arch::EfficientNet_B0, 64, 2},
        {models::Arch::RegNet_Y_400MF, 64, 2},    {models::Arch::MobileNet_V3_Small, 64, 2}, {models::Arch::Swin_T, 64, 2},
        {models::Arch::ViT_B_16, 64, 4},
    };
    std::set<std::string> families;
    for (const auto& c : cases) {
        SCOPED_TRACE(models::arch_info(c.arch).name);
        families.insert(models::arch_info(c.arch).family);
        at::manual_seed(1);
        auto model = std::make_shared<models::ClassifierModel>(c.arch, 3);
        model->train();
        // Some BatchNorm layers in eval mode, as bn_freeze leaves them: both must come back.
        int flipped = 0;
        for (const auto& m : model->modules(false))
            if (dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get()) && (flipped++ % 2 == 0)) m->eval();
        std::vector<bool> modes;
        for (const auto& m : model->modules(false)) modes.push_back(m->is_training());
        std::vector<at::Tensor> before;
        for (const auto& t : model->parameters()) before.push_back(t.detach().clone());
        for (const auto& t : model->buffers()) before.push_back(t.detach().clone());

        const at::Tensor images = at::randn({2, 3, c.size, c.size});
        const auto cams = explain::class_activation_maps(*model, images, {{0, 2}, {1, 0}});
        ASSERT_EQ(cams.maps.sizes(), (at::IntArrayRef{2, 2, c.grid, c.grid}));
        EXPECT_GE(cams.maps.min().item<double>(), 0.0);
        EXPECT_GT(cams.maps.sum().item<double>(), 0.0);
        {
            const std::vector<bool> kept = modes;
            std::vector<bool> now;
            for (const auto& m : model->modules(false)) now.push_back(m->is_training());
            EXPECT_EQ(now, kept);
            EXPECT_TRUE(model->is_training());
        }
        model->eval();
        at::NoGradGuard no_grad;
        const at::Tensor want = at::exp(model->forward(images));
        EXPECT_TRUE(at::allclose(cams.probabilities, want, 1e-4, 1e-5)) << cams.probabilities << want;
        std::size_t i = 0;
        for (const auto& t : model->parameters()) EXPECT_TRUE(at::equal(t, before[i++]));
        for (const auto& t : model->buffers()) EXPECT_TRUE(at::equal(t, before[i++]));
        for (const auto& t : model->parameters()) EXPECT_FALSE(t.grad().defined());
    }
    EXPECT_EQ(families.size(), 10u) << "one architecture per family of the zoo";
}

namespace {

// The learner's state that heatmaps must not change: weights, BatchNorm statistics, the
// parameters' gradients, every module's mode, torch's random state.
struct LearnerSnapshot {
    std::vector<at::Tensor> tensors, grads;
    std::vector<bool> modes;
    at::Tensor rng;
    explicit LearnerSnapshot(train::Learner& l) {
        auto& m = l.model();
        for (const auto& t : m.parameters()) {
            tensors.push_back(t.detach().clone());
            grads.push_back(t.grad().defined() ? t.grad().clone() : at::Tensor());
        }
        for (const auto& t : m.buffers()) tensors.push_back(t.detach().clone());
        modes.push_back(m.is_training());
        for (const auto& s : m.modules(false)) modes.push_back(s->is_training());
        rng = at::detail::getDefaultCPUGenerator().get_state();
    }
    void expect_same(train::Learner& l) const {
        const LearnerSnapshot now(l);
        ASSERT_EQ(now.tensors.size(), tensors.size());
        for (std::size_t i = 0; i < tensors.size(); ++i) EXPECT_TRUE(at::equal(now.tensors[i], tensors[i])) << "tensor " << i;
        for (std::size_t i = 0; i < grads.size(); ++i) {
            EXPECT_EQ(now.grads[i].defined(), grads[i].defined());
            if (grads[i].defined() && now.grads[i].defined()) {
                EXPECT_TRUE(at::equal(now.grads[i], grads[i]));
            }
        }
        EXPECT_EQ(now.modes, modes);
        EXPECT_TRUE(at::equal(now.rng, rng));
    }
};

}  // namespace

TEST(GradCamLearner, HeatmapsLeaveTheLearnerBitForBitUnchanged) {
    detect_compute_device();
    test::TempDir dir;
    test::write_sample(dir / "dl", 24, 2);
    data::PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "dl";
    o.valid_per_class = 4;
    const data::Dataset d = data::prepare_dataset(o);
    train::LearnerConfig c;
    c.arch = "resnet18";
    c.size = 64;
    c.batch_size = 8;
    c.pretrained = false;
    train::Learner l(dir / "p", d, c);
    l.autosave = false;
    l.unfreeze();
    l.fit(train::FitOptions{});   // BatchNorm statistics and gradients that are not the initial ones
    l.model().train();
    for (const auto& m : l.model().modules(false))
        if (dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) m->eval();   // as bn_freeze leaves them

    std::vector<explain::ExplainRequest> req;
    for (std::size_t r : d.indices(data::Split::Valid)) req.push_back({r, {0, 1}});
    req.push_back({d.indices(data::Split::Test)[0], {1}});   // another number of classes in the batch
    const LearnerSnapshot before(l);
    explain::ExplainOptions eo;
    eo.batch_size = 3;
    std::size_t last_done = 0;
    eo.progress = [&](std::size_t done, std::size_t total) {
        EXPECT_EQ(total, req.size());
        EXPECT_GT(done, last_done);
        last_done = done;
    };
    const auto out = explain::explain_images(l, d, req, eo);
    before.expect_same(l);
    EXPECT_EQ(last_done, req.size());

    ASSERT_EQ(out.size(), req.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
        EXPECT_TRUE(out[i].error.empty()) << out[i].error;
        EXPECT_EQ(out[i].record, req[i].record);
        ASSERT_EQ(out[i].maps.size(), req[i].classes.size());
        for (std::size_t k = 0; k < out[i].maps.size(); ++k) {
            const auto& m = out[i].maps[k];
            EXPECT_EQ(m.cls, req[i].classes[k]);
            EXPECT_EQ(m.width, 2);
            EXPECT_EQ(m.height, 2);
            ASSERT_EQ(m.values.size(), 4u);
            const float top = *std::max_element(m.values.begin(), m.values.end());
            EXPECT_TRUE(m.peak == 0 ? top == 0.f : top == 1.f);
            EXPECT_GE(m.probability, 0.0);
            EXPECT_LE(m.probability, 1.0);
        }
        // The crop is inside the image and square in pixels (to one pixel of the scaled image
        // the transform crops, which the floor in fastai's scale_min makes a little uneven).
        const auto& im = d.images[out[i].record];
        const auto& b = out[i].crop;
        EXPECT_GE(b.x0, 0.0);
        EXPECT_LE(b.x1, 1.0 + 1e-9);
        const double scaled_pixel = static_cast<double>(std::min(im.width, im.height)) / c.size;
        EXPECT_NEAR(b.width() * im.width, b.height() * im.height, scaled_pixel + 1.0);
    }
    // Two classes: the log-odds of one are minus the other's, so the probabilities sum to one.
    EXPECT_NEAR(out[0].maps[0].probability + out[0].maps[1].probability, 1.0, 1e-5);
    // The probabilities are the learner's own on the plain view.
    const auto preds = l.predict(data::Split::Valid);
    for (std::size_t row = 0; row < preds.records.size(); ++row)
        for (const auto& e : out)
            if (e.record == preds.records[row]) {
                EXPECT_NEAR(e.maps[1].probability, preds.probs[static_cast<int64_t>(row)][1].item<double>(), 1e-4);
            }

    // A stop request is honoured before the next batch; an unreadable image is reported, not thrown.
    std::atomic<bool> stop{true};
    eo.stop = &stop;
    eo.progress = {};
    EXPECT_THROW(explain::explain_images(l, d, req, eo), Cancelled);
    EXPECT_THROW(explain::explain_images(l, d, {{req[0].record, {2}}}), UserError);
    data::Dataset broken = d;
    write_file_atomically(d.resolve(dir / "p", d.images[req[0].record]), "not an image any more");
    const auto bad = explain::explain_images(l, broken, {req[0], req[1]});
    EXPECT_FALSE(bad[0].error.empty());
    EXPECT_TRUE(bad[0].maps.empty());
    EXPECT_EQ(bad[1].maps.size(), 2u);
}

// The sample's answer key says where each animal is (sample_boxes.csv). After a short training
// from scratch (the small CNN of test_sample_learnable: four conv blocks, 64 px, 20 epochs),
// the Grad-CAM of the predicted class on the last conv block (8 x 8, before its pooling) puts
// clearly more of its mass inside the animal's box than the box's share of the model's input:
// the model looks at the animal, and the maps are laid where the crop really is (crop_box).
// (A zoo network from scratch learns too slowly on 320 images for a unit test; the zoo's
// networks are checked above for the same Grad-CAM path, up to the feature map.)
TEST(GradCamSample, HeatmapMassFallsOnTheAnimal) {
    detect_compute_device();
    at::manual_seed(0);
    test::TempDir dir;
    sample::write_sample_competition(dir / "dl");   // the defaults: 400 train, 100 test
    const auto boxes = sample::read_sample_boxes(dir / "dl");
    ASSERT_EQ(boxes.size(), 500u);
    data::PrepareOptions po;
    po.project = dir / "p";
    po.source = dir / "dl";
    const data::Dataset d = data::prepare_dataset(po);
    const int size = 64;
    const data::AugmentSettings aug = data::AugmentSettings::side_on(size);
    data::LoaderOptions lo;
    lo.batch_size = 32;
    auto train = data::make_loader(d, po.project, data::View::Train, aug, lo);
    auto valid = data::make_loader(d, po.project, data::View::Valid, aug, lo);

    namespace nn = torch::nn;
    nn::Sequential body;
    auto block = [&](int in, int out, bool pool) {
        body->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)));
        body->push_back(nn::BatchNorm2d(out));
        body->push_back(nn::ReLU());
        if (pool) body->push_back(nn::MaxPool2d(2));
    };
    block(3, 16, true);
    block(16, 32, true);
    block(32, 64, true);
    block(64, 64, false);   // [N, 64, 8, 8] at 64 px: the Grad-CAM target
    nn::Sequential head(nn::MaxPool2d(2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(64, 2));
    std::vector<at::Tensor> params = body->parameters();
    for (const auto& p : head->parameters()) params.push_back(p);
    torch::optim::Adam opt(params, torch::optim::AdamOptions(2e-3));
    const int epochs = std::getenv("WHISKER_CAM_EPOCHS") ? std::atoi(std::getenv("WHISKER_CAM_EPOCHS")) : 20;
    for (int epoch = 0; epoch < epochs; ++epoch) {
        body->train();
        head->train();
        train->start_epoch(epoch);
        while (auto b = train->next()) {
            opt.zero_grad();
            torch::nn::functional::cross_entropy(head->forward(body->forward(b->images)), b->labels).backward();
            opt.step();
        }
    }
    body->eval();
    head->eval();

    // Share of the heat inside the box vs share of the crop the box covers, on a 64 x 64 grid
    // over the model's input.
    constexpr int kGrid = 64;
    double heat_share = 0, area_share = 0;
    std::int64_t correct = 0, total = 0;
    int counted = 0;
    valid->start_epoch(0);
    while (auto b = valid->next()) {
        at::Tensor features;
        {
            at::NoGradGuard no_grad;
            features = body->forward(b->images);
        }
        const at::Tensor predicted = [&] {
            at::NoGradGuard no_grad;
            return head->forward(features).argmax(1);
        }();
        correct += predicted.eq(b->labels).sum().item<std::int64_t>();
        total += b->labels.size(0);
        std::vector<std::vector<int>> classes;
        for (int64_t i = 0; i < predicted.size(0); ++i) classes.push_back({static_cast<int>(predicted[i].item<int64_t>())});
        const at::Tensor maps = explain::grad_cam_of(features, [&](const at::Tensor& f) { return head->forward(f); }, classes);
        for (std::size_t i = 0; i < b->records.size(); ++i) {
            const at::Tensor m = maps[static_cast<int64_t>(i)][0].contiguous();
            explain::Heatmap h;
            h.width = static_cast<int>(m.size(1));
            h.height = static_cast<int>(m.size(0));
            h.values.assign(m.data_ptr<float>(), m.data_ptr<float>() + m.numel());
            if (m.max().item<float>() <= 0) continue;
            const auto& im = d.images[b->records[i]];
            const std::string key = "train/" + std::filesystem::path(im.path).filename().string();
            ASSERT_TRUE(boxes.count(key)) << key;
            const cv::Rect box = boxes.at(key);
            // The recorded box is the animal's, inside the written image.
            ASSERT_GT(box.area(), 0) << key;
            ASSERT_TRUE(box.x >= 0 && box.y >= 0 && box.x + box.width <= im.width && box.y + box.height <= im.height) << key;
            const explain::CropBox crop = explain::crop_box(im.width, im.height, aug);
            const auto heat = h.resampled(kGrid, kGrid);
            double inside = 0, all = 0;
            int cells_inside = 0;
            for (int y = 0; y < kGrid; ++y)
                for (int x = 0; x < kGrid; ++x) {
                    const double px = (crop.x0 + (x + 0.5) / kGrid * crop.width()) * im.width;
                    const double py = (crop.y0 + (y + 0.5) / kGrid * crop.height()) * im.height;
                    const bool in = px >= box.x && px < box.x + box.width && py >= box.y && py < box.y + box.height;
                    const double v = heat[static_cast<std::size_t>(y * kGrid + x)];
                    all += v;
                    if (in) inside += v, ++cells_inside;
                }
            heat_share += inside / all;
            area_share += static_cast<double>(cells_inside) / (kGrid * kGrid);
            ++counted;
        }
    }
    const double accuracy = static_cast<double>(correct) / static_cast<double>(total);
    ASSERT_GT(counted, static_cast<int>(total) * 3 / 4);
    heat_share /= counted;
    area_share /= counted;
    RecordProperty("accuracy", std::to_string(accuracy));
    RecordProperty("heat_inside_box", std::to_string(heat_share));
    RecordProperty("box_area_share", std::to_string(area_share));
    std::printf("small CNN at %d px, %d epochs: valid accuracy %.3f; heat inside the box %.3f, box share of the input %.3f "
                "(margin %.3f, ratio %.2f) over %d images\n",
                size, epochs, accuracy, heat_share, area_share, heat_share - area_share, heat_share / area_share, counted);
    EXPECT_GT(accuracy, 0.62);
    EXPECT_GT(heat_share, area_share + 0.08);
    EXPECT_GT(heat_share / area_share, 1.12);
}
