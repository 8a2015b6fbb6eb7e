#include "training_worker.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/dataset.h"
#include "whisker/project/ensemble.h"
#include "whisker/project/folds.h"
#include "whisker/project/runs.h"
#include "whisker/train/distributed.h"
#include "whisker/train/recipe.h"

#include <QCoreApplication>
#include <exception>
#include <QDir>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace fs = std::filesystem;

namespace whisker::ui {

void register_training_types() {
    qRegisterMetaType<LossPoint>();
    qRegisterMetaType<QVector<LossPoint>>();
    qRegisterMetaType<LrCurve>();
    qRegisterMetaType<LearnerSettings>();
    qRegisterMetaType<PredictionSet>();
    qRegisterMetaType<EnsembleRequest>();
    qRegisterMetaType<EnsembleResult>();
    qRegisterMetaType<SessionView>();
    qRegisterMetaType<train::EpochRecord>();
    qRegisterMetaType<train::FitOptions>();
}

// Forwards the Learner's callbacks to the worker's throttled signals. Runs after the
// session's own recorder, so a batch's plot position is the one the session keeps.
class SignalBridge : public train::Callback {
public:
    explicit SignalBridge(TrainingWorker* w) : w_(w) {}
    void after_batch(train::Learner& l, const train::BatchRecord& b) override {
        if (w_->in_lr_find_) {
            // The sweep's curve as it grows (fastai plots it without the first 10 points).
            w_->finder_lrs_.push_back(b.lr);
            w_->finder_losses_.push_back(b.smooth_loss);
            const auto now = std::chrono::steady_clock::now();
            if (now - w_->last_flush_ < std::chrono::milliseconds(200) || w_->finder_lrs_.size() <= 10) return;
            w_->last_flush_ = now;
            Q_EMIT w_->lr_find_points(w_->finder_lrs_.mid(10), w_->finder_losses_.mid(10));
            return;
        }
        const auto& h = l.batch_history();
        if (h.empty() || h.back().iteration != b.iteration || h.back().loss != b.loss) return;
        const auto& log = w_->session_->training_log().batches;
        const long x = log.empty() ? 0 : log.back().x;
        w_->pending_.push_back({x, b.loss, b.smooth_loss, b.lr});
        w_->flush_points(false);
    }
    void after_epoch(train::Learner&, const train::EpochRecord& r) override {
        w_->flush_points(true);
        Q_EMIT w_->epoch_finished(r);
    }
    void after_fit(train::Learner&, const train::FitResult&) override { w_->flush_points(true); }

private:
    TrainingWorker* w_;
};

namespace {
LrCurve curve_of(const train::LrFindResult& r) {
    LrCurve c;
    c.lrs = QVector<double>(r.plot_lrs.begin(), r.plot_lrs.end());
    c.losses = QVector<double>(r.plot_losses.begin(), r.plot_losses.end());
    c.minimum = r.suggestions.minimum;
    c.steepest = r.suggestions.steepest;
    c.valley = r.suggestions.valley;
    c.valid = r.suggestions.valid;
    c.stopped_early = r.stopped_early;
    return c;
}
}  // namespace

// Each member's predictions, by what makes them: the checkpoint (its name and its weights
// file's time), TTA, the data and the precision.
struct TrainingWorker::MemberCache {
    std::map<std::string, project::MemberPredictions> predictions;
};

TrainingWorker::TrainingWorker() : member_cache_(std::make_unique<MemberCache>()) { register_training_types(); }
TrainingWorker::~TrainingWorker() = default;

void TrainingWorker::flush_points(bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (pending_.isEmpty() || (!force && now - last_flush_ < std::chrono::milliseconds(200))) return;
    last_flush_ = now;
    Q_EMIT batches(pending_);
    pending_.clear();
}

template <class F>
void TrainingWorker::run_job(const QString& name, F&& body) {
    stop_ = false;
    try {
        body();
    } catch (const Cancelled&) {
        Q_EMIT job_finished(name, true, QStringLiteral("stopped"));
    } catch (const UserError& e) {
        QString message = QString::fromStdString(e.what());
        if (!e.hint().empty()) message += "\n\n" + QString::fromStdString(e.hint());
        Q_EMIT failed(name, message);
    } catch (const std::exception& e) {  // c10::Error included
        Q_EMIT failed(name, QString::fromStdString(e.what()));
    }
}

namespace {
// A workbench job recorded as a run of the project (PROJECT/runs/, whisker/project/runs.h), as
// whisker-cli records its commands: the recorder is the learner's callback for this job only.
// A job that ends by an exception (stopped, failed) is recorded as such.
class RecordedJob {
public:
    RecordedJob(project::Session& session, project::RunKind kind, const std::string& what)
        : learner_(session.learner()), recorder_(std::make_shared<project::RunRecorder>(session.project(), "whisker")) {
        learner_.add_callback(recorder_);
        recorder_->begin(kind, learner_, "whisker (workbench): " + what);
    }
    ~RecordedJob() {
        try {
            if (std::uncaught_exceptions() > 0) recorder_->end_stopped("the job was stopped or failed (see the log)");
            else recorder_->end();
        } catch (const std::exception&) {   // recording never takes a job down
        }
        learner_.remove_callback(recorder_.get());
    }
    RecordedJob(const RecordedJob&) = delete;
    RecordedJob& operator=(const RecordedJob&) = delete;
    project::RunRecorder& operator*() const { return *recorder_; }
    project::RunRecorder* operator->() const { return recorder_.get(); }

private:
    train::Learner& learner_;
    std::shared_ptr<project::RunRecorder> recorder_;
};
}  // namespace

project::Session& TrainingWorker::session() {
    if (!session_) throw UserError("no project is open", "open or create one (File menu)");
    return *session_;
}

void TrainingWorker::attach_bridge() {
    if (session_ && session_->has_learner()) session_->learner().add_callback(std::make_shared<SignalBridge>(this));
}

void TrainingWorker::open(const QString& project) {
    run_job("open", [&] {
        session_.reset();   // the old project's learner goes first (memory, GPU)
        pending_.clear();
        member_cache_->predictions.clear();
        if (!project.isEmpty()) {
            project::SessionOptions o;
            o.base.precision = precision_;
            o.progress = [this](const std::string& stage, long done, long total) {
                const auto now = std::chrono::steady_clock::now();
                if (done < total && now - last_progress_ < std::chrono::milliseconds(150)) return;
                last_progress_ = now;
                Q_EMIT this->progress(QString::fromStdString(stage), done, total);
            };
            Q_EMIT progress(tr("Opening %1…").arg(project), 0, 0);
            session_ = std::make_unique<project::Session>(project.toStdString(), o);
            attach_bridge();
        }
        publish();
        Q_EMIT job_finished("open", false, {});
    });
}

void TrainingWorker::set_precision(int precision) {
    run_job("precision", [&] {
        const auto p = static_cast<train::Precision>(precision);
        train::resolve_precision(p, detect_compute_device().cuda);   // UserError for fp16 on a CPU
        if (session_) session_->set_precision(p);
        precision_ = p;
        publish();
        Q_EMIT job_finished("precision", false, {});
    });
}

void TrainingWorker::set_accumulate(int batches) { accumulate_ = std::max(1, batches); }

void TrainingWorker::reload() {
    run_job("reload", [&] {
        session().reload();
        attach_bridge();
        publish();
        Q_EMIT job_finished("reload", false, {});
    });
}

void TrainingWorker::create_learner(const LearnerSettings& s) {
    run_job("create learner", [&] {
        auto& ps = session();
        const auto lock = ps.lock("new learner");
        project::LearnerSpec spec;
        spec.arch = s.arch.toStdString();
        spec.size = s.size;
        spec.batch_size = s.batch_size;
        spec.pretrained = s.pretrained;
        const auto preset = data::parse_augment_preset(s.augment.toStdString());
        if (!preset) throw UserError("unknown augmentation '" + s.augment.toStdString() + "'");
        spec.augment = *preset;
        spec.max_zoom = s.max_zoom;
        spec.no_flip = s.no_flip;
        spec.trivial_augment = s.trivial_augment;
        spec.random_erasing = s.random_erasing;
        std::string kept;
        try {
            kept = ps.new_learner(spec);
        } catch (...) {
            // The project's learner as it was, reopened: the pages and the live plots follow it.
            attach_bridge();
            publish();
            throw;
        }
        attach_bridge();
        if (!kept.empty())
            Q_EMIT note(tr("The previous learner's weights are kept as checkpoint '%1' (Load… brings them back)")
                            .arg(QString::fromStdString(kept)));
        Q_EMIT note(tr("New learner: %1 — %2").arg(QString::fromStdString(ps.describe_learner()),
                                                   QString::fromStdString(detect_compute_device().describe())));
        publish();
        Q_EMIT job_finished("create learner", false, {});
    });
}

namespace {
PredictionSet prediction_set(const project::SplitPredictions& p, const std::filesystem::path& project) {
    PredictionSet out;
    out.predictions = p.predictions;
    out.dataset = p.dataset;
    out.project = QString::fromStdString(project.string());
    out.split = static_cast<int>(p.split);
    out.tta = p.tta;
    out.mix = p.mix == train::TtaMix::Beta ? 1 : 0;
    out.state = QString::fromStdString(p.origin.weights + "/" + p.origin.data);
    out.model = QString::fromStdString(p.model);
    return out;
}
}  // namespace

void TrainingWorker::publish() {
    SessionView v;
    if (!session_) {
        Q_EMIT session_changed(v);
        return;
    }
    auto& s = *session_;
    const auto project = s.project();
    v.project = QString::fromStdString(project.string());
    v.has_dataset = s.has_dataset();
    v.dataset_error = QString::fromStdString(s.dataset_error());
    v.has_learner = s.has_learner();
    v.learner_error = QString::fromStdString(s.learner_error());
    v.settings.project = v.project;
    if (const auto& spec = s.spec()) {
        v.settings.arch = QString::fromStdString(spec->arch);
        v.settings.size = spec->size;
        v.settings.batch_size = spec->batch_size;
        v.settings.pretrained = spec->pretrained;
        v.settings.augment = QString::fromStdString(data::augment_preset_name(spec->augment));
        v.settings.max_zoom = spec->max_zoom;
        v.settings.no_flip = spec->no_flip;
        v.settings.trivial_augment = spec->trivial_augment;
        v.settings.random_erasing = spec->random_erasing;
    }
    const auto st = s.state();
    v.state = QString::fromStdString(st.weights + "/" + st.data);
    v.precision = QString::fromStdString(train::describe_precision(precision_, detect_compute_device().cuda));
    if (s.has_learner()) {
        const auto& l = s.learner();
        v.learner = QString::fromStdString(s.describe_learner());
        v.trained = s.learner_is_trained();
        v.frozen_groups = l.frozen_groups();
        v.precompute = l.precompute();
        v.bn_freeze = l.bn_frozen();
        v.has_ema = l.has_ema_weights();
        for (const auto& e : l.epoch_history()) v.epochs.push_back(e);
        if (const auto f = s.interrupted_fit()) {
            v.can_resume = true;
            v.resume_text = tr("An interrupted fit (saved %1) can be resumed").arg(QString::fromStdString(f->saved));
        }
    }
    for (const auto& b : s.training_log().batches) v.batches.push_back({b.x, b.loss, b.smooth_loss, b.lr});
    if (const auto& r = s.training_log().lr_find) v.lr_curve = curve_of(*r);
    for (const auto& c : s.checkpoints()) {
        CheckpointRow row;
        row.name = QString::fromStdString(c.name);
        row.saved = QString::fromStdString(c.saved);
        row.arch = QString::fromStdString(c.arch);
        row.size = c.size;
        row.epochs = c.epochs;
        row.has_metrics = c.last_epoch.has_value();
        if (c.last_epoch) {
            row.val_loss = c.last_epoch->val_loss;
            row.accuracy = c.last_epoch->accuracy;
        }
        row.fit_in_progress = c.fit_in_progress;
        v.checkpoints.push_back(row);
    }
    if (const auto& p = s.predictions(data::Split::Valid)) v.valid = prediction_set(*p, project);
    if (const auto& p = s.predictions(data::Split::Test)) v.test = prediction_set(*p, project);
    Q_EMIT session_changed(v);
}

void TrainingWorker::predict(int split, int tta, int mix, bool ema) {
    run_job("predict", [&] {
        auto& l = session().learner();
        struct EmaOff {   // the learner's own weights again afterwards
            train::Learner& l;
            bool on;
            ~EmaOff() {
                if (on) l.use_ema_weights(false);
            }
        } ema_off{l, ema};
        if (ema) l.use_ema_weights(true);
        RecordedJob run(session(), project::RunKind::Predict, split == static_cast<int>(data::Split::Test) ? "predict test" : "predict valid");
        const auto& p = session().predict(static_cast<data::Split>(split), tta, mix ? train::TtaMix::Beta : train::TtaMix::Mean, &stop_);
        if (p.predictions) run->add_prediction(*p.predictions, p.split, p.tta, p.mix);
        PredictionSet set = prediction_set(p, session().project());
        set.run = run->number();
        Q_EMIT predictions_ready(set);
        publish();
        Q_EMIT job_finished("predict", false, {});
    });
}

void TrainingWorker::reload_dataset() {
    run_job("reload dataset", [&] {
        if (!session_) return;
        session_->reload_dataset();
        publish();
    });
}

void TrainingWorker::run_recipe(const QString& recipe_json) {
    run_job("recipe", [&] {
        auto& ps = session();
        const auto lock = ps.lock("recipe");
        ps.learner().set_accumulate(accumulate_);   // says "no learner yet" before anything runs
        train::RecipeEvents ev;
        ev.step_started = [this](int n, int total, const std::string& step) {
            Q_EMIT recipe_step(n, tr("Step %1 of %2: %3").arg(n).arg(total).arg(QString::fromStdString(step)));
            in_lr_find_ = step.rfind("find a learning rate", 0) == 0;
            finder_lrs_.clear();
            finder_losses_.clear();
        };
        ev.adjusted = [this](const std::string& what) { Q_EMIT note(tr("Recipe: %1").arg(QString::fromStdString(what))); };
        ev.lr_found = [this](const train::LrFindResult& r, double lr, bool chosen) {
            in_lr_find_ = false;
            Q_EMIT lr_find_finished(curve_of(r));
            if (chosen) Q_EMIT note(tr("Recipe: using the learning rate %1").arg(lr, 0, 'g', 3));
        };
        ev.fit_done = [this, &ps](const train::FitResult&) { ps.persist(); };
        struct Reset {
            bool& flag;
            ~Reset() { flag = false; }
        } reset{in_lr_find_};
        const std::string recipe = recipe_json.isEmpty() ? train::recipe_for(ps.learner()) : recipe_json.toStdString();
        RecordedJob run(ps, project::RunKind::Recipe, "run the recipe");
        const auto r = ps.run_recipe(recipe, run->recipe_events(recipe, ev), &stop_);
        ps.persist();
        publish();
        Q_EMIT job_finished("recipe", r.stopped, QString::fromStdString(r.stop_reason));
    });
}

void TrainingWorker::lr_find() {
    run_job("lr_find", [&] {
        auto& ps = session();
        const auto lock = ps.lock("lr-find");
        ps.learner().set_accumulate(accumulate_);
        in_lr_find_ = true;
        finder_lrs_.clear();
        finder_losses_.clear();
        struct Reset {
            bool& flag;
            ~Reset() { flag = false; }
        } reset{in_lr_find_};
        RecordedJob run(ps, project::RunKind::LrFind, "find a learning rate");
        const auto r = ps.lr_find(1e-5, 10, false, &stop_);
        run->add_lr_find(r);
        ps.persist();
        Q_EMIT lr_find_finished(curve_of(r));
        publish();
        Q_EMIT job_finished("lr_find", stop_.load(), {});
    });
}

void TrainingWorker::fit(const train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze) {
    run_job("fit", [&] {
        auto& ps = session();
        const auto lock = ps.lock("fit");
        auto& l = ps.learner();
        l.freeze_to(freeze_to);
        l.bn_freeze(bn_freeze);
        if (precompute != l.precompute()) l.set_precompute(precompute);
        struct Persist {   // a stopped or failed fit keeps a usable model too
            project::Session& s;
            ~Persist() {
                try {
                    s.persist();
                } catch (const std::exception&) {
                }
            }
        };
        train::FitResult r;
        {
            Persist persist{ps};
            RecordedJob run(ps, project::RunKind::Fit, "fit");
            run->expect_fit(options);
            r = ps.fit(options, &stop_);
        }
        publish();
        Q_EMIT job_finished("fit", r.stopped, QString::fromStdString(r.stop_reason));
    });
}

namespace {
// whisker-cli beside this program (the build tree and an installation both put them together);
// $WHISKER_CLI overrides it.
std::filesystem::path cli_program() {
    const QString env = qEnvironmentVariable("WHISKER_CLI");
    if (!env.isEmpty()) return env.toStdString();
    return QDir(QCoreApplication::applicationDirPath()).filePath("whisker-cli").toStdString();
}

std::string join_numbers(const std::vector<double>& v) {
    std::string out;
    for (double x : v) out += (out.empty() ? "" : ",") + fmt::format("{}", x);
    return out;
}
}  // namespace

void TrainingWorker::fit_processes(const train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze, int nproc,
                                   bool sync_bn) {
    run_job("fit", [&] {
        auto& ps = session();
        const auto lock = ps.lock("fit");   // the workers inherit it
        auto& l = ps.learner();
        const std::filesystem::path cli = cli_program();
        if (!std::filesystem::exists(cli))
            throw UserError("cannot find whisker-cli at " + cli.string(), "install it beside whisker, or set WHISKER_CLI to its path");
        // The workers start from exactly this learner's state.
        l.freeze_to(freeze_to);
        l.bn_freeze(bn_freeze);
        ps.persist();
        const auto& logged = ps.training_log().batches;
        process_x_base_ = logged.empty() ? 0 : logged.back().x + 1;
        train::LocalLaunchOptions o;
        o.executable = cli;
        o.nproc = nproc;
        o.args = {"fit", ps.project().string(), "--json", "--lr", join_numbers(options.lrs),
                  "--cycles", std::to_string(options.n_cycle), "--cycle-mult", std::to_string(options.cycle_mult),
                  "--freeze-to", std::to_string(freeze_to), precompute ? "--precompute" : "--no-precompute",
                  bn_freeze ? "--bn-freeze" : "--no-bn-freeze", "--precision", train::precision_name(precision_)};
        if (options.cycle_len > 0) o.args.insert(o.args.end(), {"--cycle-len", fmt::format("{}", options.cycle_len)});
        if (!options.wds.empty()) o.args.insert(o.args.end(), {"--wd", join_numbers(options.wds)});
        if (options.mixup_alpha > 0) o.args.insert(o.args.end(), {"--mixup", fmt::format("{}", options.mixup_alpha)});
        if (options.cutmix_alpha > 0) o.args.insert(o.args.end(), {"--cutmix", fmt::format("{}", options.cutmix_alpha)});
        if (options.ema_decay > 0) o.args.insert(o.args.end(), {"--ema", fmt::format("{}", options.ema_decay)});
        if (options.label_smoothing > 0)
            o.args.insert(o.args.end(), {"--label-smoothing", fmt::format("{}", options.label_smoothing)});
        if (options.accumulate > 1) o.args.insert(o.args.end(), {"--accumulate", std::to_string(options.accumulate)});
        if (sync_bn) o.args.push_back("--sync-bn");
        o.stop = &stop_;
        long last_iteration = -1;
        o.on_output = [this, &last_iteration](const std::string& line) {
            try {
                const auto j = nlohmann::json::parse(line);
                if (j.value("event", "") == "batch") {
                    last_iteration = j.value("iteration", 0L);
                    pending_.push_back({process_x_base_ + last_iteration, j.value("loss", 0.0), j.value("smooth_loss", 0.0),
                                        j.value("lr", 0.0)});
                    flush_points(false);
                    return;
                }
                if (j.value("event", "") != "epoch") return;
                flush_points(true);
                const train::EpochRecord r = train::epoch_record_from_json(line);
                Q_EMIT epoch_finished(r);
            } catch (const nlohmann::json::exception&) {
                // not an epoch line
            }
        };
        // The workers' messages go to the log; the last ones also into an error message.
        std::vector<std::string> errors;
        o.on_error = [this, &errors](int rank, const std::string& line) {
            if (line.empty()) return;
            const std::string text = fmt::format("[rank {}] {}", rank, line);
            Q_EMIT note(QString::fromStdString(text));
            errors.push_back(text);
            if (errors.size() > 12) errors.erase(errors.begin());
        };
        Q_EMIT progress(QString::fromStdString(fmt::format("Training in {} processes…", nproc)), 0, 0);
        const auto r = train::launch_local_workers(o);
        flush_points(true);
        const bool stopped = stop_.load();
        // What rank 0 saved (also after a stop: the workers save before they exit): learner,
        // epochs and batch losses.
        ps.reload();
        attach_bridge();
        publish();
        if (r.exit_code != 0 && !stopped) {
            std::string said;
            for (const auto& e : errors) said += "\n" + e;
            throw UserError(r.message + (said.empty() ? "" : ":" + said), "the log shows everything the workers printed");
        }
        Q_EMIT job_finished("fit", stopped, stopped ? QStringLiteral("stopped by the user") : QString());
    });
}

void TrainingWorker::resume() {
    run_job("resume", [&] {
        auto& ps = session();
        const auto lock = ps.lock("fit");
        if (!ps.interrupted_fit()) throw UserError("there is no interrupted fit to resume", "start a new fit instead");
        train::FitResult r;
        try {
            r = ps.resume(&stop_);
        } catch (...) {
            ps.persist();
            throw;
        }
        ps.persist();
        publish();
        Q_EMIT job_finished("resume", r.stopped, QString::fromStdString(r.stop_reason));
    });
}

void TrainingWorker::resize(int size) {
    run_job("resize", [&] {
        auto& ps = session();
        const auto lock = ps.lock("resize-learner");
        ps.resize_learner(size);
        Q_EMIT note(tr("The learner goes on at %1 px with the same weights").arg(size));
        publish();
        Q_EMIT job_finished("resize", false, {});
    });
}

void TrainingWorker::save(const QString& name) {
    run_job("save", [&] {
        auto& ps = session();
        const auto lock = ps.lock("save");
        ps.save_checkpoint(name.toStdString());
        publish();
        Q_EMIT job_finished("save", false, name);
    });
}

void TrainingWorker::load(const QString& name) {
    run_job("load", [&] {
        auto& ps = session();
        const auto lock = ps.lock("load");
        ps.load_checkpoint(name.toStdString());
        publish();
        Q_EMIT job_finished("load", false, name);
    });
}

void TrainingWorker::ensemble(const EnsembleRequest& request) {
    run_job("Ensemble", [&] {
        auto& ps = session();
        const auto lock = ps.lock("ensemble");
        const data::Dataset& dataset = ps.dataset();
        if (dataset.count(data::Split::Test) == 0)
            throw UserError("the dataset has no test images to predict", "prepare the data with its test folder (Data page)");
        QStringList refs = request.members;
        std::vector<double> weights(request.weights.begin(), request.weights.end());
        if (request.folds) {   // the fold runs the cross-validation counts, equal weights
            refs.clear();
            for (int run : project::fold_ensemble_runs(ps.project(), dataset)) refs << QString("#%1").arg(run);
            weights.clear();
        }
        if (refs.isEmpty()) throw UserError("an ensemble needs members", "select runs with checkpoints");
        if (!weights.empty() && weights.size() != static_cast<std::size_t>(refs.size()))
            throw UserError(fmt::format("{} weights for {} members", weights.size(), refs.size()));
        double total = 0;
        for (double w : weights) total += std::isfinite(w) && w > 0 ? w : 0;
        if (!weights.empty() && !(total > 0))
            throw UserError("the weights add up to 0", "give at least one member a positive weight");
        const fs::path project = ps.project();
        train::LearnerConfig base;
        base.precision = precision_;
        std::vector<project::EnsembleMember> members;
        for (const auto& ref : refs) members.push_back(project::resolve_member(project, ref.toStdString(), base));
        const auto mix = request.geometric ? project::EnsembleMix::Geometric : project::EnsembleMix::Mean;
        // Fold runs trained on most of the valid split: scored out of fold instead, from their
        // saved predictions, before any member predicts (as whisker-cli ensemble does).
        const bool out_of_fold =
            std::any_of(members.begin(), members.end(), [&](const auto& m) { return project::member_folds(project, m) > 0; });
        std::optional<project::OutOfFoldEnsemble> oof;
        if (out_of_fold) oof = project::out_of_fold_ensemble(project, dataset, members, weights, mix);

        std::string command = request.folds ? "whisker (workbench): ensemble of the folds' runs" : "whisker (workbench): ensemble of";
        for (const auto& ref : refs) command += " " + ref.toStdString();
        project::RunRecorder recorder(project, "whisker");
        recorder.begin(project::RunKind::Ensemble, dataset, command);
        recorder.set_device(detect_compute_device().describe());
        try {
            const std::string data_state = ps.state().data;
            std::vector<const project::MemberPredictions*> predicted;
            std::vector<project::RunMember> recorded;
            EnsembleResult result;
            result.id = request.id;
            for (std::size_t i = 0; i < members.size(); ++i) {
                const auto& m = members[i];
                std::error_code ec;
                const auto weights_time = fs::last_write_time(project / "models" / (m.checkpoint + ".safetensors"), ec);
                const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}", project.string(), m.checkpoint,
                                                    ec ? 0 : weights_time.time_since_epoch().count(), request.tta, data_state,
                                                    train::precision_name(precision_), oof ? "test" : "valid+test");
                auto cached = member_cache_->predictions.find(key);
                if (cached == member_cache_->predictions.end()) {
                    const QString what = tr("Member %1 of %2: %3 (%4 at %5 px)")
                                             .arg(i + 1)
                                             .arg(members.size())
                                             .arg(refs[static_cast<int>(i)], QString::fromStdString(m.config.arch))
                                             .arg(m.config.size);
                    Q_EMIT progress(what, 0, 0);
                    auto progress_of = [this, what](const std::string& stage, long done, long total) {
                        const auto now = std::chrono::steady_clock::now();
                        if (done < total && now - last_progress_ < std::chrono::milliseconds(150)) return;
                        last_progress_ = now;
                        Q_EMIT progress(what + " — " + QString::fromStdString(stage), done, total);
                    };
                    auto p = project::predict_member(project, dataset, m, request.tta, train::TtaMix::Mean, progress_of, &stop_, !oof);
                    cached = member_cache_->predictions.emplace(key, std::move(p)).first;
                }
                predicted.push_back(&cached->second);
                project::RunMember rm = project::run_member_of(m, weights.empty() ? 1.0 : weights[i]);
                rm.accuracy = oof ? oof->member_accuracy[i] : cached->second.valid ? cached->second.valid->accuracy() : NAN;
                rm.log_loss = oof ? oof->member_log_loss[i] : cached->second.valid ? cached->second.valid->log_loss() : NAN;
                recorded.push_back(rm);
                result.members.push_back({QString::fromStdString(rm.source), QString::fromStdString(rm.checkpoint),
                                          QString::fromStdString(rm.arch), rm.size, rm.weight, rm.accuracy, rm.log_loss});
            }
            const bool weighted =
                !weights.empty() && std::adjacent_find(weights.begin(), weights.end(), std::not_equal_to<>()) != weights.end();
            const std::string mix_name = project::ensemble_mix_name(mix, weighted);
            recorder.set_members(recorded, mix_name);
            std::vector<const train::Predictions*> valid, test;
            for (const auto* p : predicted) {
                if (p->valid) valid.push_back(&*p->valid);
                if (p->test) test.push_back(&*p->test);
            }
            result.accuracy = result.log_loss = NAN;
            result.out_of_fold = oof.has_value();
            if (oof) {
                result.accuracy = oof->predictions.accuracy();
                result.log_loss = oof->predictions.log_loss();
                recorder.add_prediction(oof->predictions, data::Split::Valid, std::max(0, oof->predictions.passes - 1),
                                        train::TtaMix::Mean);
            } else if (valid.size() == members.size()) {
                const auto ev = project::combine_predictions(valid, weights, mix, dataset.multi_label);
                result.accuracy = ev.accuracy();
                result.log_loss = ev.log_loss();
                recorder.add_prediction(ev, data::Split::Valid, request.tta, train::TtaMix::Mean);
            }
            auto et = std::make_shared<train::Predictions>(project::combine_predictions(test, weights, mix, dataset.multi_label));
            recorder.add_prediction(*et, data::Split::Test, request.tta, train::TtaMix::Mean);
            result.run = recorder.number();
            result.mix = QString::fromStdString(mix_name);
            recorder.end();

            PredictionSet& t = result.test;
            t.predictions = et;
            t.dataset = std::make_shared<const data::Dataset>(dataset);
            t.project = QString::fromStdString(project.string());
            t.split = static_cast<int>(data::Split::Test);
            t.tta = request.tta;
            t.state = QString::fromStdString("ensemble/" + data_state);
            t.run = result.run;
            t.model = request.folds ? tr("ensemble #%1 (%2) of the %3 cross-validation folds' models, scored out of fold")
                                          .arg(result.run)
                                          .arg(result.mix)
                                          .arg(recorded.size())
                                    : tr("ensemble #%1 (%2) of %3 members").arg(result.run).arg(result.mix).arg(recorded.size());
            for (std::size_t i = 0; i < recorded.size(); ++i) {
                const auto& m = recorded[i];
                const std::string fold = members[i].folds > 0 ? fmt::format("fold {}: ", members[i].fold) : std::string();
                t.members << QString::fromStdString(fmt::format("{}{} {} at {} px, weight {:g}", fold, m.source, m.arch, m.size, m.weight));
            }
            Q_EMIT ensemble_ready(result);
        } catch (const Cancelled&) {
            recorder.end_stopped("stopped by the user");
            throw;
        } catch (const std::exception& e) {
            recorder.end(e.what());
            throw;
        }
        Q_EMIT job_finished("Ensemble", false, {});
    });
}

