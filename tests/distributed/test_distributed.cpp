// Data-parallel training with Gloo on 127.0.0.1, 2 CPU processes (resnet18 at 32 px, random
// body, no network needed).
//
// The test executable is also the worker: `test_distributed --worker SCENARIO PROJECT OUT`
// joins the group its environment describes (launch_local_workers sets torchrun's variables)
// and runs one scenario; results go to files in OUT, which the tests compare.
//
// Exactness: most 2-process runs use bn_freeze (every BatchNorm in eval mode) and no dropout,
// because with BatchNorm in training mode the batch statistics are per rank (as in PyTorch's
// DDP), which is a different computation from one process's over the whole batch. The head's
// dropout is exact either way (its masks are drawn per row of the global batch; the "dropout"
// scenario checks it). With those, 2 processes with 4 images each and 1 process with 8 compute
// the same thing up to the order of float additions. The synchronised-BatchNorm
// scenarios ("syncbn", "syncbn-module") train BatchNorm in training mode instead: with
// --sync-bn its statistics are the global batch's, so 2 processes again match one.
#include "test_support.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/loader.h"
#include "whisker/data/prepare.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/learner_model.h"
#include "whisker/train/distributed.h"
#include "whisker/train/learner.h"
#include "whisker/train/sync_batch_norm.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::train;
using nlohmann::json;

namespace {

constexpr int kTimeoutSeconds = 8;   // a few seconds, with room for a loaded machine's start-up

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

LearnerConfig worker_config(std::shared_ptr<Distributed> dist) {
    LearnerConfig c;
    c.arch = "resnet18";
    c.size = 32;
    c.batch_size = 8;           // global: 4 per rank with 2 ranks
    c.pretrained = false;
    c.threads = 1;
    c.seed = 7;
    c.head = models::HeadOptions::with_dropout(0);
    c.distributed = std::move(dist);
    return c;
}

json epochs_json(const std::vector<EpochRecord>& epochs) {
    json a = json::array();
    for (const auto& e : epochs) a.push_back({{"trn_loss", e.trn_loss}, {"val_loss", e.val_loss}, {"accuracy", e.accuracy}, {"log_loss", e.log_loss}});
    return a;
}

// Stops the fit after a given epoch (on every rank alike, as a deterministic callback would).
struct StopAfterEpoch : Callback {
    int epoch;
    explicit StopAfterEpoch(int e) : epoch(e) {}
    void after_epoch(Learner& l, const EpochRecord& r) override {
        if (r.epoch == epoch) l.request_stop("test stop");
    }
};

// On one rank: dies (SIGKILL) or hangs (SIGSTOP) before batch `at`.
struct Misbehave : Callback {
    int rank, signal;
    fs::path out;
    long at;
    void before_batch(Learner&, long iteration) override {
        if (iteration != at) return;
        write_file_atomically(out / ("misbehaved-" + std::to_string(rank)), std::to_string(now_seconds()));
        std::raise(signal);
    }
};

// A small network with a BatchNorm2d and a BatchNorm1d, trained for 3 SGD steps on a fixed
// global batch of 8 (inputs far from zero mean, so that the variance's digits matter), each
// rank on its block of rows, BatchNorm synchronised. Rank 0 writes the BatchNorm outputs of
// every step (all rows, gathered), the gradients of the first step and the final state.
void sync_batch_norm_module(std::shared_ptr<Distributed> dist, const fs::path& out, const std::string& tag) {
    namespace nn = torch::nn;
    torch::manual_seed(3);
    nn::Conv2d conv(nn::Conv2dOptions(3, 6, 3).padding(1));
    nn::BatchNorm2d bn2(6);
    nn::Linear linear(6 * 8 * 8, 5);
    nn::BatchNorm1d bn1(5);
    std::vector<at::Tensor> params;
    for (nn::Module* m : std::initializer_list<nn::Module*>{conv.get(), bn2.get(), linear.get(), bn1.get()})
        for (const auto& p : m->parameters()) params.push_back(p);
    const at::Tensor x_all = at::randn({8, 3, 8, 8}) * 2 + 3;
    const at::Tensor y_all = at::randint(0, 5, {8}, at::kLong);
    const int world = dist ? dist->world_size() : 1, rank = dist ? dist->rank() : 0;
    const std::int64_t rows = 8 / world;
    const at::Tensor x = x_all.narrow(0, rank * rows, rows), y = y_all.narrow(0, rank * rows, rows);
    torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.1).momentum(0.9));
    std::unique_ptr<GradientSync> grad_sync;
    if (dist) grad_sync = std::make_unique<GradientSync>(*dist, params);
    auto gathered = [&](const at::Tensor& t) { return dist ? dist->all_gather_rows(t.detach()) : t.detach().clone(); };
    models::StateDict result;
    for (int step = 0; step < 3; ++step) {
        sgd.zero_grad();
        at::Tensor a, b, loss;
        {
            SyncBatchNormScope synchronised(dist.get());
            a = bn2(conv(x));
            b = bn1(linear(a.relu().flatten(1)));
            loss = torch::nn::functional::cross_entropy(b, y);
        }
        if (grad_sync) grad_sync->arm();
        loss.backward();
        if (grad_sync) grad_sync->finish();
        result.emplace_back("bn2d_out_" + std::to_string(step), gathered(a));
        result.emplace_back("bn1d_out_" + std::to_string(step), gathered(b));
        if (step == 0)
            for (std::size_t i = 0; i < params.size(); ++i) result.emplace_back("grad_" + std::to_string(i), params[i].grad().clone());
        sgd.step();
    }
    for (const auto& item : bn2->named_parameters()) result.emplace_back("bn2." + item.key(), item.value().detach().clone());
    for (const auto& item : bn2->named_buffers()) result.emplace_back("bn2." + item.key(), item.value().detach().to(at::kDouble).clone());
    for (const auto& item : bn1->named_buffers()) result.emplace_back("bn1." + item.key(), item.value().detach().to(at::kDouble).clone());
    for (std::size_t i = 0; i < params.size(); ++i) result.emplace_back("param_" + std::to_string(i), params[i].detach().clone());
    // Eval mode is plain BatchNorm with the running statistics: no exchange.
    bn2->eval();
    bn1->eval();
    {
        SyncBatchNormScope synchronised(dist.get());
        at::NoGradGuard no_grad;
        result.emplace_back("eval_out", gathered(bn1(linear(bn2(conv(x)).relu().flatten(1)))));
    }
    if (rank == 0) models::write_safetensors(out / ("syncbn-module-" + tag + ".safetensors"), result);
}

