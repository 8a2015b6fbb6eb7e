#include "whisker/train/callbacks.h"

namespace whisker::train {

double monitored_value(const EpochRecord& r, Monitor m) {
    switch (m) {
        case Monitor::ValLoss: return r.val_loss;
        case Monitor::LogLoss: return r.log_loss;
        case Monitor::Accuracy: return r.accuracy;
    }
    return r.val_loss;
}

bool improves(Monitor m, double value, double best) { return m == Monitor::Accuracy ? value > best : value < best; }

void EarlyStopping::before_fit(Learner&) {
    has_best_ = false;
    waited_ = 0;
}

void EarlyStopping::after_epoch(Learner& learner, const EpochRecord& r) {
    const double v = monitored_value(r, monitor_);
    if (!has_best_ || improves(monitor_, v, best_)) {
        best_ = v;
        has_best_ = true;
        waited_ = 0;
        return;
    }
    if (++waited_ >= patience_)
        learner.request_stop("early stopping: no improvement for " + std::to_string(patience_) + " epochs");
}

void SaveBestModel::before_fit(Learner&) {
    has_best_ = false;
    best_epoch_ = -1;
}

void SaveBestModel::after_epoch(Learner& learner, const EpochRecord& r) {
    const double v = monitored_value(r, monitor_);
    if (has_best_ && !improves(monitor_, v, best_)) return;
    best_ = v;
    has_best_ = true;
    best_epoch_ = r.epoch;
    learner.save(name_);
}

void SaveBestModel::after_fit(Learner& learner, const FitResult&) {
    if (restore_ && has_best_) learner.load(name_);
}

}  // namespace whisker::train
