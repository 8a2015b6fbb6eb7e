#include "whisker/train/learner.h"

#include "learner_state.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/common/random.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/weights.h"
#include "whisker/train/distributed.h"
#include "whisker/train/sync_batch_norm.h"
#include "whisker/train/training_options.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <cmath>
#include <numeric>

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace whisker::train {

// ------------------------------------------------------------------------------------------
// Internal state
// ------------------------------------------------------------------------------------------

namespace {

constexpr double kAvgMom = 0.98;

// Thrown inside the batch loop to end a fit early (user stop, NaN, a callback's request);
// caught by run_fit, so after_fit always runs.
struct StopTrainingInternal {
    std::string reason;
};

template <class T>
std::vector<T> per_group(const std::vector<T>& values, std::size_t groups, const char* what) {
    if (values.empty()) return std::vector<T>(groups, T{});
    if (values.size() == 1) return std::vector<T>(groups, values[0]);
    if (values.size() != groups)
        throw UserError(std::string("give one ") + what + " or one per layer group (" + std::to_string(groups) + "), not " +
                        std::to_string(values.size()));
    return values;
}

bool is_batchnorm(torch::nn::Module& m) {
    return m.as<torch::nn::BatchNorm2d>() != nullptr || m.as<torch::nn::BatchNorm1d>() != nullptr;
}

std::string oom_hint(int bs) {
    return "try a smaller batch size (--bs " + std::to_string(std::max(1, bs / 2)) +
           "), a smaller image size, or mixed precision";
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Construction and state
// ------------------------------------------------------------------------------------------

Learner::Learner(fs::path project, data::Dataset dataset, LearnerConfig config, const ProgressCallback& progress)
    : project_(std::move(project)), dataset_(std::move(dataset)), config_(std::move(config)), progress_(progress) {
    if (dataset_.classes.size() < 2 && !dataset_.multi_label)
        throw UserError("the dataset has fewer than two classes", "a classifier needs at least two");
    if (dataset_.count(data::Split::Train) == 0) throw UserError("the dataset has no training images");
    const ComputeDevice dev = detect_compute_device();
    if (auto* d = distributed(); d && config_.batch_size % d->world_size() != 0)
        throw UserError("batch size " + std::to_string(config_.batch_size) + " cannot be split evenly over " +
                            std::to_string(d->world_size()) + " processes",
                        "the batch size is the global batch: use a multiple of " + std::to_string(d->world_size()));
    if (config_.accumulate < 1)
        throw UserError("gradient accumulation of " + std::to_string(config_.accumulate) + " batches: use at least 1");
    torch::manual_seed(config_.seed);
    const models::Arch arch = models::parse_arch(config_.arch);
    models::check_input_size(arch, config_.size);
    models::HeadOptions head = config_.head;
    head.multi_label = dataset_.multi_label;
    model_ = std::make_shared<models::ClassifierModel>(arch, static_cast<int>(dataset_.classes.size()), head);
    if (config_.pretrained && !config_.weights_from_checkpoint) {
        DownloadOptions dl;
        if (progress_) dl.progress = [this](const Progress& p) { progress_(p.stage, static_cast<long>(p.done), static_cast<long>(p.total)); };
        const fs::path weights = models::ensure_pretrained_weights(arch, dl);
        models::load_torchvision_weights(model_->body(), weights);
    }
    model_->to(device());
    if (auto* d = distributed()) {
        // Every rank starts from rank 0's weights (the same seed gives the same ones anyway).
        std::vector<at::Tensor> state;
        for (const auto& [name, t] : models::state_dict_of(*model_)) state.push_back(t);
        d->broadcast(state, 0);
    }
    freeze();
    set_precision(config_.precision);
    // The memory format is chosen once, for the precision the learner starts in.
    channels_last_ = config_.channels_last.value_or(prefer_channels_last(precision_, dev.cuda));
    if (channels_last_)
        for (auto& p : model_->parameters())
            if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
    state_id_ = new_state_id();
}

Learner::~Learner() = default;

at::Device Learner::device() const {
    if (!torch::cuda::is_available()) return at::Device(at::kCPU);
    if (auto* d = distributed()) return at::Device(at::kCUDA, static_cast<at::DeviceIndex>(d->cuda_device()));
    return at::Device(at::kCUDA);
}

bool Learner::is_main_process() const { return !distributed() || distributed()->is_main(); }

int Learner::rank_batch_size() const {
    return distributed() ? config_.batch_size / distributed()->world_size() : config_.batch_size;
}

void Learner::sync_buffers() {
    auto* d = distributed();
    if (!d) return;
    std::vector<at::Tensor> buffers = model_->buffers(true);
    d->broadcast(buffers, 0);
}

void Learner::freeze_to(int group) {
    const int n = num_groups();
    if (group < 0) group += n;
    if (group < 0 || group >= n) throw UserError("freeze_to: layer group must be in [0, " + std::to_string(n - 1) + "]");
    const auto groups = model_->layer_group_parameters();
    for (int g = 0; g < n; ++g)
        for (auto p : groups[static_cast<std::size_t>(g)]) p.set_requires_grad(g >= group);
    frozen_groups_ = group;
    // fastai: unfreeze() turns precompute off. Any unfrozen body group does here: precompute
    // trains the head alone, so it would silently leave those groups untrained.
    if (group < n - 1) precompute_ = false;
}

void Learner::set_precompute(bool on) {
    if (on && frozen_groups_ < num_groups() - 1)
        throw UserError("precompute needs a frozen body", "call freeze() first (precompute trains only the head)");
    precompute_ = on;
}

void Learner::request_stop(const std::string& reason) { stop_request_ = reason; }

void Learner::set_train_mode() {
    model_->train();
    const auto groups = model_->layer_groups();
    // BatchNorm layers of frozen groups keep their running statistics (eval mode); with
    // bn_freeze, every BatchNorm does, while its affine weights still train if unfrozen.
    for (int g = 0; g < num_groups(); ++g) {
        if (!bn_freeze_ && g >= frozen_groups_) continue;
        for (const auto& m : groups[static_cast<std::size_t>(g)])
            for (auto& sub : m->modules(true))
                if (is_batchnorm(*sub)) sub->eval();
    }
}

void Learner::set_dataset(data::Dataset dataset) {
    if (dataset.classes != dataset_.classes || dataset.multi_label != dataset_.multi_label)
        throw UserError("the dataset's classes changed since the learner was created",
                        "create a new learner for the new classes");
    if (active_) throw UserError("cannot change the dataset during a fit", "stop the fit first");
    dataset_ = std::move(dataset);
    loaders_.clear();
    activations_.reset();   // keyed by the images: recomputed (or reloaded) on next use
}

data::AugmentSettings Learner::augment_settings() const {
    auto s = data::AugmentSettings::for_preset(config_.augment, config_.size, config_.max_zoom, config_.no_flip);
    s.trivial_augment = config_.trivial_augment;
    s.random_erasing = config_.random_erasing;
    const double ratio = config_.val_resize > 0 ? config_.val_resize
                                                : models::arch_info(models::parse_arch(config_.arch)).default_eval_resize_ratio();
    s.eval_resize = static_cast<int>(std::lround(config_.size * ratio));
    return s;
}

data::DataLoader& Learner::loader(data::View view) {
    auto it = loaders_.find(view);
    if (it != loaders_.end()) return *it->second;
    data::LoaderOptions lo;
    lo.batch_size = rank_batch_size();
    lo.threads = config_.threads;
    lo.seed = config_.seed;
    if (auto* d = distributed()) {
        lo.shard_rank = d->rank();
        lo.shard_count = d->world_size();
        if (lo.threads <= 0) lo.threads = d->threads();
    }
    auto l = data::make_loader(dataset_, project_, view, augment_settings(), lo);
    return *loaders_.emplace(view, std::move(l)).first->second;
}

at::Tensor Learner::loss_of(const at::Tensor& out, const at::Tensor& y) const {
    const bool v2 = config_.head.style == models::HeadStyle::FastaiV2;
    if (dataset_.multi_label) {
        return v2 ? F::binary_cross_entropy_with_logits(out, y) : F::binary_cross_entropy(out, y);
    }
    return v2 ? F::cross_entropy(out, y) : F::nll_loss(out, y);
}

at::Tensor Learner::training_loss_of(const at::Tensor& out, const at::Tensor& y, double epsilon) const {
    if (epsilon <= 0 || dataset_.multi_label) return loss_of(out, y);
    // The fastai 0.7 head ends in LogSoftmax; the v2 head gives logits.
    const bool v2 = config_.head.style == models::HeadStyle::FastaiV2;
    return smoothed_nll_loss(v2 ? at::log_softmax(out, 1) : out, y, epsilon);
}

namespace {
at::Tensor probabilities(const at::Tensor& out, bool multi_label, bool v2) {
    if (multi_label) return v2 ? out.sigmoid() : out;
    return v2 ? out.softmax(1) : out.exp();
}
}  // namespace

// ------------------------------------------------------------------------------------------
// precompute
// ------------------------------------------------------------------------------------------

void Learner::ensure_precomputed() {
    auto* dist = distributed();
    sync_buffers();   // the body's BatchNorm statistics take part in the key and the activations
    // The key: architecture, size, the images of each split (path, size, time, labels — a label
    // corrected on the Inspect page changes the cached targets) and the body's weights, so a
    // stale cache is never used.
    std::string ident = config_.arch + "|" + std::to_string(config_.size) + "|";
    // The validation view's resize changes the valid and test activations (none before it
    // existed: old caches stay valid).
    if (const int eval_resize = augment_settings().eval_resize; eval_resize != config_.size)
        ident += "eval" + std::to_string(eval_resize) + "|";
    // Activations computed in 16 bits differ in their last digits from fp32 ones.
    if (precision_ != Precision::FP32) ident += std::string(precision_name(precision_)) + "|";
    // Stored in 16 bits: another cache (fp32 ones keep the key they had before the choice existed).
    const PrecomputeDtype storage = precompute_dtype();
    const at::ScalarType storage_type = storage == PrecomputeDtype::FP16   ? at::kHalf
                                        : storage == PrecomputeDtype::BF16 ? at::kBFloat16
                                                                           : at::kFloat;
    if (storage != PrecomputeDtype::FP32) ident += std::string("stored-") + precompute_dtype_name(storage) + "|";
    for (const auto& im : dataset_.images) {
        if (im.excluded) continue;
        FileStamp st;
        stat_file(dataset_.resolve(project_, im), st);
        ident += im.path + ":" + data::split_name(im.split) + ":" + std::to_string(st.size) + ":" +
                 std::to_string(st.mtime_ns) + ":";
        for (int label : im.labels) ident += std::to_string(label) + ",";
        ident += "\n";
    }
    std::string weights;
    for (const auto& [name, t] : models::state_dict_of(model_->body())) {
        const at::Tensor c = t.to(at::kCPU).contiguous();
        weights.append(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()) * c.element_size());
    }
    const std::string key = sha256_hex(ident + sha256_hex(weights));
    if (activations_ && activations_->key == key) return;

    const fs::path file = project_ / "cache" / "precompute" / (config_.arch + "-" + std::to_string(config_.size) + ".safetensors");
    auto acts = std::make_unique<Activations>();
    acts->key = key;
    auto records_of = [](const at::Tensor& t) {
        std::vector<std::size_t> out;
        const auto a = t.contiguous();
        for (std::int64_t i = 0; i < a.numel(); ++i) out.push_back(static_cast<std::size_t>(a.data_ptr<std::int64_t>()[i]));
        return out;
    };
    std::error_code ec;
    bool cached = false;
    if (fs::exists(file, ec)) {
        std::map<std::string, std::string> meta;
        try {
            const auto sd = models::read_safetensors(file, &meta);
            // The file names its dtype (files from before: fp32), and its activations must have it.
            const std::string dtype = meta.count("dtype") ? meta["dtype"] : "fp32";
            bool typed = dtype == precompute_dtype_name(storage);
            for (const auto& [name, t] : sd)
                if (name == "train_x" || name == "valid_x" || name == "test_x") typed = typed && t.scalar_type() == storage_type;
            if (meta["key"] == key && typed) {
                for (const auto& [name, t] : sd) {
                    if (name == "train_x") acts->train_x = t;
                    else if (name == "train_y") acts->train_y = t;
                    else if (name == "valid_x") acts->valid_x = t;
                    else if (name == "valid_y") acts->valid_y = t;
                    else if (name == "test_x") acts->test_x = t;
                    else if (name == "train_records") acts->train_records = records_of(t);
                    else if (name == "valid_records") acts->valid_records = records_of(t);
                    else if (name == "test_records") acts->test_records = records_of(t);
                }
                cached = true;
            }
        } catch (const UserError&) {
            // a damaged cache is rebuilt
        }
    }
    // A group uses the cache only when every rank could read it; otherwise all recompute.
    if (dist) cached = !dist->any(!cached);
    if (cached) {
        activations_ = std::move(acts);
        return;
    }
    acts = std::make_unique<Activations>();
    acts->key = key;
    torch::NoGradGuard no_grad;
    model_->eval();
    auto compute = [&](data::View view, at::Tensor& x, at::Tensor& y, std::vector<std::size_t>& records, const char* stage) {
        auto& l = loader(view);
        std::vector<at::Tensor> xs, ys;
        l.start_epoch(0);
        long done = 0;
        while (auto b = l.next()) {
            if (b->images.size(0) == 0) continue;
            AutocastScope autocast(precision_, device().is_cuda());
            xs.push_back(model_->pooled_features(b->images.to(device())).to(at::kFloat).to(at::kCPU));
            ys.push_back(b->labels);
            records.insert(records.end(), b->records.begin(), b->records.end());
            if (progress_) progress_(stage, ++done, static_cast<long>(l.batches_per_epoch()));
        }
        if (!xs.empty()) {
            x = at::cat(xs);
            y = at::cat(ys);
        }
        if (dist) {
            // Each rank computed its block of the view (in rank order): put them together.
            std::vector<std::int64_t> mine(records.begin(), records.end());
            at::Tensor rec = at::tensor(mine.empty() ? std::vector<std::int64_t>{} : mine, at::kLong);
            x = dist->all_gather_rows(x);
            y = dist->all_gather_rows(y);
            rec = dist->all_gather_rows(rec);
            records.clear();
            if (rec.defined()) {
                const at::Tensor c = rec.contiguous();
                records.assign(c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel());
            }
        }
        if (x.defined() && storage_type == at::kHalf && x.numel() > 0 && x.abs().max().item<double>() > 65504.0)
            throw UserError("the body's activations exceed float16's range (65504) and cannot be stored in fp16",
                            "use --precompute-dtype bf16 (fp32's range) or fp32");
        if (x.defined()) x = x.to(storage_type);   // after the gather: the group sends float32
    };
    compute(data::View::Fix, acts->train_x, acts->train_y, acts->train_records, "precomputing train activations");
    compute(data::View::Valid, acts->valid_x, acts->valid_y, acts->valid_records, "precomputing valid activations");
    at::Tensor test_y;
    if (dataset_.count(data::Split::Test) > 0)
        compute(data::View::Test, acts->test_x, test_y, acts->test_records, "precomputing test activations");
    auto as_tensor = [](const std::vector<std::size_t>& v) {
        std::vector<std::int64_t> w(v.begin(), v.end());
        return at::tensor(w.empty() ? std::vector<std::int64_t>{} : w, at::kLong);
    };
    models::StateDict sd{{"train_x", acts->train_x}, {"train_y", acts->train_y}, {"train_records", as_tensor(acts->train_records)}};
    if (acts->valid_x.defined()) {
        sd.emplace_back("valid_x", acts->valid_x);
        sd.emplace_back("valid_y", acts->valid_y);
        sd.emplace_back("valid_records", as_tensor(acts->valid_records));
    }
    if (acts->test_x.defined()) {
        sd.emplace_back("test_x", acts->test_x);
        sd.emplace_back("test_records", as_tensor(acts->test_records));
    }
    if (is_main_process())
        models::write_safetensors(file, sd, {{"key", key}, {"arch", config_.arch}, {"size", std::to_string(config_.size)},
                                             {"dtype", precompute_dtype_name(storage)}});
    activations_ = std::move(acts);
}

// ------------------------------------------------------------------------------------------
// fit
// ------------------------------------------------------------------------------------------

FitResult Learner::fit(const FitOptions& o, const std::atomic<bool>* stop) {
    check_training_options(o);
    if (precompute_ && mix_options(o).enabled())
        throw UserError("MixUp and CutMix mix images, and with precompute the head trains on cached activations instead",
                        "turn precompute off for this fit (--no-precompute), or leave out --mixup/--cutmix");
    if (o.label_smoothing > 0 && dataset_.multi_label)
        throw UserError("label smoothing is for datasets with one label per image; this one is multi-label",
                        "leave out --label-smoothing");
    auto st = std::make_unique<FitState>();
    st->options = o;
    // The checkpoint keeps the accumulation this fit uses, so that a resume uses it too.
    if (st->options.accumulate <= 0) st->options.accumulate = config_.accumulate;
    st->precompute = precompute_;
    st->size = config_.size;
    if (precompute_) ensure_precomputed();
    // The weight EMA of this fit starts from the weights as they are; without it, an earlier
    // fit's average no longer describes the training and is dropped.
    ema_ = o.ema_decay > 0 ? std::make_unique<WeightEma>(*model_, o.ema_decay) : nullptr;
    plan_schedule(*st);
    st->loader_epoch_base = epochs_trained_;
    return run_fit(*st, stop);
}

void Learner::plan_schedule(FitState& st) {
    const FitOptions& o = st.options;
    st.batches_per_epoch = st.precompute
                               ? static_cast<long>((activations_->train_x.size(0) + config_.batch_size - 1) / config_.batch_size)
                               : static_cast<long>(loader(data::View::Train).batches_per_epoch());
    // The schedule counts optimiser steps: with accumulation, one per group of batches.
    st.accumulate = std::max(1, o.accumulate);
    st.steps_per_epoch = (st.batches_per_epoch + st.accumulate - 1) / st.accumulate;
    st.momenta.clear();
    if (o.one_cycle) {
        st.total_epochs = o.n_cycle;
        st.multipliers = one_cycle_multipliers(static_cast<int>(st.total_epochs * st.steps_per_epoch));
        st.momenta = one_cycle_momenta(static_cast<int>(st.total_epochs * st.steps_per_epoch));
    } else if (o.cycle_len > 0) {
        st.total_epochs = sgdr_epochs(o.cycle_len, o.cycle_mult, o.n_cycle);
        st.multipliers = sgdr_multipliers(static_cast<int>(st.steps_per_epoch), o.cycle_len, o.cycle_mult, o.n_cycle);
    } else {
        st.total_epochs = o.n_cycle;
        st.multipliers.assign(static_cast<std::size_t>(st.total_epochs * st.steps_per_epoch), 1.0);
    }
}

FitResult Learner::fine_tune(int epochs, double base_lr, int freeze_epochs, const std::atomic<bool>* stop) {
    freeze();
    FitOptions first;
    first.lrs = {base_lr};
    first.n_cycle = freeze_epochs;
    first.one_cycle = true;
    FitResult r = fit(first, stop);
    if (r.stopped) return r;
    unfreeze();
    FitOptions second;
    second.lrs = {base_lr / 2 / 100, base_lr / 2 / 10, base_lr / 2};
    second.n_cycle = epochs;
    second.one_cycle = true;
    FitResult r2 = fit(second, stop);
    r.epochs.insert(r.epochs.end(), r2.epochs.begin(), r2.epochs.end());
    r.stopped = r2.stopped;
    r.stop_reason = r2.stop_reason;
    return r;
}


void Learner::build_optimizer(FitState& st) {
    // One parameter group per layer group, trainable parameters only.
    st.base_lrs.clear();
    st.group_of.clear();
    {
        const auto group_params = model_->layer_group_parameters();
        const std::size_t n = group_params.size();
        const auto lrs = per_group(st.options.lrs, n, "learning rate");
        const auto wds = per_group(st.options.wds, n, "weight decay");
        std::vector<torch::optim::OptimizerParamGroup> groups;
        for (std::size_t g = 0; g < n; ++g) {
            if (st.precompute && g + 1 != n) continue;  // precompute trains the head alone
            std::vector<at::Tensor> params;
            for (const auto& p : group_params[g])
                if (p.requires_grad()) params.push_back(p);
            if (params.empty()) continue;
            if (st.options.optimizer == OptimizerKind::AdamW)
                groups.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(
                                                torch::optim::AdamWOptions(lrs[g]).weight_decay(wds[g]).betas({st.options.momentum, 0.99})));
            else
                groups.emplace_back(params, std::make_unique<torch::optim::SGDOptions>(
                                                torch::optim::SGDOptions(lrs[g]).momentum(st.options.momentum).weight_decay(wds[g])));
            st.base_lrs.push_back(lrs[g]);
            st.group_of.push_back(static_cast<int>(g));
        }
        if (groups.empty()) throw UserError("nothing to train: every layer group is frozen");
        if (st.options.optimizer == OptimizerKind::AdamW)
            st.optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(lrs.back()));
        else
            st.optimizer = std::make_unique<torch::optim::SGD>(std::move(groups), torch::optim::SGDOptions(lrs.back()));
    }
}

