#pragma once
// Internal: the Learner's private state types, shared by learner.cpp and learner_checkpoint.cpp.

#include "whisker/train/learner.h"

#include <torch/optim/optimizer.h>

#include <random>
#include <string>

namespace whisker::train {

// A fresh Learner::state_id.
inline std::string new_state_id() {
    std::random_device rd;
    return std::to_string(rd()) + "-" + std::to_string(rd());
}

struct Learner::Activations {
    std::string key;
    at::Tensor train_x, train_y, valid_x, valid_y, test_x;
    std::vector<std::size_t> train_records, valid_records, test_records;
};

struct Learner::FitState {
    FitOptions options;
    bool finder = false;                 // an lr_find sweep
    bool precompute = false;
    std::vector<double> multipliers;     // per iteration, of the base learning rates
    std::vector<double> momenta;         // one-cycle only
    int total_epochs = 0;
    long batches_per_epoch = 0;
    int epoch = 0;                       // next epoch to run
    std::size_t batch = 0;               // next batch in that epoch
    long iteration = 0;                  // batches done (BatchRecord::iteration)
    // Gradient accumulation: the optimiser steps every `accumulate` batches (the epoch's last
    // group with what it has); `multipliers` and `momenta` are per optimiser step.
    int accumulate = 1;
    long steps_per_epoch = 0;
    long step = 0;                       // optimiser steps done (the schedule's position)
    int accumulated = 0;                 // batches of the current group done (their gradients are in .grad)
    double group_batches = 0;            // their images on this rank, in full batches of this rank
    bool group_has_gradients = false;    // a backward pass ran in the current group
    // fp16 dynamic loss scaling (CUDA): kept with the fit, so that a resume continues with it.
    double loss_scale = 65536.0;
    int good_steps = 0;
    double avg_loss = 0;
    long batch_num = 0;
    long loader_epoch_base = 0;
    std::vector<double> base_lrs;        // per optimiser parameter group
    std::vector<int> group_of;           // layer group of each optimiser parameter group
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    std::vector<EpochRecord> done;
    double seconds = 0;
    int size = 0;                        // the image size the fit runs at (resume needs the same)
    std::optional<Precision> precision;  // a resumed fit's own (checkpoints before it: none)
    // lr_find
    double best = 1e9;
    std::vector<double> found_lrs, found_losses;
    bool exploded = false;
};


}  // namespace whisker::train