void TrainingWorker::make_folds(int folds, qulonglong seed, bool group_duplicates) {
    run_job("Folds", [&] {
        auto& ps = session();
        const auto lock = ps.lock("folds");
        const fs::path project = ps.project();
        data::Dataset d = data::Dataset::load(project);   // the manifest as it is now, under the lock
        data::FoldOptions o;
        o.folds = folds;
        o.seed = seed;
        std::string grouping;
        if (group_duplicates) {
            Q_EMIT progress(tr("Finding near-duplicates to keep together…"), 0, 0);
            grouping = project::group_near_duplicates(project, d, o, 0, [this](const Progress& p) {
                const auto now = std::chrono::steady_clock::now();
                if (p.done < p.total && now - last_progress_ < std::chrono::milliseconds(150)) return;
                last_progress_ = now;
                Q_EMIT progress(tr("Finding near-duplicates to keep together: %1").arg(QString::fromStdString(p.stage)),
                                static_cast<qlonglong>(p.done), static_cast<qlonglong>(p.total));
            }, &stop_);
        }
        data::assign_folds(d, o);   // UserError, changing nothing, when a class has fewer images than K
        d.save(project);
        ps.reload_dataset();
        Q_EMIT note(tr("Folds: %1%2").arg(QString::fromStdString(data::describe_folds(d)),
                                          grouping.empty() ? QString() : "; " + QString::fromStdString(grouping)));
        publish();
        Q_EMIT job_finished("Folds", false, QString::fromStdString(grouping));
    });
}