int run_worker(const std::string& scenario, const fs::path& project, const fs::path& out) {
    detect_compute_device();
    at::set_num_threads(1);   // one process alone too, so that runs are comparable and the machine not oversubscribed
    DistributedOptions o;
    // The short timeout where a peer misbehaves; elsewhere one that a loaded CI machine never
    // reaches while a rank waits for another (rank 0 writing a checkpoint, say).
    const bool misbehaving = scenario == "die" || scenario == "hang";
    o.timeout = std::chrono::seconds(misbehaving ? kTimeoutSeconds : 120);
    auto dist = Distributed::from_environment(o);
    const int world = dist ? dist->world_size() : 1;
    const int rank = dist ? dist->rank() : 0;
    const std::string tag = std::to_string(world) + "-" + std::to_string(rank);
    if (scenario == "syncbn-module") {
        sync_batch_norm_module(dist, out, std::to_string(world));
        write_file_atomically(out / ("result-" + scenario + "-" + tag + ".json"), "{}");
        return 0;
    }
    const data::Dataset dataset = data::Dataset::load(project);
    LearnerConfig config = worker_config(dist);
    // fastai 0.7's head dropout (0.25, 0.5): its masks are drawn for the global batch, so it
    // trains alike on any number of processes.
    if (scenario == "dropout") config.head = models::HeadOptions{};
    const bool batch_norm_trains = scenario == "syncbn" || scenario == "syncbn-off";
    config.sync_batch_norm = scenario == "syncbn";
    Learner l(project, dataset, config);
    if (!batch_norm_trains) l.bn_freeze(true);
    json result;
    if (batch_norm_trains) {
        // BatchNorm in training mode in every group, synchronised over the ranks: 1 epoch of
        // 4 global batches of 8, then the validation metrics.
        l.autosave = false;
        l.unfreeze();
        FitOptions o;
        // Small rates: a random-init network on 8 images is chaotic (max-pool ties between
        // equal pixels flip with the last bit), which would amplify float rounding beyond 1e-5
        // within a few steps. The BatchNorm statistics do not depend on the rate: per-rank
        // statistics change the losses and running statistics in their first digits.
        o.lrs = {1e-5, 3e-5, 1e-4};
        result["epochs"] = epochs_json(l.fit(o).epochs);
        std::vector<double> losses;
        for (const auto& b : l.batch_history()) losses.push_back(b.loss);
        result["batch_losses"] = losses;
        l.save(scenario + "-" + std::to_string(world));
    } else if (scenario == "accumulate-full" || scenario == "accumulate-stop") {
        // Gradient accumulation, 3 batches per step (groups of 3 + 1 per epoch), 2 epochs; the
        // stopped run stops inside the first group of epoch 2.
        l.unfreeze();
        struct StopInsideAGroup : Callback {
            void after_batch(Learner& l, const BatchRecord& r) override {
                if (r.iteration == 4) l.request_stop("test stop inside a group");
            }
        };
        if (scenario == "accumulate-stop") l.add_callback(std::make_shared<StopInsideAGroup>());
        FitOptions o;
        o.lrs = {1e-3, 3e-3, 1e-2};
        o.cycle_len = 1;
        o.n_cycle = 2;
        o.accumulate = 3;
        const auto r = l.fit(o);
        result["stopped"] = r.stopped;
        result["epochs"] = epochs_json(r.epochs);
        l.save(scenario + "-" + std::to_string(world));
    } else if (scenario == "accumulate-resume") {
        const auto r = l.resume("autosave");
        result["epochs"] = epochs_json(r.epochs);
        l.save("accumulate-resumed-" + std::to_string(world));
    } else if (scenario == "train") {
        // precompute (sharded, gathered) -> head fit -> lr_find -> unfrozen SGDR fit with
        // differential rates -> sharded prediction with TTA.
        l.autosave = false;
        l.set_precompute(true);
        FitOptions head;
        head.lrs = {1e-2};
        result["head"] = epochs_json(l.fit(head).epochs);
        const auto finder = l.lr_find(1e-4, 1, false);
        result["lr_find"] = finder.losses;
        l.set_precompute(false);
        l.unfreeze();
        FitOptions all;
        all.lrs = {1e-3, 3e-3, 1e-2};
        all.cycle_len = 1;
        all.n_cycle = 2;
        result["all"] = epochs_json(l.fit(all).epochs);
        std::vector<double> losses;
        for (const auto& b : l.batch_history()) losses.push_back(b.loss);
        result["batch_losses"] = losses;
        const Predictions p = l.predict(data::Split::Valid, 1);
        std::vector<double> probs;
        const at::Tensor pr = p.probs.to(at::kDouble).contiguous();
        probs.assign(pr.data_ptr<double>(), pr.data_ptr<double>() + pr.numel());
        result["predict_probs"] = probs;
        result["predict_records"] = p.records;
        l.save("trained-" + std::to_string(world));
    } else if (scenario == "full" || scenario == "stop") {
        l.unfreeze();
        if (scenario == "stop") l.add_callback(std::make_shared<StopAfterEpoch>(0));
        FitOptions o3;
        o3.lrs = {1e-3, 3e-3, 1e-2};
        o3.cycle_len = 1;
        o3.n_cycle = 3;
        const auto r = l.fit(o3);
        result["stopped"] = r.stopped;
        result["epochs"] = epochs_json(r.epochs);
        l.save(scenario + "-" + std::to_string(world));
    } else if (scenario == "dropout") {
        // The head alone on precomputed activations (dropout right after the cached features),
        // then the whole network (dropout after the concat pooling), 1 epoch each.
        l.autosave = false;
        l.set_precompute(true);
        FitOptions head;
        head.lrs = {1e-2};
        result["head"] = epochs_json(l.fit(head).epochs);
        l.set_precompute(false);
        l.unfreeze();
        FitOptions all;
        all.lrs = {1e-3, 3e-3, 1e-2};
        result["all"] = epochs_json(l.fit(all).epochs);
        std::vector<double> losses;
        for (const auto& b : l.batch_history()) losses.push_back(b.loss);
        result["batch_losses"] = losses;
        l.save("dropout-" + std::to_string(world));
    } else if (scenario == "resume") {
        const auto r = l.resume("autosave");
        result["epochs"] = epochs_json(r.epochs);
        l.save("resumed-" + std::to_string(world));
    } else if (scenario == "die" || scenario == "hang") {
        l.unfreeze();
        auto m = std::make_shared<Misbehave>();
        m->rank = 1;
        m->signal = scenario == "die" ? SIGKILL : SIGSTOP;
        m->out = out;
        m->at = 3;
        if (rank == 1) l.add_callback(m);
        FitOptions o50;
        o50.lrs = {1e-3};
        o50.n_cycle = 50;
        try {
            l.fit(o50);
        } catch (const UserError& e) {
            const double at = now_seconds();
            // The group is spent: a later collective raises the same error at once instead of
            // waiting another timeout (and probing again) for a peer that will never join.
            std::string again = "(no error)";
            try {
                dist->barrier();
            } catch (const PeerFailure& later) {
                again = later.what();
            }
            write_file_atomically(out / ("error-" + std::to_string(rank)),
                                  json{{"message", e.what()}, {"at", at}, {"again_message", again},
                                       {"again_seconds", now_seconds() - at}}
                                      .dump());
            return 3;
        }
    } else {
        throw std::invalid_argument("unknown scenario " + scenario);
    }
    write_file_atomically(out / ("result-" + scenario + "-" + tag + ".json"), result.dump());
    return 0;
}

