// The Learner's training options beyond fastai 0.7's fit: the weight EMA's evaluation and use
// for predictions, and progressive resizing. MixUp/CutMix and the EMA update run inside
// run_fit (learner.cpp); their pieces are in training_options.cpp.
#include "whisker/train/learner.h"
#include "whisker/models/zoo.h"

#include "learner_state.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/train/training_options.h"
#include "whisker/train/distributed.h"

#include <fmt/format.h>

namespace whisker::train {

void Learner::set_precision(Precision requested) {
    if (active_) throw UserError("cannot change the precision during a fit", "stop the fit first");
    const Precision p = resolve_precision(requested, device().is_cuda());
    if (p == precision_) return;
    precision_ = p;
    activations_.reset();   // the precompute cache is keyed by precision
}

const char* precompute_dtype_name(PrecomputeDtype d) {
    switch (d) {
        case PrecomputeDtype::Auto: return "auto";
        case PrecomputeDtype::FP32: return "fp32";
        case PrecomputeDtype::FP16: return "fp16";
        case PrecomputeDtype::BF16: return "bf16";
    }
    return "auto";
}

PrecomputeDtype parse_precompute_dtype(const std::string& name) {
    for (PrecomputeDtype d : {PrecomputeDtype::Auto, PrecomputeDtype::FP32, PrecomputeDtype::FP16, PrecomputeDtype::BF16})
        if (name == precompute_dtype_name(d)) return d;
    throw UserError("unknown precompute dtype '" + name + "'",
                    "use auto (the type the body computes in: 16-bit under mixed precision, else fp32), fp32, fp16 "
                    "or bf16 (half the size of fp32)");
}

PrecomputeDtype resolve_precompute_dtype(PrecomputeDtype requested, Precision precision) {
    if (requested != PrecomputeDtype::Auto) return requested;
    switch (precision) {
        case Precision::BF16: return PrecomputeDtype::BF16;
        case Precision::FP16: return PrecomputeDtype::FP16;
        default: return PrecomputeDtype::FP32;
    }
}

void Learner::set_precompute_dtype(PrecomputeDtype requested) {
    if (active_) throw UserError("cannot change the precompute dtype during a fit", "stop the fit first");
    if (requested == config_.precompute_dtype) return;
    const bool same = resolve_precompute_dtype(requested, precision_) == precompute_dtype();
    config_.precompute_dtype = requested;
    if (!same) activations_.reset();   // the cache is keyed by its dtype: reloaded or recomputed on next use
}

void Learner::set_accumulate(int batches) {
    if (active_) throw UserError("cannot change gradient accumulation during a fit", "stop the fit first");
    if (batches < 1)
        throw UserError(fmt::format("gradient accumulation of {} batches: the optimiser steps every N batches, N at least 1", batches),
                        "use --accumulate 1 (no accumulation) or more");
    config_.accumulate = batches;
}

void Learner::set_batch_size(int batch_size) {
    if (active_) throw UserError("cannot change the batch size during a fit", "stop the fit first");
    const int processes = distributed() ? distributed()->world_size() : 1;
    if (batch_size < processes)
        throw UserError(fmt::format("batch size {} is too small for {} process{}", batch_size, processes, processes > 1 ? "es" : ""),
                        fmt::format("use at least {} (one image per process)", processes));
    if (batch_size == config_.batch_size) return;
    config_.batch_size = batch_size;
    loaders_.clear();   // rebuilt with the new batch on next use
}

void Learner::set_size(int size) {
    if (active_) throw UserError("cannot change the image size during a fit", "stop the fit first");
    // Five stride-2 stages need at least 32 px to leave a 1x1 map; Swin and ViT need
    // multiples of their window/patch grid.
    if (size < 32)
        throw UserError(fmt::format("image size {} px is too small", size), "use at least 32 px (the networks halve it five times)");
    models::check_input_size(models::parse_arch(config_.arch), size);
    if (size == config_.size) return;
    config_.size = size;
    loaders_.clear();       // rebuilt at the new size on next use
    activations_.reset();   // keyed (and named) by size: reloaded or recomputed on next use
}

void Learner::use_ema_weights(bool on) {
    if (on && !ema_)
        throw UserError("the learner has no EMA weights", "fit with --ema first (checkpoints keep the average)");
    use_ema_ = on;
}

void Learner::validate_ema(EpochRecord& rec) {
    // The EMA weights in the model for one validation pass, then the model's own back, bit
    // for bit. With precompute the cached activations serve: the body is frozen during such a
    // fit, so its average equals it.
    EpochRecord e;
    ema_->swap_with(*model_);
    try {
        validate(e);
    } catch (...) {
        ema_->swap_with(*model_);
        throw;
    }
    ema_->swap_with(*model_);
    rec.has_ema = true;
    rec.ema_val_loss = e.val_loss;
    rec.ema_accuracy = e.accuracy;
    rec.ema_log_loss = e.log_loss;
}

}  // namespace whisker::train
