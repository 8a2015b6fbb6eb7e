// The sample competition is learnable but not trivial: a small CNN trained from scratch on
// the default sample (320 training images at 64 px) lands clearly above chance and clearly
// below 100%. This also runs the loader's train and valid views under a real training loop.
#include "test_support.h"

#include "whisker/common/device.h"
#include "whisker/data/loader.h"
#include "whisker/data/prepare.h"
#include "whisker/sample/sample_competition.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

using namespace whisker;

namespace {
void add_conv_block(torch::nn::Sequential& net, int in, int out) {
    net->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1)));
    net->push_back(torch::nn::BatchNorm2d(out));
    net->push_back(torch::nn::ReLU());
    net->push_back(torch::nn::MaxPool2d(2));
}
}  // namespace

TEST(SampleLearnable, SmallCnnFromScratchIsAboveChanceAndBelowPerfect) {
    detect_compute_device();  // all cores for LibTorch
    torch::manual_seed(0);
    test::TempDir dir;
    sample::write_sample_competition(dir / "dl");  // the defaults: 400 train, 100 test
    data::PrepareOptions po;
    po.project = dir / "p";
    po.source = dir / "dl";
    const data::Dataset d = data::prepare_dataset(po);
    data::AugmentSettings aug = data::AugmentSettings::side_on(64);
    data::LoaderOptions lo;
    lo.batch_size = 32;
    auto train = data::make_loader(d, po.project, data::View::Train, aug, lo);
    auto valid = data::make_loader(d, po.project, data::View::Valid, aug, lo);

    torch::nn::Sequential net;
    add_conv_block(net, 3, 16);
    add_conv_block(net, 16, 32);
    add_conv_block(net, 32, 64);
    add_conv_block(net, 64, 64);
    net->push_back(torch::nn::AdaptiveAvgPool2d(1));
    net->push_back(torch::nn::Flatten());
    net->push_back(torch::nn::Linear(64, 2));
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(2e-3));
    std::vector<double> accuracy;
    for (int epoch = 0; epoch < 25; ++epoch) {
        net->train();
        train->start_epoch(epoch);
        while (auto b = train->next()) {
            opt.zero_grad();
            auto loss = torch::nn::functional::cross_entropy(net->forward(b->images), b->labels);
            loss.backward();
            opt.step();
        }
        net->eval();
        torch::NoGradGuard no_grad;
        std::int64_t correct = 0, total = 0;
        valid->start_epoch(0);
        while (auto b = valid->next()) {
            correct += net->forward(b->images).argmax(1).eq(b->labels).sum().item<std::int64_t>();
            total += b->labels.size(0);
        }
        accuracy.push_back(static_cast<double>(correct) / static_cast<double>(total));
    }
    // The mean of the last five epochs smooths the noise of an 80-image validation set.
    double late = 0;
    for (std::size_t i = accuracy.size() - 5; i < accuracy.size(); ++i) late += accuracy[i] / 5;
    std::string curve;
    for (double a : accuracy) curve += std::to_string(a).substr(0, 4) + " ";
    RecordProperty("valid_accuracy", curve);
    EXPECT_GT(late, 0.62) << curve;
    EXPECT_LT(late, 0.97) << curve;
}
