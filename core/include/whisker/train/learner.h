#pragma once
// The Learner: fastai 0.7's ConvLearner workflow (see shared/spec/workflow.md) in C++.
//
//   Learner learn(project, dataset, config);   // pretrained body + fastai head, frozen
//   learn.set_precompute(true);
//   auto curve = learn.lr_find();              // leaves no trace (weights, BN stats, RNG)
//   learn.fit({.lrs = {1e-2}, .n_cycle = 1});
//   learn.set_precompute(false);
//   learn.fit({.lrs = {1e-2}, .n_cycle = 3, .cycle_len = 1});
//   learn.unfreeze();
//   learn.fit({.lrs = {1e-4, 1e-3, 1e-2}, .n_cycle = 3, .cycle_len = 1, .cycle_mult = 2});
//   auto preds = learn.predict(data::Split::Test, /*tta=*/4);
//
// Training runs on the calling thread (the GUI calls it from a worker thread); `stop` is an
// atomic flag checked before every batch: the batch in progress completes, the model stays
// consistent, after_fit callbacks run, and fit() returns with stopped = true. Callbacks run on
// the calling thread, in order; a callback may request a stop through the Learner.
// CUDA is used when present (chosen at run time), else the CPU with all cores.

#include "whisker/data/dataset.h"
#include "whisker/data/loader.h"
#include "whisker/models/learner_model.h"
#include "whisker/train/precision.h"
#include "whisker/train/schedule.h"

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::train {

class Distributed;   // whisker/train/distributed.h

class WeightEma;     // whisker/train/training_options.h

// How precomputed activations are stored, in memory and in PROJECT/cache/precompute/ (the head
// always trains in float32: each batch is converted on its way to the head).
// Auto: the type the body computed them in — bf16 under bf16 precision, fp16 under fp16, else
// fp32 — which loses nothing and halves the cache whenever mixed precision is on.
// FP16/BF16 under fp32 precision round each activation to 11/8 significant bits (relative
// error at most 2^-11 / 2^-8); post-ReLU pooled features lie well inside float16's range, so
// fp16 is the more accurate of the two there (measured on the sample: docs/training.md).
enum class PrecomputeDtype { Auto, FP32, FP16, BF16 };
const char* precompute_dtype_name(PrecomputeDtype d);   // "auto", "fp32", "fp16", "bf16"
// UserError naming the choices for an unknown name.
PrecomputeDtype parse_precompute_dtype(const std::string& name);
// What `requested` means at a (resolved) precision: never Auto.
PrecomputeDtype resolve_precompute_dtype(PrecomputeDtype requested, Precision precision);

struct LearnerConfig {
    std::string arch = "resnet34";
    int size = 224;
    int batch_size = 64;
    bool pretrained = true;        // false: the body starts from torchvision's random init
    // The caller loads a checkpoint right after construction: `pretrained` only says where the
    // weights first came from, and no pretrained file is needed (nor downloaded).
    bool weights_from_checkpoint = false;
    // The training transform (train view, and TTA): fastai 0.7's aug_tfms preset, RandomScale's
    // max_zoom (1: no zoom) and whether flips are left out (data/transforms.h).
    data::AugmentPreset augment = data::AugmentPreset::SideOn;
    double max_zoom = 1.1;
    bool no_flip = false;
    bool trivial_augment = false;  // TrivialAugmentWide on top of the preset
    double random_erasing = 0.0;   // RandomErasing's p on top of the preset (0: off)
    // The validation view's resize as a ratio of `size` (AugmentSettings::eval_resize);
    // 0: the architecture's default (ArchInfo::default_eval_resize_ratio).
    double val_resize = 0.0;
    std::uint64_t seed = 42;       // loader shuffling/augmentation and torch's generator
    int threads = 0;               // loader threads (0 = all cores)
    models::HeadOptions head;
    Precision precision = Precision::FP32;   // the programs pass the user's choice (default auto)
    // Convolutions in NHWC. Unset: prefer_channels_last(precision, device) (bf16, or fp16 on CUDA).
    std::optional<bool> channels_last;
    PrecomputeDtype precompute_dtype = PrecomputeDtype::Auto;   // set_precompute_dtype
    // Data-parallel training (distributed.h); nullptr: this process alone. With a group,
    // batch_size is the global batch (each rank takes batch_size / world_size), every rank
    // must construct the Learner and call the same methods in the same order, and only rank 0
    // writes files (checkpoints, the precompute cache).
    std::shared_ptr<Distributed> distributed;
    // With a group: BatchNorm layers in training mode use the statistics of the global batch
    // (PyTorch's SyncBatchNorm; sync_batch_norm.h) instead of each rank's. Ignored alone.
    bool sync_batch_norm = false;
    // Gradient accumulation for fits and lr_find that do not give their own
    // (FitOptions::accumulate): the optimiser steps every `accumulate` batches.
    int accumulate = 1;
};

enum class OptimizerKind { SGD, AdamW };

struct FitOptions {
    std::vector<double> lrs{1e-2};  // one for all layer groups, or one per group (early -> head)
    int n_cycle = 1;
    double cycle_len = 0;           // 0: constant learning rate for n_cycle epochs (fastai's None)
    int cycle_mult = 1;
    std::vector<double> wds;        // weight decay, one or per group; empty = 0
    OptimizerKind optimizer = OptimizerKind::SGD;
    double momentum = 0.9;
    bool one_cycle = false;         // fastai v2's fit_one_cycle (n_cycle epochs, lr_max = lrs)
    // MixUp / CutMix on the training batches (training_options.h; not with precompute, not in
    // lr_find): λ ~ Beta(α, α) per batch; α 0 = off.
    double mixup_alpha = 0;
    double cutmix_alpha = 0;
    double mix_switch_prob = 0.5;   // both on: the probability that a mixed batch uses CutMix
    double mix_prob = 1.0;          // the probability that a batch is mixed at all
    // Weight EMA: after every optimiser step ema ← decay·ema + (1−decay)·w (buffers copied),
    // starting from the weights as the fit begins; 0 = off. Each epoch then also validates
    // the EMA weights (EpochRecord::ema_*), and checkpoints keep them (NAME.ema.safetensors).
    double ema_decay = 0;
    // Label smoothing ε: the training loss is the cross-entropy against (1−ε)·one-hot + ε/C,
    // as PyTorch's cross_entropy(label_smoothing=ε); validation losses stay unsmoothed.
    // Single-label datasets only. 0 = off.
    double label_smoothing = 0;
    // Gradient accumulation: each batch's loss is weighted by its share of the group's images
    // (1/N for equal batches) and the optimiser steps once every N batches — a batch of 64
    // trains as 4 x 16 (--bs 16, N 4) in a quarter of the memory. The schedule (SGDR, one-cycle)
    // counts optimiser steps; the epoch's last group steps with the batches it has; progress,
    // BatchRecords and callbacks stay per batch. BatchNorm in training mode sees each batch
    // (16 images), not the group. 0: the learner's (LearnerConfig::accumulate, default 1).
    int accumulate = 0;
};

struct BatchRecord {
    long iteration = 0;             // within this fit
    int epoch = 0;
    double loss = 0;                // raw batch loss
    double smooth_loss = 0;         // fastai's debiased moving average
    double lr = 0;                  // the head's learning rate
};

struct EpochRecord {
    int epoch = 0;                  // 0-based within the fit
    double trn_loss = 0;            // smoothed training loss at the epoch's end
    double val_loss = 0;
    double accuracy = 0;
    double log_loss = 0;            // the competition's: probabilities clipped to [1e-15, 1-1e-15]
    double seconds = 0;
    double eta_seconds = 0;         // time left in the fit
    // With FitOptions::ema_decay: the same metrics of the EMA weights at the epoch's end.
    bool has_ema = false;
    double ema_val_loss = 0, ema_accuracy = 0, ema_log_loss = 0;
};

struct FitResult {
    std::vector<EpochRecord> epochs;
    bool stopped = false;
    std::string stop_reason;        // "stopped by the user", "loss is NaN at …", "early stopping"
};

struct LrFindResult {
    std::vector<double> lrs, losses;    // every recorded batch (smoothed loss)
    std::vector<double> plot_lrs, plot_losses;  // without the first 10 and last 5 points
    LrSuggestions suggestions;
    bool stopped_early = false;          // the loss exploded (> 4x best) or became NaN
};

enum class TtaMix { Mean, Beta };       // fastai 0.7: mean of probabilities; v2: 0.75*aug + 0.25*plain

struct Predictions {
    std::vector<std::size_t> records;   // Dataset::images index per row
    at::Tensor probs;                   // [N, C] probabilities
    std::vector<int> predicted;         // argmax per row
    std::vector<int> actual;            // label per row (-1 unlabelled)
    std::vector<double> losses;         // per-image loss (NaN unlabelled)
    int passes = 0;                     // forward passes over the data (1 + n_aug with TTA)
    double accuracy() const;
    double log_loss() const;
    // cm[actual][predicted]
    std::vector<std::vector<int>> confusion_matrix(int num_classes) const;
    // (actual, predicted, count), most frequent confusion first
    std::vector<std::tuple<int, int, int>> most_confused(int num_classes, int min_count = 1) const;
    // rows with the highest loss first
    std::vector<std::size_t> top_losses(std::size_t k) const;
    // Per class (labelled rows only): precision = correct / predicted as the class,
    // recall = correct / actually the class (0 when the denominator is 0).
    struct ClassMetrics {
        double precision = 0, recall = 0;
        int support = 0;        // rows whose actual class it is
        int predicted = 0;      // rows predicted as it
    };
    std::vector<ClassMetrics> per_class(int num_classes) const;
    // The probabilities as a plain row-major [N * C] array, for UIs (no tensor code needed).
    std::vector<float> probability_matrix() const;
    int num_classes() const;
};

class Learner;

// fastai's callback events, in order: before_fit, (before_epoch, (before_batch, after_loss,
// after_batch)*, after_epoch)*, after_fit. after_fit always runs.
class Callback {
public:
    virtual ~Callback() = default;
    virtual void before_fit(Learner&) {}
    virtual void before_epoch(Learner&, int epoch) {}
    virtual void before_batch(Learner&, long iteration) {}
    virtual void after_loss(Learner&, double loss) {}
    virtual void after_batch(Learner&, const BatchRecord&) {}
    virtual void after_epoch(Learner&, const EpochRecord&) {}
    virtual void after_fit(Learner&, const FitResult&) {}
};

// Progress for UIs: batches done / total of the current job, throttled by the receiver.
using ProgressCallback = std::function<void(const std::string& stage, long done, long total)>;

class Learner {
public:
    // Builds the model (downloading pretrained weights if needed and possible: otherwise
    // throws UserError saying which file to get), frozen: only the head trains.
    Learner(std::filesystem::path project, data::Dataset dataset, LearnerConfig config,
            const ProgressCallback& progress = {});
    ~Learner();
    Learner(const Learner&) = delete;
    Learner& operator=(const Learner&) = delete;

    // ---- state ----
    void freeze_to(int group);          // groups before `group` frozen, the rest trainable
    void freeze() { freeze_to(-1); }    // head only
    void unfreeze() { freeze_to(0); }   // also turns precompute off
    int frozen_groups() const { return frozen_groups_; }
    void bn_freeze(bool on) { bn_freeze_ = on; }
    bool bn_frozen() const { return bn_freeze_; }
    // precompute: train the head on cached body activations (train with the validation
    // transform, valid, test), computed once and reused while the data, size and body match.
    void set_precompute(bool on);
    bool precompute() const { return precompute_; }
    int num_groups() const { return 3; }
    // Progressive resizing (fastai 0.7's set_data(get_data(sz))): the images are used at `size`
    // px from now on; the weights stay as they are, bit for bit (the networks pool adaptively).
    // The loaders are rebuilt and precomputed activations recomputed (they are keyed by size)
    // on next use. Not during a fit; UserError below 32 px.
    void set_size(int size);

    // ---- the workflow ----
    FitResult fit(const FitOptions& options, const std::atomic<bool>* stop = nullptr);
    // fastai v2's fine_tune: one frozen one-cycle epoch, then unfreeze and one-cycle with lrs
    // from base_lr/100 (early) to base_lr/2 (head).
    FitResult fine_tune(int epochs, double base_lr = 2e-3, int freeze_epochs = 1, const std::atomic<bool>* stop = nullptr);
    // Sweeps one epoch, or 100 optimiser steps over several epochs when an epoch is shorter.
    // With gradient accumulation (`accumulate` batches per step; 0: the learner's) each point
    // of the curve is one optimiser step.
    LrFindResult lr_find(double start_lr = 1e-5, double end_lr = 10, bool linear = false,
                         const std::atomic<bool>* stop = nullptr, int accumulate = 0);
    Predictions predict(data::Split split, int tta = 0, TtaMix mix = TtaMix::Mean, const std::atomic<bool>* stop = nullptr);

    // ---- checkpoints (PROJECT/models/<name>.*, written atomically) ----
    // Weights, optimiser, schedule position, counters and random state: resume() continues
    // an interrupted fit exactly. A fit stopped in the middle of a gradient-accumulation group
    // also keeps the gradients accumulated so far (<name>.grads.safetensors, averaged over the
    // ranks in a group), and resume() goes on from the next batch of that group.
    void save(const std::string& name);
    void load(const std::string& name);
    bool has_checkpoint(const std::string& name) const;
    // Continues the fit recorded in checkpoint `name` (by default the autosave).
    // The fit keeps the precision it began in (it switches this learner's), so a resume is exact
    // whatever --precision says; only an fp16 fit resumed without a GPU runs in this learner's.
    FitResult resume(const std::string& name = "autosave", const std::atomic<bool>* stop = nullptr);
    // The precision the interrupted fit in checkpoint `name` ran in, when it is recorded and this
    // device can run it; nullopt otherwise. Lets a program say which one resume() will use.
    std::optional<Precision> interrupted_fit_precision(const std::string& name = "autosave") const;

    // Replaces the dataset (e.g. after the user marked images as excluded or relabelled them):
    // the loaders and precomputed activations are rebuilt from it on next use. The classes
    // must be the same (the head's outputs depend on them); throws UserError otherwise.
    void set_dataset(data::Dataset dataset);

    // ---- callbacks and hooks ----
    void add_callback(std::shared_ptr<Callback> cb) { callbacks_.push_back(std::move(cb)); }
    // Takes a callback added for one job off again (not during a fit).
    void remove_callback(const Callback* cb) {
        callbacks_.erase(std::remove_if(callbacks_.begin(), callbacks_.end(), [cb](const auto& c) { return c.get() == cb; }),
                         callbacks_.end());
    }
    void set_progress(ProgressCallback progress) { progress_ = std::move(progress); }
    void request_stop(const std::string& reason);   // from a callback
    bool autosave = true;                            // save "autosave" at each epoch end

    // ---- access ----
    models::ClassifierModel& model() { return *model_; }
    const data::Dataset& dataset() const { return dataset_; }
    const LearnerConfig& config() const { return config_; }
    // The precision of forward passes from now on (not during a fit); what it resolved to.
    void set_precision(Precision requested);
    Precision precision() const { return precision_; }
    // The storage of precomputed activations from now on (not during a fit); a different
    // dtype than the cache's recomputes it on next use. What it resolves to at the precision.
    void set_precompute_dtype(PrecomputeDtype requested);
    PrecomputeDtype precompute_dtype() const { return resolve_precompute_dtype(config_.precompute_dtype, precision_); }
    // The gradient accumulation of fits and lr_find that do not give their own (at least 1;
    // UserError otherwise; not during a fit).
    void set_accumulate(int batches);
    int accumulate() const { return config_.accumulate; }
    // The batch size from now on (the global batch in a data-parallel group; at least 1, and at
    // least one image per process), e.g. after the GPU ran out of memory. The weights and the
    // precomputed activations stay; the loaders are rebuilt on next use. Not during a fit.
    void set_batch_size(int batch_size);
    // The transforms the loaders use (config's size and augmentation), e.g. for previews.
    data::AugmentSettings augment_settings() const;
    const std::filesystem::path& project() const { return project_; }
    at::Device device() const;
    Distributed* distributed() const { return config_.distributed.get(); }
    // Rank 0 of a group, or a process on its own: the one that writes files and prints.
    bool is_main_process() const;
    const std::vector<BatchRecord>& batch_history() const { return batches_; }
    const std::vector<EpochRecord>& epoch_history() const { return epochs_; }
    long epochs_trained() const { return epochs_trained_; }
    // Names the weights as they are: a new value whenever they change (each fit, even a
    // stopped one; a load takes the checkpoint's). A checkpoint keeps it, so a result can say
    // which learner state it came from, and a saved copy of the same weights has the same one.
    const std::string& state_id() const { return state_id_; }
    // Images that could not be read while training or predicting (left out, never fatal).
    const std::vector<data::SkippedFile>& load_failures() const { return load_failures_; }
    // The learning rate of each optimiser parameter group during a fit (early -> head), for
    // callbacks and tests; empty outside a fit.
    std::vector<double> current_learning_rates() const;
    // The loader of a view at the learner's size and augmentation (built on first use).
    data::DataLoader& data_loader(data::View view) { return loader(view); }

    // ---- weight EMA (FitOptions::ema_decay) ----
    // The average of the latest fit with ema_decay > 0, kept until a fit without it, a NaN
    // stop or a load of a checkpoint without one.
    bool has_ema_weights() const { return ema_ != nullptr; }
    const WeightEma* ema() const { return ema_.get(); }
    // While on, predict() uses the EMA weights (the model's own weights are put back after
    // each prediction). UserError when there are none.
    void use_ema_weights(bool on);
    bool ema_weights_in_use() const { return use_ema_ && ema_; }

private:
    struct FitState;
    FitResult run_fit(FitState& state, const std::atomic<bool>* stop);
    void plan_schedule(FitState& state);
    void build_optimizer(FitState& state);
    void save_with_fit_state(const std::string& name, const FitState* state);
    void set_train_mode();
    data::DataLoader& loader(data::View view);
    void ensure_precomputed();
    at::Tensor loss_of(const at::Tensor& output, const at::Tensor& labels) const;
    // loss_of with label smoothing ε (FitOptions::label_smoothing) for the training batches.
    at::Tensor training_loss_of(const at::Tensor& output, const at::Tensor& labels, double epsilon) const;
    void validate(EpochRecord& record);
    void validate_ema(EpochRecord& record);   // the EMA weights' metrics into record.ema_*
    int rank_batch_size() const;    // batch_size / world_size
    void sync_buffers();            // BatchNorm statistics: rank 0's on every rank

    std::filesystem::path project_;
    data::Dataset dataset_;
    LearnerConfig config_;
    ProgressCallback progress_;
    std::shared_ptr<models::ClassifierModel> model_;
    std::vector<std::shared_ptr<Callback>> callbacks_;
    std::map<data::View, std::unique_ptr<data::DataLoader>> loaders_;
    int frozen_groups_ = 2;
    bool bn_freeze_ = false;
    bool precompute_ = false;
    Precision precision_ = Precision::FP32;   // resolved: never Auto
    bool channels_last_ = false;              // weights and training batches in NHWC
    struct Activations;
    std::unique_ptr<Activations> activations_;
    std::vector<BatchRecord> batches_;
    std::vector<EpochRecord> epochs_;
    long epochs_trained_ = 0;
    std::vector<data::SkippedFile> load_failures_;           // drives the loaders' epoch index (shuffles differ per epoch)
    std::string stop_request_;
    std::string state_id_;
    std::unique_ptr<FitState> pending_;  // a fit loaded from a checkpoint, for resume()
    FitState* active_ = nullptr;         // the fit in progress
    std::unique_ptr<WeightEma> ema_;     // the weight EMA, when a fit made one
    bool use_ema_ = false;               // predict with the EMA weights
};

// Writes a Kaggle submission: two classes -> "id,label" with P(second class); more ->
// "id,<class>,…" (one probability column per class), or with `labels` "id,label" holding the
// predicted class name. `clip` > 0 clips probabilities to [clip, 1-clip]. Gzip when the name
// ends in ".gz". Atomic.
void write_submission(const std::filesystem::path& path, const data::Dataset& dataset, const Predictions& test,
                      double clip = 0, bool labels = false);

// Writes one CSV row per prediction (only the mistakes when `mistakes_only`), highest loss
// first: path (absolute), id, actual, predicted, probability of the prediction, probability of
// the actual class, loss, then one probability column per class ("p_<class>"). Atomic.
void write_predictions_csv(const std::filesystem::path& path, const std::filesystem::path& project,
                           const data::Dataset& dataset, const Predictions& predictions, bool mistakes_only);

// An epoch record from its JSON object (as checkpoints and `whisker-cli fit --json` write it;
// other keys are ignored). Throws UserError on malformed JSON.
EpochRecord epoch_record_from_json(const std::string& text);

// The fastai epoch table: "epoch  trn_loss  val_loss  accuracy  log_loss  time". With
// `ema_columns` (fits with a weight EMA) also "ema_val_loss  ema_accuracy  ema_log_loss" after
// log_loss ("-" in rows without them).
std::string epoch_table_header(bool ema_columns = false);
std::string epoch_table_row(const EpochRecord& r, bool ema_columns = false);

}  // namespace whisker::train
