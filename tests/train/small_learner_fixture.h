#pragma once
// Shared by the test_train suites: a tiny prepared sample project (24 images a class drawn,
// 4 per class for validation, 6 test images) and a Learner on it that trains in seconds
// (resnet18 at 32 px, batch 4, random body, 2 threads, seed 7), made once per suite.
#include "test_support.h"

#include "whisker/data/prepare.h"
#include "whisker/models/checkpoint.h"
#include "whisker/train/learner.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace whisker::test {

class SmallLearnerTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir;
        write_sample(*dir_ / "dl", 24, 6);
        data::PrepareOptions o;
        o.project = *dir_ / "p";
        o.source = *dir_ / "dl";
        o.valid_per_class = 4;
        dataset_ = new data::Dataset(data::prepare_dataset(o));
    }
    static void TearDownTestSuite() {
        delete dataset_;
        delete dir_;
        dataset_ = nullptr;
        dir_ = nullptr;
    }
    static train::LearnerConfig config() {
        train::LearnerConfig c;
        c.arch = "resnet18";
        c.size = 32;
        c.batch_size = 4;
        c.pretrained = false;
        c.threads = 2;
        c.seed = 7;
        return c;
    }
    static std::unique_ptr<train::Learner> make() { return std::make_unique<train::Learner>(*dir_ / "p", *dataset_, config()); }
    static std::vector<at::Tensor> weights(train::Learner& l) {
        std::vector<at::Tensor> out;
        for (const auto& [k, v] : models::state_dict_of(l.model())) out.push_back(v.detach().clone());
        return out;
    }
    static bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!at::equal(a[i], b[i])) return false;
        return true;
    }
    inline static TempDir* dir_ = nullptr;
    inline static data::Dataset* dataset_ = nullptr;
};

}  // namespace whisker::test