// ------------------------------------------------------------------------------------------

class DistributedTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir;
        test::write_sample(*dir_ / "dl", 40, 6);
        data::PrepareOptions o;
        o.project = *dir_ / "p";
        o.source = *dir_ / "dl";
        o.valid_per_class = 4;   // 32 train images (4 global batches of 8), 8 valid
        dataset_ = new data::Dataset(data::prepare_dataset(o));
    }
    static void TearDownTestSuite() {
        delete dataset_;
        delete dir_;
    }
    static fs::path project() { return *dir_ / "p"; }

    // Runs `nproc` workers of this executable on one scenario.
    static LocalLaunchResult launch(const std::string& scenario, int nproc, const fs::path& out,
                                    std::chrono::milliseconds kill_after = std::chrono::seconds(60)) {
        fs::create_directories(out);
        LocalLaunchOptions o;
        o.args = {"--worker", scenario, project().string(), out.string()};
        o.nproc = nproc;
        o.threads_per_worker = 1;
        o.kill_after = kill_after;
        return launch_local_workers(o);
    }
    static json result(const fs::path& out, const std::string& scenario, int world, int rank) {
        return json::parse(read_file(out / ("result-" + scenario + "-" + std::to_string(world) + "-" + std::to_string(rank) + ".json")));
    }
    static models::StateDict weights(const std::string& checkpoint) {
        return models::read_safetensors(project() / "models" / (checkpoint + ".safetensors"));
    }
    static void expect_close(const models::StateDict& a, const models::StateDict& b, double tol, const std::string& what) {
        ASSERT_EQ(a.size(), b.size()) << what;
        double worst = 0;
        std::string worst_key;
        for (std::size_t i = 0; i < a.size(); ++i) {
            ASSERT_EQ(a[i].first, b[i].first) << what;
            const at::Tensor x = a[i].second.to(at::kDouble), y = b[i].second.to(at::kDouble);
            ASSERT_EQ(x.sizes(), y.sizes()) << what << " " << a[i].first;
            if (x.numel() == 0) continue;
            const double diff = (x - y).abs().max().item<double>() / (1.0 + y.abs().max().item<double>());
            if (diff > worst) worst = diff, worst_key = a[i].first;
        }
        EXPECT_LT(worst, tol) << what << ": largest difference in " << worst_key;
    }
    static void expect_close(const json& a, const json& b, double tol, const std::string& what) {
        if (a.is_number()) {
            EXPECT_NEAR(a.get<double>(), b.get<double>(), tol * (1 + std::abs(b.get<double>()))) << what;
            return;
        }
        if (a.is_boolean()) {
            EXPECT_EQ(a, b) << what;
            return;
        }
        ASSERT_EQ(a.size(), b.size()) << what;
        if (a.is_array())
            for (std::size_t i = 0; i < a.size(); ++i) expect_close(a[i], b[i], tol, what + "[" + std::to_string(i) + "]");
        else
            for (auto it = a.begin(); it != a.end(); ++it) expect_close(it.value(), b.at(it.key()), tol, what + "." + it.key());
    }
    static test::TempDir* dir_;
    static data::Dataset* dataset_;
};
test::TempDir* DistributedTest::dir_ = nullptr;
data::Dataset* DistributedTest::dataset_ = nullptr;

}  // namespace

