#pragma once
// Optional training callbacks: early stopping and keeping the best model.

#include "whisker/train/learner.h"

#include <limits>
#include <string>

namespace whisker::train {

// Which epoch metric to watch; lower is better for losses, higher for accuracy.
enum class Monitor { ValLoss, LogLoss, Accuracy };
double monitored_value(const EpochRecord& r, Monitor m);
bool improves(Monitor m, double value, double best);

// Stops the fit when the monitored metric has not improved for `patience` epochs.
class EarlyStopping : public Callback {
public:
    explicit EarlyStopping(int patience = 3, Monitor monitor = Monitor::ValLoss) : patience_(patience), monitor_(monitor) {}
    void before_fit(Learner&) override;
    void after_epoch(Learner& learner, const EpochRecord& r) override;

private:
    int patience_;
    Monitor monitor_;
    double best_ = 0;
    bool has_best_ = false;
    int waited_ = 0;
};

// Saves the checkpoint `name` whenever the monitored metric reaches a new best; with
// `restore_at_end`, loads it back when the fit ends (the model keeps its best epoch).
class SaveBestModel : public Callback {
public:
    explicit SaveBestModel(std::string name = "best", Monitor monitor = Monitor::ValLoss, bool restore_at_end = false)
        : name_(std::move(name)), monitor_(monitor), restore_(restore_at_end) {}
    void before_fit(Learner&) override;
    void after_epoch(Learner& learner, const EpochRecord& r) override;
    void after_fit(Learner& learner, const FitResult& r) override;
    int best_epoch() const { return best_epoch_; }

private:
    std::string name_;
    Monitor monitor_;
    bool restore_;
    double best_ = 0;
    bool has_best_ = false;
    int best_epoch_ = -1;
};

}  // namespace whisker::train