void TrainingWorker::train_folds(const QString& recipe_json, const QVector<int>& folds) {
    run_job("Cross-validation", [&] {
        auto& ps = session();
        const auto lock = ps.lock("run --folds");
        const data::Dataset& dataset = ps.dataset();
        data::check_fold(dataset, 0);   // says how to deal folds
        if (!ps.spec())
            throw UserError("this project has no learner yet", "create one on the Train page: every fold's learner copies its setup");
        // The settings `whisker-cli run --folds` uses: the folds' learner setup (the project's,
        // as it was when the folds' first learner was made) on the program's own settings.
        ps.learner().set_accumulate(accumulate_);
        std::string changed;
        const auto spec = project::folds_learner_spec(ps.project(), dataset.folds(), *ps.spec(), &changed);
        if (!changed.empty()) Q_EMIT note(tr("Cross-validation: %1").arg(QString::fromStdString(changed)));
        project::FoldRecipeOptions o;
        o.recipe_json = recipe_json.isEmpty() ? project::default_folds_recipe(*ps.spec()) : recipe_json.toStdString();
        o.folds.assign(folds.begin(), folds.end());
        o.program = "whisker";
        o.command = fmt::format("whisker (workbench): cross-validation, {} folds", dataset.folds());

        // What the progress line says: the fold, the recipe's step, the learner's own stage.
        QString fold_words, step_words;
        project::FoldRecipeEvents ev;
        ev.fold_started = [&](int fold, int k, const std::string& what, bool skipped) {
            // Folds are numbered from 0, as in `--fold I` and the table: "Fold 1 of 3" would
            // read as the first.
            fold_words = tr("Fold %1 (folds 0–%2)").arg(fold).arg(k - 1);
            step_words.clear();
            Q_EMIT fold_started(fold, k, QString::fromStdString(what), skipped);
            Q_EMIT note(tr("Cross-validation, fold %1 (folds 0–%2)%3: %4")
                            .arg(fold)
                            .arg(k - 1)
                            .arg(skipped ? tr(" skipped") : QString(), QString::fromStdString(what)));
            Q_EMIT progress(fold_words, 0, 0);
        };
        ev.recipe.step_started = [&](int n, int total, const std::string& what) {
            step_words = tr("step %1 of %2: %3").arg(n).arg(total).arg(QString::fromStdString(what));
            Q_EMIT progress(fold_words + " · " + step_words, 0, 0);
        };
        ev.recipe.adjusted = [this](const std::string& what) { Q_EMIT note(tr("Recipe: %1").arg(QString::fromStdString(what))); };
        ev.fold_done = [this](int fold, int run, const train::Predictions& oof) {
            Q_EMIT note(tr("Cross-validation, fold %1 done (run #%2): %3 images out of fold, accuracy %4, log loss %5")
                            .arg(fold)
                            .arg(run)
                            .arg(oof.records.size())
                            .arg(oof.accuracy(), 0, 'f', 4)
                            .arg(oof.log_loss(), 0, 'f', 4));
            Q_EMIT fold_finished(fold, run, oof.accuracy(), oof.log_loss());
        };
        auto stage = [&](const std::string& what, long done, long total) {
            const auto now = std::chrono::steady_clock::now();
            if (done < total && now - last_progress_ < std::chrono::milliseconds(150)) return;
            last_progress_ = now;
            QString text = fold_words;
            if (!step_words.isEmpty()) text += " · " + step_words;
            Q_EMIT progress(text + " · " + QString::fromStdString(what), done, total);
        };
        const auto r = project::run_fold_recipes(ps.project(), dataset, spec, ps.learner().config(), o, ev, &stop_, stage);
        Q_EMIT job_finished("Cross-validation", r.stopped,
                            r.stopped ? tr("fold %1: %2").arg(r.stopped_fold).arg(QString::fromStdString(r.stop_reason)) : QString());
    });
}

}  // namespace whisker::ui