TEST(ShardPositions, InterleavedIsPaddedLikeDistributedSampler) {
    // 10 items over 4 ranks: padded to 12 (positions 10, 11 repeat items 0, 1).
    EXPECT_EQ(data::shard_positions(10, 0, 4, true), (std::vector<std::size_t>{0, 4, 8}));
    EXPECT_EQ(data::shard_positions(10, 3, 4, true), (std::vector<std::size_t>{3, 7, 11}));
    for (std::size_t n : {1u, 7u, 8u, 33u}) {
        for (int count : {1, 2, 3, 5}) {
            std::vector<int> seen(n, 0);
            std::size_t per_rank = 0;
            for (int r = 0; r < count; ++r) {
                const auto pos = data::shard_positions(n, r, count, true);
                if (r == 0) per_rank = pos.size();
                EXPECT_EQ(pos.size(), per_rank) << "every rank has as many items";
                for (std::size_t p : pos) ++seen[p % n];
            }
            const std::size_t padding = per_rank * static_cast<std::size_t>(count) - n;
            EXPECT_LT(padding, static_cast<std::size_t>(count));
            std::size_t twice = 0;
            for (int s : seen) {
                EXPECT_GE(s, 1) << "every item at least once";
                twice += static_cast<std::size_t>(s - 1);
            }
            EXPECT_EQ(twice, padding) << "only the padding repeats items";
        }
    }
}

