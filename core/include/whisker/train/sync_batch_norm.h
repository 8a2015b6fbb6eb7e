#pragma once
// Synchronised BatchNorm for data-parallel training: PyTorch's nn.SyncBatchNorm, so that the
// batch statistics are those of the global batch rather than of each rank's share.
//
// While a SyncBatchNormScope is alive on a thread, every BatchNorm (1d, 2d, any module that
// ends in at::batch_norm) that runs there in training mode is synchronised over the group:
//   forward   each rank's per-channel count, sum and sum of squares go into one all-reduce (a
//             packed [2C+1] tensor per layer); the layer normalises with the global mean and
//             biased variance, and its running statistics move towards the global mean and the
//             unbiased global variance with the layer's own momentum (num_batches_tracked as
//             usual);
//   backward  the gradient of the global statistics: Σdy and Σdy·(x−mean) are all-reduced (one
//             packed [2C] tensor per layer), so each rank's input gradient is that of one
//             process with the whole batch (weight and bias gradients stay local; the
//             gradient all-reduce averages them like every other parameter).
// The statistics are computed in float32 (double for the sums that are exchanged) whatever
// the autocast precision; the output has the input's dtype. Layers in eval mode (frozen
// groups, --bn-freeze, validation, prediction) are plain BatchNorm with running statistics.
//
// Why a scope and not a module swap: Whisker's networks call their BatchNorm members
// directly, so a module put into the registry in their place would never run. Instead the
// first scope installs a kernel for aten::batch_norm (autograd keys, CPU and CUDA) that
// forwards every call unchanged (at::native::batch_norm, what PyTorch runs there anyway)
// unless the calling thread has a scope and the call is in training mode. The modules, their
// state-dict keys and checkpoints stay exactly as they are.
//
// Every rank must run the same layers in the same order (the same network, the same batch
// shape apart from its first dimension; a rank with no rows still takes part with an empty
// batch). The backward all-reduces run on autograd's thread of the backward pass; that is the
// one thread that uses the group at that time.

namespace whisker::train {

class Distributed;

class SyncBatchNormScope {
public:
    // `group` nullptr (or a group of one): no effect.
    explicit SyncBatchNormScope(Distributed* group);
    ~SyncBatchNormScope();
    SyncBatchNormScope(const SyncBatchNormScope&) = delete;
    SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;

private:
    Distributed* previous_;
};

}  // namespace whisker::train
