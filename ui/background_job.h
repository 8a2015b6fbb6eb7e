#pragma once
// Runs one core job (prepare a dataset, write the sample, …) on a worker thread.
//
// The job gets a progress callback and a cancel flag; progress reaches the UI thread as
// queued signals, throttled to about 8 per second; exceptions never cross the thread: a
// failure arrives as failed(message) with the core's hint appended.

#include "whisker/common/parallel.h"

#include <QObject>
#include <QString>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

namespace whisker::ui {

class BackgroundJob : public QObject {
    Q_OBJECT
public:
    using Work = std::function<void(const ProgressFn& progress, const std::atomic<bool>& cancel)>;

    explicit BackgroundJob(QObject* parent = nullptr);
    ~BackgroundJob() override;

    bool busy() const { return busy_; }
    // Starts `work` unless a job is already running (then returns false).
    bool start(const QString& name, Work work);
    void cancel() { cancel_->store(true); }
    // Blocks until the current job has finished (for shutdown and tests).
    void wait();

Q_SIGNALS:
    void progressed(const QString& stage, qulonglong done, qulonglong total);
    void succeeded(const QString& name);
    void failed(const QString& name, const QString& message);
    void cancelled(const QString& name);
    void finished(const QString& name);

private:
    bool busy_ = false;
    std::shared_ptr<std::atomic<bool>> cancel_;
    struct Running;
    std::unique_ptr<Running> running_;
};

}  // namespace whisker::ui