TEST(ShardPositions, ContiguousBlocksInRankOrder) {
    std::vector<std::size_t> all;
    for (int r = 0; r < 3; ++r) {
        const auto pos = data::shard_positions(10, r, 3, false);
        all.insert(all.end(), pos.begin(), pos.end());
    }
    std::vector<std::size_t> expected(10);
    for (std::size_t i = 0; i < 10; ++i) expected[i] = i;
    EXPECT_EQ(all, expected);
    EXPECT_EQ(data::shard_positions(2, 2, 3, false).size(), 0u);   // more ranks than items
}

TEST_F(DistributedTest, LoaderShardsCoverEachEpochExactlyOnceAndMatchOneProcess) {
    const auto aug = data::AugmentSettings::side_on(32, 1.1);
    data::LoaderOptions one;
    one.batch_size = 8;
    one.threads = 1;
    one.seed = 11;
    auto single = data::make_loader(*dataset_, project(), data::View::Train, aug, one);
    std::vector<std::unique_ptr<data::DataLoader>> ranks;
    for (int r = 0; r < 2; ++r) {
        data::LoaderOptions o = one;
        o.batch_size = 4;
        o.shard_rank = r;
        o.shard_count = 2;
        ranks.push_back(data::make_loader(*dataset_, project(), data::View::Train, aug, o));
        EXPECT_EQ(ranks.back()->batches_per_epoch(), single->batches_per_epoch());
    }
    std::vector<std::size_t> first_epoch_order;
    for (int epoch = 0; epoch < 3; ++epoch) {
        single->start_epoch(epoch);
        for (auto& l : ranks) l->start_epoch(epoch);
        std::multiset<std::size_t> seen;
        std::vector<std::size_t> order;
        while (auto b = single->next()) {
            // Batch k of the two ranks together is batch k of one process: the same images,
            // with the same augmentation.
            std::map<std::size_t, at::Tensor> by_record;
            for (auto& l : ranks) {
                auto rb = l->next();
                ASSERT_TRUE(rb.has_value());
                for (std::size_t i = 0; i < rb->records.size(); ++i) {
                    by_record[rb->records[i]] = rb->images[static_cast<long>(i)];
                    seen.insert(rb->records[i]);
                    order.push_back(rb->records[i]);
                }
            }
            ASSERT_EQ(by_record.size(), b->records.size());
            for (std::size_t i = 0; i < b->records.size(); ++i) {
                ASSERT_TRUE(by_record.count(b->records[i]));
                EXPECT_TRUE(at::equal(by_record[b->records[i]], b->images[static_cast<long>(i)])) << "record " << b->records[i];
            }
        }
        for (auto& l : ranks) EXPECT_FALSE(l->next().has_value());
        std::multiset<std::size_t> expected;
        for (std::size_t i : dataset_->indices(data::Split::Train)) expected.insert(i);
        EXPECT_EQ(seen, expected) << "epoch " << epoch << ": every training image exactly once";
        if (epoch == 0) first_epoch_order = order;
        else EXPECT_NE(order, first_epoch_order) << "reshuffled per epoch";
    }
}

