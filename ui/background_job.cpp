#include "background_job.h"

#include "whisker/common/errors.h"

#include <QFuture>
#include <QFutureWatcher>
#include <QMetaObject>
#include <QPointer>
#include <QtConcurrent/QtConcurrent>

#include <mutex>

namespace whisker::ui {

struct BackgroundJob::Running {
    QFuture<void> future;
};

BackgroundJob::BackgroundJob(QObject* parent)
    : QObject(parent), cancel_(std::make_shared<std::atomic<bool>>(false)) {}

BackgroundJob::~BackgroundJob() {
    cancel();
    wait();
}

void BackgroundJob::wait() {
    if (running_) running_->future.waitForFinished();
}

bool BackgroundJob::start(const QString& name, Work work) {
    if (busy_) return false;
    busy_ = true;
    cancel_ = std::make_shared<std::atomic<bool>>(false);
    auto cancel = cancel_;
    QPointer<BackgroundJob> self(this);
    running_ = std::make_unique<Running>();
    running_->future = QtConcurrent::run([self, name, work = std::move(work), cancel] {
        auto last = std::make_shared<std::chrono::steady_clock::time_point>();
        auto mutex = std::make_shared<std::mutex>();
        ProgressFn progress = [self, last, mutex](const Progress& p) {
            {
                std::lock_guard<std::mutex> lock(*mutex);
                const auto now = std::chrono::steady_clock::now();
                const bool final = p.total > 0 && p.done >= p.total;
                if (!final && now - *last < std::chrono::milliseconds(120)) return;
                *last = now;
            }
            const QString stage = QString::fromStdString(p.stage);
            const qulonglong done = p.done, total = p.total;
            QMetaObject::invokeMethod(self, [self, stage, done, total] {
                if (self) Q_EMIT self->progressed(stage, done, total);
            }, Qt::QueuedConnection);
        };
        enum class Outcome { Ok, Failed, Cancelled } outcome = Outcome::Ok;
        QString message;
        try {
            work(progress, *cancel);
            if (cancel->load()) outcome = Outcome::Cancelled;
        } catch (const Cancelled&) {
            outcome = Outcome::Cancelled;
        } catch (const UserError& e) {
            outcome = Outcome::Failed;
            message = QString::fromStdString(e.what());
            if (!e.hint().empty()) message += QStringLiteral("\n\n") + QString::fromStdString(e.hint());
        } catch (const std::exception& e) {
            outcome = Outcome::Failed;
            message = QString::fromStdString(e.what());
        }
        QMetaObject::invokeMethod(self, [self, name, outcome, message] {
            if (!self) return;
            self->busy_ = false;
            if (outcome == Outcome::Ok) Q_EMIT self->succeeded(name);
            else if (outcome == Outcome::Cancelled) Q_EMIT self->cancelled(name);
            else Q_EMIT self->failed(name, message);
            Q_EMIT self->finished(name);
        }, Qt::QueuedConnection);
    });
    return true;
}

}  // namespace whisker::ui