std::vector<double> Learner::current_learning_rates() const {
    std::vector<double> out;
    if (!active_ || !active_->optimizer) return out;
    for (auto& g : active_->optimizer->param_groups()) {
        if (active_->options.optimizer == OptimizerKind::AdamW) out.push_back(static_cast<const torch::optim::AdamWOptions&>(g.options()).lr());
        else out.push_back(static_cast<const torch::optim::SGDOptions&>(g.options()).lr());
    }
    return out;
}

FitResult Learner::run_fit(FitState& st, const std::atomic<bool>* stop) {
    FitResult result;
    struct ActiveGuard {
        FitState*& slot;
        ~ActiveGuard() { slot = nullptr; }
    } active_guard{active_};
    active_ = &st;
    stop_request_.clear();
    // The weights are about to change (lr_find puts them back as they were).
    if (!st.finder) state_id_ = new_state_id();
    // fp16 needs its loss scaled so that small gradients survive; bf16 has fp32's range.
    const bool use_amp = precision_ == Precision::FP16 && device().is_cuda();
    if (!st.optimizer) build_optimizer(st);
    auto* dist = distributed();
    const auto local_bs = static_cast<std::size_t>(rank_batch_size());
    // Data-parallel: gradients averaged over the ranks, in buckets, during backward.
    std::unique_ptr<GradientSync> grad_sync;
    if (dist) {
        std::vector<at::Tensor> params;
        for (auto& g : st.optimizer->param_groups())
            for (auto& p : g.params()) params.push_back(p);
        grad_sync = std::make_unique<GradientSync>(*dist, params);
    }
    auto set_rates = [&](long it) {
        const double mult = st.multipliers.at(static_cast<std::size_t>(it));
        auto& pg = st.optimizer->param_groups();
        for (std::size_t i = 0; i < pg.size(); ++i) {
            if (st.options.optimizer == OptimizerKind::AdamW) {
                auto& opt = static_cast<torch::optim::AdamWOptions&>(pg[i].options());
                opt.lr(st.base_lrs[i] * mult);
                if (!st.momenta.empty()) opt.betas({st.momenta[static_cast<std::size_t>(it)], 0.99});
            } else {
                auto& opt = static_cast<torch::optim::SGDOptions&>(pg[i].options());
                opt.lr(st.base_lrs[i] * mult);
                if (!st.momenta.empty()) opt.momentum(st.momenta[static_cast<std::size_t>(it)]);
            }
        }
        return st.base_lrs.back() * mult;
    };

    // BatchNorm over the global batch (--sync-bn), for the training forward passes.
    const bool sync_bn = dist && config_.sync_batch_norm;
    // One optimiser step: the gradient all-reduce (with the last batch's backward, if any),
    // fp16's unscaling and overflow check, the step, the weight EMA. Dynamic loss scaling for
    // fp16 (CUDA): scale up, skip steps whose gradients overflow.
    auto step_optimizer = [&](const std::function<void()>& last_backward) {
        if (grad_sync) grad_sync->arm();
        if (last_backward) last_backward();
        if (grad_sync) grad_sync->finish();
        if (use_amp) {
            bool finite = true;
            for (auto& g : st.optimizer->param_groups())
                for (auto& p : g.params())
                    if (p.grad().defined()) {
                        p.grad().div_(st.loss_scale);
                        if (!at::isfinite(p.grad()).all().item<bool>()) finite = false;
                    }
            if (finite) {
                st.optimizer->step();
                if (++st.good_steps >= 2000) { st.loss_scale *= 2; st.good_steps = 0; }
            } else {
                st.loss_scale /= 2;
                st.good_steps = 0;
            }
        } else {
            st.optimizer->step();
        }
        if (ema_ && !st.finder && st.options.ema_decay > 0) ema_->update(*model_);
        ++st.step;
        st.accumulated = 0;
        st.group_batches = 0;
        st.group_has_gradients = false;
    };
    const auto steps_in_schedule = static_cast<long>(st.multipliers.size());

    for (auto& cb : callbacks_) cb->before_fit(*this);
    const auto fit_start = std::chrono::steady_clock::now();
    try {
        for (; st.epoch < st.total_epochs; ++st.epoch) {
            const auto epoch_start = std::chrono::steady_clock::now();
            for (auto& cb : callbacks_) cb->before_epoch(*this, st.epoch);
            set_train_mode();
            // The NaN guard's fallback: the weights as this epoch began.
            std::vector<at::Tensor> epoch_start_state;
            if (!st.finder) {
                torch::NoGradGuard no_grad;
                for (const auto& [name, t] : models::state_dict_of(*model_)) epoch_start_state.push_back(t.detach().clone());
            }
            const long loader_epoch = st.loader_epoch_base + st.epoch;
            // The batches of this epoch: images from the loader, or cached activations.
            std::vector<std::int64_t> order;
            if (st.precompute) {
                order.resize(static_cast<std::size_t>(activations_->train_x.size(0)));
                std::iota(order.begin(), order.end(), 0);
                Rng rng(derive_seed(config_.seed, 0xac7, static_cast<std::uint64_t>(loader_epoch)));
                shuffle_in_place(order, rng);
                if (dist) {   // this rank's share, as the loader's (DistributedSampler)
                    std::vector<std::int64_t> mine;
                    for (std::size_t p : data::shard_positions(order.size(), dist->rank(), dist->world_size(), true))
                        mine.push_back(order[p % order.size()]);
                    order = std::move(mine);
                }
            } else {
                loader(data::View::Train).start_epoch(static_cast<int>(loader_epoch), st.batch);
            }
            for (;; ++st.batch) {
                if (st.finder && (st.batch >= static_cast<std::size_t>(st.batches_per_epoch) || st.step >= steps_in_schedule))
                    break;
                // The gradient-accumulation group of this batch: `group_size` batches from
                // `st.batch - st.accumulated` (fewer at the epoch's end); the optimiser steps
                // after its last one.
                const long group_first = static_cast<long>(st.batch) - st.accumulated;
                const long group_size = std::max<long>(1, std::min<long>(st.accumulate, st.batches_per_epoch - group_first));
                const bool last_of_group = st.accumulated + 1 >= group_size;
                // A batch that is left out (no images anywhere) still counts for its group.
                auto skip_batch = [&] {
                    if (!last_of_group) ++st.accumulated;
                    else if (st.group_has_gradients) step_optimizer({});
                    else st.accumulated = 0, st.group_batches = 0;
                };
                at::Tensor x, y;
                if (st.precompute) {
                    const std::size_t begin = st.batch * local_bs;
                    if (begin >= order.size()) break;
                    const std::size_t end = std::min(order.size(), begin + local_bs);
                    const at::Tensor idx = at::tensor(std::vector<std::int64_t>(order.begin() + static_cast<long>(begin),
                                                                                order.begin() + static_cast<long>(end)),
                                                      at::kLong);
                    x = activations_->train_x.index_select(0, idx).to(device(), at::kFloat);   // stored maybe 16-bit
                    y = activations_->train_y.index_select(0, idx).to(device());
                } else {
                    auto b = loader(data::View::Train).next();
                    if (!b) break;
                    load_failures_.insert(load_failures_.end(), b->failures.begin(), b->failures.end());
                    // In a group an empty batch still takes part (with zero gradients).
                    if (b->images.size(0) == 0 && !dist) {
                        skip_batch();
                        continue;
                    }
                    if (b->images.size(0) > 0) {
                        x = b->images.to(device(), /*non_blocking=*/true);
                        y = b->labels.to(device(), true);
                        if (channels_last_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
                    }
                }
                const bool have = x.defined();
                // MixUp / CutMix (not in lr_find's sweep): drawn per batch from the seed, the loader
                // epoch, the batch and the rank, so a resumed fit mixes exactly as before.
                MixDraw mix;
                if (have && !st.finder && !st.precompute && mix_options(st.options).enabled()) {
                    Rng mix_rng(derive_seed(derive_seed(config_.seed, 0x6d6978, static_cast<std::uint64_t>(loader_epoch)),
                                            static_cast<std::uint64_t>(st.batch), dist ? static_cast<std::uint64_t>(dist->rank()) : 0));
                    mix = draw_mix(mix_options(st.options), x.size(0), x.size(2), x.size(3), mix_rng);
                    x = mix_images(x, mix);
                    if (channels_last_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
                }
                const bool user_stop = stop && stop->load();
                if (!dist) {
                    if (user_stop) throw StopTrainingInternal{"stopped by the user"};
                    if (!stop_request_.empty()) throw StopTrainingInternal{stop_request_};
                }
                for (auto& cb : callbacks_) cb->before_batch(*this, st.iteration);
                const double lr = set_rates(std::min<long>(st.step, steps_in_schedule - 1));
                if (st.accumulated == 0) st.optimizer->zero_grad();   // a new group
                // With synchronised BatchNorm every rank runs every layer, one without images
                // on an empty batch.
                if (!have && sync_bn) {
                    x = st.precompute ? at::empty({0, activations_->train_x.size(1)}, at::TensorOptions().device(device()))
                                      : at::empty({0, 3, config_.size, config_.size}, at::TensorOptions().device(device()));
                }
                at::Tensor loss;
                double loss_value = 0;
                if (x.defined()) {
                    try {
                        SyncBatchNormScope synchronised(sync_bn ? dist : nullptr);
                        AutocastScope autocast(precision_, device().is_cuda());
                        // The head's dropout masks: drawn for the whole global batch from the
                        // seed, the loader epoch and the batch, and this rank takes its rows (the
                        // loader interleaves them: rank r holds rows r, r + N, …), so N processes
                        // drop exactly what one process does, and a resume on another N too.
                        models::DropoutDraw draw;
                        draw.seed = derive_seed(derive_seed(config_.seed, 0x64726f70, static_cast<std::uint64_t>(loader_epoch)),
                                                static_cast<std::uint64_t>(st.batch));
                        draw.first_row = dist ? dist->rank() : 0;
                        draw.row_stride = dist ? dist->world_size() : 1;
                        struct DrawScope {
                            models::ClassifierModel& model;
                            ~DrawScope() { model.set_dropout_draw(std::nullopt); }
                        } draw_scope{*model_};
                        model_->set_dropout_draw(draw);
                        const at::Tensor out = st.precompute ? model_->forward_head(x) : model_->forward(x);
                        // The loss of the mixed targets (as fastai, what trn_loss reports), else the plain one.
                        const double eps = st.finder ? 0.0 : st.options.label_smoothing;
                        if (have)
                            loss = mixed_loss([this, eps](const at::Tensor& o, const at::Tensor& t) { return training_loss_of(o, t, eps); },
                                              out.to(at::kFloat), y, mix);
                        else
                            loss = out.to(at::kFloat).sum() * 0.0;   // no images: only the BatchNorm collectives
                    } catch (const c10::Error& e) {
                        if (std::string(e.what()).find("out of memory") != std::string::npos)
                            throw UserError("the GPU ran out of memory with batch size " + std::to_string(local_bs),
                                            oom_hint(static_cast<int>(local_bs) * (dist ? dist->world_size() : 1)) +
                                                (st.accumulate == 1 ? ", or gradient accumulation (--accumulate 2 with half the --bs)" : ""));
                        throw;
                    }
                    if (have) loss_value = loss.item<double>();
                }
                const double rows = have ? static_cast<double>(x.size(0)) : 0.0;
                if (dist) {
                    // One small all-reduce per batch: the global batch's mean loss (so every rank
                    // records, smooths and NaN-checks the same number) and whether any rank stops.
                    const auto agreed = dist->all_reduce_sum({have ? loss_value * rows : 0.0, rows, user_stop || !stop_request_.empty() ? 1.0 : 0.0});
                    if (agreed[2] > 0)
                        throw StopTrainingInternal{user_stop ? "stopped by the user"
                                                   : !stop_request_.empty() ? stop_request_
                                                                            : "stopped by the user (on another rank)"};
                    if (agreed[1] == 0) {   // no rank had an image in this batch
                        skip_batch();
                        continue;
                    }
                    loss_value = agreed[0] / agreed[1];
                }
                if (!std::isfinite(loss_value)) {
                    if (st.finder) {
                        st.exploded = true;
                        break;
                    }
                    {
                        torch::NoGradGuard no_grad;
                        const auto state = models::state_dict_of(*model_);
                        for (std::size_t i = 0; i < state.size(); ++i) state[i].second.copy_(epoch_start_state[i]);
                    }
                    ema_.reset();   // it averaged the diverging weights
                    char lr_text[32];
                    std::snprintf(lr_text, sizeof lr_text, "%.3g", lr);
                    throw StopTrainingInternal{"the loss became NaN at epoch " + std::to_string(st.epoch + 1) + ", batch " +
                                               std::to_string(st.batch + 1) + ": the learning rate (" + lr_text +
                                               ") is probably too high; the weights were restored to the start of that epoch"};
                }
                for (auto& cb : callbacks_) cb->after_loss(*this, loss_value);
                // Each batch's loss counts by its share of the group's images on this rank: 1/N
                // for N equal batches, as one batch of all of them. The batches before the last
                // are weighted by the full group's size; the last, knowing the group's actual
                // size, rescales what they accumulated when a batch came up short. Sizes are
                // counted in full batches of this rank, so a resume on another number of
                // processes goes on with the same weights.
                const double fill = rows / static_cast<double>(local_bs);
                const auto full = static_cast<double>(group_size);
                auto backward = [&](double weight) {
                    if (!loss.defined()) return;
                    const double factor = weight * (use_amp ? st.loss_scale : 1.0);
                    (factor == 1.0 ? loss : loss * factor).backward();
                };
                if (!last_of_group) {
                    backward(fill / full);
                    st.group_batches += fill;
                    st.group_has_gradients = true;
                    ++st.accumulated;
                } else {
                    const double total = st.group_batches + fill;
                    if (st.accumulated > 0 && total > 0 && total != full) {
                        torch::NoGradGuard no_grad;
                        for (auto& g : st.optimizer->param_groups())
                            for (auto& p : g.params())
                                if (p.grad().defined()) p.mutable_grad().mul_(full / total);
                    }
                    const double weight = total > 0 ? fill / total : 0.0;
                    step_optimizer([&] { backward(weight); });
                }
                ++st.batch_num;
                st.avg_loss = st.avg_loss * kAvgMom + loss_value * (1 - kAvgMom);
                const double smooth = st.avg_loss / (1 - std::pow(kAvgMom, static_cast<double>(st.batch_num)));
                BatchRecord rec{st.iteration, st.epoch, loss_value, smooth, lr};
                ++st.iteration;
                if (st.finder) {
                    // One point of the curve per optimiser step.
                    if (last_of_group) {
                        st.found_lrs.push_back(lr);
                        st.found_losses.push_back(smooth);
                        if (std::isnan(smooth) || smooth > 4 * st.best) {
                            st.exploded = true;
                            break;
                        }
                        if (smooth < st.best && st.step > 10) st.best = smooth;
                    }
                } else {
                    batches_.push_back(rec);
                }
                for (auto& cb : callbacks_) cb->after_batch(*this, rec);
                // The sweep reports its steps over all its epochs (a small dataset's sweep runs
                // several), so the bar fills once instead of restarting every epoch.
                if (progress_ && st.finder)
                    progress_("lr_find", std::min<long>(st.step, steps_in_schedule), steps_in_schedule);
                else if (progress_)
                    progress_("epoch " + std::to_string(st.epoch + 1) + "/" + std::to_string(st.total_epochs),
                              static_cast<long>(st.batch + 1), st.batches_per_epoch);
            }
            // An epoch whose loader gave fewer batches than planned still ends its last group.
            if (st.accumulated > 0 && !st.exploded) {
                if (st.group_has_gradients) step_optimizer({});
                st.accumulated = 0;
                st.group_batches = 0;
            }
            if (st.finder) {
                st.batch = 0;
                if (st.exploded || st.step >= steps_in_schedule) break;
                continue;
            }
            st.batch = 0;
            EpochRecord rec;
            rec.epoch = st.epoch;
            rec.trn_loss = st.batch_num ? st.avg_loss / (1 - std::pow(kAvgMom, static_cast<double>(st.batch_num))) : 0;
            validate(rec);
            if (ema_ && st.options.ema_decay > 0) validate_ema(rec);
            rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
            st.seconds += rec.seconds;
            const int done = static_cast<int>(st.done.size()) + 1;
            rec.eta_seconds = st.seconds / done * (st.total_epochs - st.epoch - 1);
            st.done.push_back(rec);
            epochs_.push_back(rec);
            result.epochs.push_back(rec);
            ++epochs_trained_;
            if (autosave) {
                const int next = st.epoch + 1;
                FitState* keep = &st;
                const int saved_epoch = st.epoch;
                st.epoch = next;  // the checkpoint resumes at the next epoch
                pending_.reset();
                save_with_fit_state("autosave", keep);
                st.epoch = saved_epoch;
            }
            for (auto& cb : callbacks_) cb->after_epoch(*this, rec);
            const bool stop_now = dist ? dist->any(!stop_request_.empty()) : !stop_request_.empty();
            if (stop_now && st.epoch + 1 < st.total_epochs) {
                ++st.epoch;
                throw StopTrainingInternal{stop_request_.empty() ? "stopped on another rank" : stop_request_};
            }
        }
    } catch (const StopTrainingInternal& s) {
        result.stopped = true;
        result.stop_reason = s.reason;
        // A user's stop can be resumed; a NaN stop would only diverge again.
        if (autosave && !st.finder && s.reason.find("NaN") == std::string::npos) save_with_fit_state("autosave", &st);
    }
    (void)fit_start;
    for (auto& cb : callbacks_) cb->after_fit(*this, result);
    return result;
}

void Learner::validate(EpochRecord& rec) {
    auto* dist = distributed();
    sync_buffers();
    torch::NoGradGuard no_grad;
    model_->eval();
    const bool v2 = config_.head.style == models::HeadStyle::FastaiV2;
    double loss_sum = 0, correct = 0, log_loss_sum = 0;
    std::int64_t n = 0, label_count = 0;
    auto account = [&](const at::Tensor& out, const at::Tensor& y) {
        const auto bs = out.size(0);
        loss_sum += loss_of(out, y).item<double>() * static_cast<double>(bs);
        const at::Tensor p = probabilities(out, dataset_.multi_label, v2).to(at::kDouble);
        if (dataset_.multi_label) {
            correct += (p.gt(0.5).to(at::kDouble) == y.to(at::kDouble)).sum().item<double>();
            label_count += y.numel();
            const at::Tensor pc = p.clamp(1e-15, 1 - 1e-15);
            const at::Tensor yd = y.to(at::kDouble);
            log_loss_sum += -(yd * pc.log() + (1 - yd) * (1 - pc).log()).sum().item<double>();
        } else {
            correct += p.argmax(1).eq(y).sum().item<double>();
            label_count += bs;
            // Kaggle's multi-class log loss: clip, renormalise, mean of -log p(true class).
            at::Tensor pc = p.clamp(1e-15, 1 - 1e-15);
            pc = pc / pc.sum(1, true);
            log_loss_sum += -pc.gather(1, y.unsqueeze(1)).log().sum().item<double>();
        }
        n += bs;
    };
    if (precompute_ && activations_ && activations_->valid_x.defined()) {
        // This rank's block of the rows (all of them alone).
        const auto rows = data::shard_positions(static_cast<std::size_t>(activations_->valid_x.size(0)), dist ? dist->rank() : 0,
                                                dist ? dist->world_size() : 1, false);
        const auto first = rows.empty() ? 0 : static_cast<std::int64_t>(rows.front());
        const auto last = first + static_cast<std::int64_t>(rows.size());
        const std::int64_t bs = rank_batch_size();
        for (std::int64_t b = first; b < last; b += bs) {
            const auto len = std::min<std::int64_t>(bs, last - b);
            AutocastScope autocast(precision_, device().is_cuda());
            account(model_->forward_head(activations_->valid_x.narrow(0, b, len).to(device(), at::kFloat)).to(at::kFloat),
                    activations_->valid_y.narrow(0, b, len).to(device()));
        }
    } else if (dataset_.count(data::Split::Valid) > 0) {
        auto& l = loader(data::View::Valid);
        l.start_epoch(0);
        while (auto b = l.next()) {
            if (b->images.size(0) == 0) continue;
            AutocastScope autocast(precision_, device().is_cuda());
            account(model_->forward(b->images.to(device())).to(at::kFloat), b->labels.to(device()));
        }
    }
    if (dist) {   // every rank gets the metrics of the whole validation set
        const auto sums = dist->all_reduce_sum({loss_sum, correct, log_loss_sum, static_cast<double>(n), static_cast<double>(label_count)});
        loss_sum = sums[0];
        correct = sums[1];
        log_loss_sum = sums[2];
        n = static_cast<std::int64_t>(sums[3]);
        label_count = static_cast<std::int64_t>(sums[4]);
    }
    if (n > 0) {
        rec.val_loss = loss_sum / static_cast<double>(n);
        rec.accuracy = correct / static_cast<double>(label_count);
        rec.log_loss = log_loss_sum / static_cast<double>(dataset_.multi_label ? label_count : n);
    }
    set_train_mode();
}

// ------------------------------------------------------------------------------------------
// lr_find
// ------------------------------------------------------------------------------------------

LrFindResult Learner::lr_find(double start_lr, double end_lr, bool linear, const std::atomic<bool>* stop, int accumulate) {
    if (!(start_lr > 0 && end_lr > start_lr)) throw UserError("lr_find needs 0 < start_lr < end_lr");
    if (accumulate < 0) throw UserError("gradient accumulation must be at least 1 batch per step");
    // Snapshot everything the sweep changes: weights, BatchNorm statistics, random state.
    std::vector<at::Tensor> snapshot;
    const auto state = models::state_dict_of(*model_);
    for (const auto& [name, t] : state) snapshot.push_back(t.detach().clone());
    const at::Tensor rng_state = at::detail::getDefaultCPUGenerator().get_state();
    const bool saved_autosave = autosave;
    autosave = false;

    auto st = std::make_unique<FitState>();
    st->finder = true;
    st->precompute = precompute_;
    st->options.lrs = {start_lr};
    st->options.accumulate = accumulate > 0 ? accumulate : config_.accumulate;
    st->accumulate = st->options.accumulate;
    st->size = config_.size;
    if (precompute_) ensure_precomputed();
    st->batches_per_epoch = precompute_
                                ? static_cast<long>((activations_->train_x.size(0) + config_.batch_size - 1) / config_.batch_size)
                                : static_cast<long>(loader(data::View::Train).batches_per_epoch());
    // fastai 0.7 sweeps one epoch; on a small dataset that is too few points for a useful
    // curve, so the sweep runs at least kMinFinderSteps optimiser steps (over several epochs).
    // With accumulation a step is a group of batches.
    constexpr long kMinFinderSteps = 100;
    st->steps_per_epoch = (st->batches_per_epoch + st->accumulate - 1) / st->accumulate;
    const long sweep = std::max(st->steps_per_epoch, kMinFinderSteps);
    st->total_epochs = static_cast<int>((sweep + st->steps_per_epoch - 1) / st->steps_per_epoch);
    const auto rates = lr_find_rates(start_lr, end_lr, static_cast<int>(sweep), linear);
    for (double r : rates) st->multipliers.push_back(r / start_lr);
    st->loader_epoch_base = epochs_trained_;
    std::exception_ptr error;
    try {
        run_fit(*st, stop);
    } catch (...) {
        error = std::current_exception();
    }
    {
        torch::NoGradGuard no_grad;
        for (std::size_t i = 0; i < state.size(); ++i) state[i].second.copy_(snapshot[i]);
    }
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(rng_state);
    autosave = saved_autosave;
    if (error) std::rethrow_exception(error);

    LrFindResult r;
    r.lrs = st->found_lrs;
    r.losses = st->found_losses;
    r.stopped_early = st->exploded;
    const std::size_t n = r.lrs.size();
    const std::size_t first = std::min<std::size_t>(10, n), last = n > first + 5 ? n - 5 : first;
    r.plot_lrs.assign(r.lrs.begin() + static_cast<long>(first), r.lrs.begin() + static_cast<long>(last));
    r.plot_losses.assign(r.losses.begin() + static_cast<long>(first), r.losses.begin() + static_cast<long>(last));
    r.suggestions = suggest_learning_rates(r.plot_lrs.empty() ? r.lrs : r.plot_lrs, r.plot_lrs.empty() ? r.losses : r.plot_losses);
    return r;
}

// ------------------------------------------------------------------------------------------
// predict / TTA
// ------------------------------------------------------------------------------------------

Predictions Learner::predict(data::Split split, int tta, TtaMix mix, const std::atomic<bool>* stop) {
    if (split == data::Split::Train) throw UserError("predict works on the valid or test split");
    if (dataset_.count(split) == 0) throw UserError(std::string("the dataset has no ") + data::split_name(split) + " images");
    if (use_ema_ && !ema_)
        throw UserError("the learner has no EMA weights (the latest fit had no --ema)", "predict without --ema, or fit with --ema");
    // With use_ema_weights(true) the EMA weights are swapped into the model for the prediction
    // and out again afterwards, bit for bit.
    struct EmaSwap {
        WeightEma* ema;
        models::ClassifierModel& model;
        ~EmaSwap() {
            if (ema) ema->swap_with(model);
        }
    } ema_swap{nullptr, *model_};
    if (use_ema_) {
        ema_->swap_with(*model_);
        ema_swap.ema = ema_.get();
    }
    auto* dist = distributed();
    sync_buffers();
    torch::NoGradGuard no_grad;
    model_->eval();
    const bool v2 = config_.head.style == models::HeadStyle::FastaiV2;
    Predictions p;
    auto pass = [&](data::View view, int epoch, bool record) {
        auto& l = loader(view);
        l.start_epoch(epoch);
        std::vector<at::Tensor> probs;
        long done = 0;
        while (auto b = l.next()) {
            if (stop && stop->load()) throw Cancelled();
            load_failures_.insert(load_failures_.end(), b->failures.begin(), b->failures.end());
            if (b->images.size(0) == 0) continue;
            at::Tensor out;
            {
                AutocastScope autocast(precision_, device().is_cuda());
                out = model_->forward(b->images.to(device())).to(at::kFloat);
            }
            probs.push_back(probabilities(out, dataset_.multi_label, v2).to(at::kCPU));
            if (record) p.records.insert(p.records.end(), b->records.begin(), b->records.end());
            if (progress_) progress_("predicting", ++done, static_cast<long>(l.batches_per_epoch()));
        }
        ++p.passes;
        // A rank whose share is empty (a group larger than the split) has no rows.
        return probs.empty() ? at::zeros({0, static_cast<std::int64_t>(dataset_.classes.size())}) : at::cat(probs);
    };
    const bool valid = split == data::Split::Valid;
    at::Tensor plain = pass(valid ? data::View::Valid : data::View::Test, 0, true);
    at::Tensor aug_sum;
    if (tta > 0) {
        aug_sum = at::zeros_like(plain);
        for (int k = 0; k < tta; ++k) aug_sum += pass(valid ? data::View::Aug : data::View::TestAug, k, false);
    }
    if (dist) {   // each rank predicted its block: every rank gets all rows, in order
        std::vector<std::int64_t> mine(p.records.begin(), p.records.end());
        const at::Tensor rec = dist->all_gather_rows(at::tensor(mine.empty() ? std::vector<std::int64_t>{} : mine, at::kLong)).contiguous();
        p.records.assign(rec.data_ptr<std::int64_t>(), rec.data_ptr<std::int64_t>() + rec.numel());
        plain = dist->all_gather_rows(plain);
        if (tta > 0) aug_sum = dist->all_gather_rows(aug_sum);
    }
    if (tta > 0) {
        const at::Tensor aug_mean = aug_sum / tta;
        p.probs = mix == TtaMix::Mean ? (plain + aug_sum) / (tta + 1) : 0.75 * aug_mean + 0.25 * plain;
    } else {
        p.probs = plain;
    }
    const at::Tensor pred = p.probs.argmax(1);
    for (std::size_t i = 0; i < p.records.size(); ++i) {
        const auto& rec = dataset_.images[p.records[i]];
        p.predicted.push_back(static_cast<int>(pred[static_cast<long>(i)].item<std::int64_t>()));
        const int actual = rec.labels.empty() ? -1 : rec.labels[0];
        p.actual.push_back(actual);
        p.losses.push_back(actual < 0 ? std::nan("")
                                      : -std::log(std::clamp(p.probs[static_cast<long>(i)][actual].item<double>(), 1e-15, 1.0)));
    }
    set_train_mode();
    return p;
}

}  // namespace whisker::train