TEST_F(DistributedTest, TwoProcessesTrainLikeOneWithTheSameGlobalBatch) {
    const fs::path out = *dir_ / "out-train";
    const fs::path cache = project() / "cache" / "precompute" / "resnet18-32.safetensors";
    const auto t0 = std::chrono::steady_clock::now();
    auto two = launch("train", 2, out);
    ASSERT_EQ(two.exit_code, 0) << two.message;
    ASSERT_TRUE(fs::exists(cache)) << "rank 0 writes the precompute cache";
    fs::rename(cache, out / "cache-2.safetensors");
    auto one = launch("train", 1, out);
    ASSERT_EQ(one.exit_code, 0) << one.message;
    std::fprintf(stderr, "2 + 1 process runs: %.1f s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

    // Every rank got the very same metrics (all-reduced), and they are one process's.
    const json r0 = result(out, "train", 2, 0), r1 = result(out, "train", 2, 1), single = result(out, "train", 1, 0);
    EXPECT_EQ(r0, r1);
    expect_close(r0, single, 1e-4, "2 processes vs 1");
    EXPECT_EQ(r0["predict_records"], single["predict_records"]);
    EXPECT_GT(r0["lr_find"].size(), 10u);

    // Activations computed in two halves and gathered equal those of one process.
    const auto acts2 = models::read_safetensors(out / "cache-2.safetensors");
    const auto acts1 = models::read_safetensors(cache);
    expect_close(acts2, acts1, 1e-5, "precomputed activations");

    // The weights after training (written by rank 0 alone).
    expect_close(weights("trained-2"), weights("trained-1"), 1e-4, "weights");
}

TEST_F(DistributedTest, HeadDropoutTrainsLikeOneProcessWithTheSameGlobalBatch) {
    const fs::path out = *dir_ / "out-dropout";
    for (int nproc : {2, 1}) {
        const auto r = launch("dropout", nproc, out);
        ASSERT_EQ(r.exit_code, 0) << r.message;
    }
    const json r0 = result(out, "dropout", 2, 0), single = result(out, "dropout", 1, 0);
    expect_close(r0, single, 1e-4, "2 processes vs 1 with dropout");
    expect_close(weights("dropout-2"), weights("dropout-1"), 1e-4, "weights with dropout");
    // The dropout is on: the "train" scenario (same head fit without dropout) differs.
    if (fs::exists(*dir_ / "out-train" / "result-train-1-0.json")) {
        EXPECT_NE(result(*dir_ / "out-train", "train", 1, 0)["head"][0]["trn_loss"], single["head"][0]["trn_loss"]);
    }
}

TEST(HeadDropout, DrawnMasksDependOnTheGlobalRowOnly) {
    torch::manual_seed(1);
    models::ClassifierModel model(models::Arch::ResNet18, 3, models::HeadOptions::with_dropout(0.5));
    // BatchNorm in eval mode (its batch statistics would differ between parts of the batch).
    model.eval();
    for (auto& m : model.head()->modules(false))
        if (m->as<torch::nn::Dropout>()) m->train();
    const at::Tensor features = at::randn({6, model.head_inputs()});
    // One process's batch of 6 rows, and the 3 ranks' interleaved shares of it.
    model.set_dropout_draw(models::DropoutDraw{99, 0, 1});
    const at::Tensor whole = model.forward_head(features);
    for (int rank = 0; rank < 3; ++rank) {
        model.set_dropout_draw(models::DropoutDraw{99, rank, 3});
        const at::Tensor rows = at::arange(rank, 6, 3, at::kLong);
        const at::Tensor part = model.forward_head(features.index_select(0, rows));
        EXPECT_TRUE(at::allclose(part, whole.index_select(0, rows), 1e-5, 1e-6)) << "rank " << rank;
    }
    // Another seed drops other units; eval mode drops none.
    model.set_dropout_draw(models::DropoutDraw{100, 0, 1});
    EXPECT_FALSE(at::allclose(model.forward_head(features), whole));
    model.head()->eval();
    at::NoGradGuard no_grad;
    const at::Tensor eval_out = model.forward_head(features);
    model.set_dropout_draw(std::nullopt);
    EXPECT_TRUE(at::equal(eval_out, model.forward_head(features)));
}

TEST_F(DistributedTest, SynchronisedBatchNormMatchesOneProcessWithTheGlobalBatch) {
    const fs::path out = *dir_ / "out-syncbn-module";
    for (int nproc : {2, 1}) {
        const auto r = launch("syncbn-module", nproc, out);
        ASSERT_EQ(r.exit_code, 0) << r.message;
    }
    const auto two = models::read_safetensors(out / "syncbn-module-2.safetensors");
    const auto one = models::read_safetensors(out / "syncbn-module-1.safetensors");
    // BatchNorm outputs of each step, the first step's gradients, running statistics,
    // num_batches_tracked, weights after 3 steps, and the eval-mode outputs.
    expect_close(two, one, 1e-5, "2 ranks with synchronised BatchNorm vs 1 process");
    // The comparison can fail: per-rank statistics (no sync) are a different computation.
    const at::Tensor first = models::find_tensor(one, "bn2d_out_0");
    const at::Tensor half = first.narrow(0, 0, 4);
    const at::Tensor per_rank = (half - half.mean({0, 2, 3}, true)) / (half.var({0, 2, 3}, false, true) + 1e-5).sqrt();
    EXPECT_GT((per_rank - models::find_tensor(one, "bn2d_out_0").narrow(0, 0, 4)).abs().max().item<double>(), 1e-2);
}

TEST_F(DistributedTest, TwoProcessesWithSyncBatchNormTrainLikeOne) {
    const fs::path out = *dir_ / "out-syncbn";
    for (int nproc : {2, 1}) {
        const auto r = launch("syncbn", nproc, out);
        ASSERT_EQ(r.exit_code, 0) << r.message;
    }
    const json r0 = result(out, "syncbn", 2, 0), r1 = result(out, "syncbn", 2, 1), single = result(out, "syncbn", 1, 0);
    EXPECT_EQ(r0, r1);
    expect_close(r0, single, 1e-5, "2 processes with --sync-bn vs 1");
    // The whole state dict: weights, running means and variances, num_batches_tracked.
    expect_close(weights("syncbn-2"), weights("syncbn-1"), 1e-5, "weights and BatchNorm statistics");

    // Without --sync-bn (per-process statistics) the same comparison fails by far.
    const auto off = launch("syncbn-off", 2, out);
    ASSERT_EQ(off.exit_code, 0) << off.message;
    const json unsynced = result(out, "syncbn-off", 2, 0);
    double worst = 0;
    for (std::size_t i = 0; i < single["batch_losses"].size(); ++i)
        worst = std::max(worst, std::abs(unsynced["batch_losses"][i].get<double>() - single["batch_losses"][i].get<double>()));
    EXPECT_GT(worst, 1e-3);
}

TEST_F(DistributedTest, GradientAccumulationInTwoProcessesTrainsAndResumesLikeOne) {
    const fs::path out = *dir_ / "out-accumulate";
    ASSERT_EQ(launch("accumulate-full", 1, out).exit_code, 0);
    auto full2 = launch("accumulate-full", 2, out);   // one all-reduce per group of 3 batches
    ASSERT_EQ(full2.exit_code, 0) << full2.message;
    expect_close(weights("accumulate-full-2"), weights("accumulate-full-1"), 1e-5, "2 processes vs 1, accumulating");
    // Stopped by 2 processes inside a group (their accumulated gradients averaged into the
    // checkpoint), resumed by 1.
    auto stopped = launch("accumulate-stop", 2, out);
    ASSERT_EQ(stopped.exit_code, 0) << stopped.message;
    EXPECT_TRUE(result(out, "accumulate-stop", 2, 0)["stopped"].get<bool>());
    const json saved = json::parse(read_file(project() / "models" / "autosave.json"));
    EXPECT_EQ(saved["fit"]["accumulated"], 1);   // the stop is agreed during the next batch's forward
    EXPECT_TRUE(fs::exists(project() / "models" / "autosave.grads.safetensors"));
    auto resumed = launch("accumulate-resume", 1, out);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.message;
    expect_close(weights("accumulate-resumed-1"), weights("accumulate-full-1"), 1e-5, "resumed inside a group");
}

TEST_F(DistributedTest, CheckpointFromTwoProcessesResumesOnOne) {
    const fs::path out = *dir_ / "out-resume";
    ASSERT_EQ(launch("full", 1, out).exit_code, 0);                    // 3 epochs in one go, one process
    auto stopped = launch("stop", 2, out);                             // 2 processes, stopped after epoch 1
    ASSERT_EQ(stopped.exit_code, 0) << stopped.message;
    EXPECT_TRUE(result(out, "stop", 2, 0)["stopped"].get<bool>());
    EXPECT_EQ(result(out, "stop", 2, 0)["epochs"].size(), 1u);
    auto resumed = launch("resume", 1, out);                           // the last 2 epochs, one process
    ASSERT_EQ(resumed.exit_code, 0) << resumed.message;
    const json full = result(out, "full", 1, 0), rest = result(out, "resume", 1, 0);
    ASSERT_EQ(rest["epochs"].size(), 2u);
    expect_close(rest["epochs"][1], full["epochs"][2], 1e-4, "last epoch");
    expect_close(weights("resumed-1"), weights("full-1"), 1e-4, "weights after resuming");
}

namespace {
void expect_peer_failure(const fs::path& out, const LocalLaunchResult& r, const char* how, const std::string& finding) {
    EXPECT_NE(r.exit_code, 0);
    ASSERT_TRUE(fs::exists(out / "misbehaved-1")) << how;
    ASSERT_TRUE(fs::exists(out / "error-0")) << "rank 0 did not report an error: " << r.message;
    const json e = json::parse(read_file(out / "error-0"));
    const std::string msg = e["message"];
    EXPECT_NE(msg.find("rank 0 of 2: rank 1 stopped answering"), std::string::npos) << msg;
    EXPECT_NE(msg.find("timeout " + std::to_string(kTimeoutSeconds) + " s"), std::string::npos) << msg;
    // The liveness probe tells a rank that ended from one that hangs.
    EXPECT_NE(msg.find("(liveness check: " + finding), std::string::npos) << msg;
    const double waited = e["at"].get<double>() - std::stod(read_file(out / "misbehaved-1"));
    std::fprintf(stderr, "%s: rank 0 failed %.1f s after rank 1: %s\n", how, waited, msg.c_str());
    EXPECT_LT(waited, kTimeoutSeconds + 5.0) << "within the timeout";
    EXPECT_EQ(e["again_message"].get<std::string>(), msg) << "a collective after the failure";
    EXPECT_LT(e["again_seconds"].get<double>(), 0.5) << "a collective after the failure waited instead of failing at once";
}
}  // namespace

TEST_F(DistributedTest, ARankThatDiesEndsTheOtherWithAnError) {
    const fs::path out = *dir_ / "out-die";
    const auto r = launch("die", 2, out, std::chrono::seconds(3));
    expect_peer_failure(out, r, "killed", "rank 1 has ended");
}

TEST_F(DistributedTest, ARankThatHangsEndsTheOtherWithAnErrorWithinTheTimeout) {
    const fs::path out = *dir_ / "out-hang";
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = launch("hang", 2, out, std::chrono::seconds(3));   // the launcher then kills the stopped rank
    expect_peer_failure(out, r, "hung", "rank 1 is running but silent");
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
}

TEST(DistributedEnvironment, TorchrunAndSlurmVariables) {
    {
        test::ScopedEnv a("RANK", "1"), b("WORLD_SIZE", "4"), c("LOCAL_RANK", "1"), d("MASTER_ADDR", "10.0.0.2"),
            e("MASTER_PORT", "1234"), f("LOCAL_WORLD_SIZE", "2");
        const auto env = distributed_env_from_environment();
        ASSERT_TRUE(env.has_value());
        EXPECT_EQ(env->rank, 1);
        EXPECT_EQ(env->world_size, 4);
        EXPECT_EQ(env->local_rank, 1);
        EXPECT_EQ(env->local_world_size, 2);
        EXPECT_EQ(env->master_addr, "10.0.0.2");
        EXPECT_EQ(env->master_port, 1234);
        EXPECT_FALSE(env->agent_store);
    }
    {
        test::ScopedEnv a("RANK", "0"), b("WORLD_SIZE", "1");
        EXPECT_FALSE(distributed_env_from_environment().has_value()) << "a group of one is no group";
    }
    {
        test::ScopedEnv a("RANK", "5"), b("WORLD_SIZE", "2");
        EXPECT_THROW(distributed_env_from_environment(), UserError);
    }
    {
        test::ScopedEnv a("SLURM_PROCID", "3"), b("SLURM_STEP_NUM_TASKS", "8"), c("SLURM_LOCALID", "1"),
            d("SLURM_STEP_NODELIST", "gpu[007-008],cpu1"), e("SLURM_JOB_ID", "123456"), f("SLURM_STEP_TASKS_PER_NODE", "4(x2)");
        const auto env = distributed_env_from_environment();
        ASSERT_TRUE(env.has_value());
        EXPECT_EQ(env->source, "slurm");
        EXPECT_EQ(env->rank, 3);
        EXPECT_EQ(env->world_size, 8);
        EXPECT_EQ(env->local_rank, 1);
        EXPECT_EQ(env->local_world_size, 4);
        EXPECT_EQ(env->master_addr, "gpu007");
        EXPECT_EQ(env->master_port, 20000 + 123456 % 10000);
    }
    {
        test::ScopedEnv a("SLURM_PROCID", "0"), b("SLURM_STEP_NUM_TASKS", "");   // a batch script, not an srun step
        EXPECT_FALSE(distributed_env_from_environment().has_value());
    }
}

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "--worker") {
        try {
            return run_worker(argv[2], argv[3], argv[4]);
        } catch (const UserError& e) {
            std::fprintf(stderr, "worker error: %s\n", e.what());
            return 1;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "worker failure: %s\n", e.what());
            return 2;
        }
    }
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
