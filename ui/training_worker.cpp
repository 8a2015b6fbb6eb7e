#include "training_worker.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/dataset.h"
#include "whisker/train/distributed.h"
#include "whisker/train/recipe.h"

#include <QCoreApplication>
#include <QDir>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace whisker::ui {

void register_training_types() {
    qRegisterMetaType<LossPoint>();
    qRegisterMetaType<QVector<LossPoint>>();
    qRegisterMetaType<LrCurve>();
    qRegisterMetaType<LearnerSettings>();
    qRegisterMetaType<PredictionSet>();
    qRegisterMetaType<train::EpochRecord>();
    qRegisterMetaType<train::FitOptions>();
}

// Forwards the Learner's callbacks to the worker's throttled signals.
class SignalBridge : public train::Callback {
public:
    explicit SignalBridge(TrainingWorker* w) : w_(w) {}
    void after_batch(train::Learner& l, const train::BatchRecord& b) override {
        // lr_find sweeps have their own plot; their batches never enter the history.
        const auto& h = l.batch_history();
        if (w_->in_lr_find_ || h.empty() || h.back().iteration != b.iteration || h.back().loss != b.loss) return;
        w_->pending_.push_back({w_->iteration_base_ + b.iteration, b.loss, b.smooth_loss, b.lr});
        w_->flush_points(false);
    }
    void after_epoch(train::Learner&, const train::EpochRecord& r) override {
        w_->flush_points(true);
        Q_EMIT w_->epoch_finished(r);
    }
    void after_fit(train::Learner& l, const train::FitResult&) override {
        w_->flush_points(true);
        w_->iteration_base_ = static_cast<long>(l.batch_history().size());
    }

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

TrainingWorker::TrainingWorker() { register_training_types(); }
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

void TrainingWorker::create_learner(const LearnerSettings& s) {
    run_job("create learner", [&] {
        create_from_settings(s);
        Q_EMIT job_finished("create learner", false, {});
    });
}

void TrainingWorker::changed() {
    ++generation_;
    Q_EMIT model_changed(generation_);
}

void TrainingWorker::create_from_settings(const LearnerSettings& s) {
    {
        const std::filesystem::path project = s.project.toStdString();
        data::Dataset dataset = data::Dataset::load(project);
        train::LearnerConfig c;
        c.arch = s.arch.toStdString();
        c.size = s.size;
        c.batch_size = s.batch_size;
        c.pretrained = s.pretrained;
        auto progress = [this](const std::string& stage, long done, long total) {
            const auto now = std::chrono::steady_clock::now();
            if (done < total && now - last_progress_ < std::chrono::milliseconds(150)) return;
            last_progress_ = now;
            Q_EMIT this->progress(QString::fromStdString(stage), done, total);
        };
        learner_.reset();
        learner_ = std::make_unique<train::Learner>(project, std::move(dataset), c, progress);
        learner_->add_callback(std::make_shared<SignalBridge>(this));
        // The same learner as whisker-cli's, when the settings match: continue from "current".
        bool continued = false;
        const auto cfg_file = project / "learner.json";
        if (std::filesystem::exists(cfg_file) && learner_->has_checkpoint("current")) {
            try {
                const auto j = nlohmann::json::parse(read_file(cfg_file));
                if (j.value("arch", "") == c.arch && j.value("size", 0) == c.size && j.value("batch_size", 0) == c.batch_size) {
                    learner_->load("current");
                    continued = true;
                }
            } catch (const std::exception&) {
                // a damaged or foreign state: start afresh
            }
        }
        if (!continued) persist();
        iteration_base_ = 0;
        Q_EMIT learner_ready(QString::fromStdString(fmt::format("{} at {} px, batch {}, {} — {}", c.arch, c.size, c.batch_size,
                                                              c.pretrained ? "ImageNet weights" : "from scratch",
                                                              detect_compute_device().describe())));
        changed();
    }
}

void TrainingWorker::predict(const QString& project, int split, int tta, int mix) {
    run_job("predict", [&] {
        if (!learner_) {
            const std::filesystem::path p = project.toStdString();
            if (!std::filesystem::exists(p / "learner.json"))
                throw UserError("this project has no learner yet", "create one and train it on the Train page");
            const auto j = nlohmann::json::parse(read_file(p / "learner.json"));
            LearnerSettings s;
            s.project = project;
            s.arch = QString::fromStdString(j.value("arch", "resnet34"));
            s.size = j.value("size", 224);
            s.batch_size = j.value("batch_size", 64);
            s.pretrained = j.value("pretrained", true);
            create_from_settings(s);
        }
        const auto sp = static_cast<data::Split>(split);
        if (learner_->dataset().count(sp) == 0)
            throw UserError(std::string("the dataset has no ") + data::split_name(sp) + " images");
        PredictionSet out;
        out.predictions = std::make_shared<const train::Predictions>(
            learner_->predict(sp, tta, mix ? train::TtaMix::Beta : train::TtaMix::Mean, &stop_));
        out.dataset = std::make_shared<const data::Dataset>(learner_->dataset());
        out.project = QString::fromStdString(learner_->project().string());
        out.split = split;
        out.tta = tta;
        out.mix = mix;
        out.generation = generation_;
        const auto& c = learner_->config();
        out.model = QString::fromStdString(fmt::format("{} at {} px, {} epoch{}", c.arch, c.size, learner_->epochs_trained(),
                                                       learner_->epochs_trained() == 1 ? "" : "s"));
        Q_EMIT predictions_ready(out);
        Q_EMIT job_finished("predict", false, {});
    });
}

void TrainingWorker::reload_dataset() {
    run_job("reload dataset", [&] {
        if (!learner_) return;
        learner_->set_dataset(data::Dataset::load(learner_->project()));
        changed();
    });
}

void TrainingWorker::persist() {
    if (!learner_) return;
    const auto& c = learner_->config();
    write_file_atomically(learner_->project() / "learner.json",
                          nlohmann::json{{"arch", c.arch}, {"size", c.size}, {"batch_size", c.batch_size},
                                         {"pretrained", c.pretrained}, {"seed", c.seed}}
                              .dump(1));
    learner_->save("current");
}

void TrainingWorker::run_recipe(const QString& recipe_json) {
    run_job("recipe", [&] {
        if (!learner_) throw UserError("create a learner first");
        train::RecipeEvents ev;
        ev.step_started = [this](int n, const std::string& step) { Q_EMIT recipe_step(n, QString::fromStdString(step)); };
        ev.lr_found = [this](const train::LrFindResult& r, double, bool) {
            Q_EMIT lr_find_finished(curve_of(r));
        };
        in_lr_find_ = false;
        const std::string recipe = recipe_json.isEmpty() ? train::default_recipe() : recipe_json.toStdString();
        const auto r = train::run_recipe(*learner_, recipe, ev, &stop_);
        persist();
        changed();
        Q_EMIT job_finished("recipe", r.stopped, QString::fromStdString(r.stop_reason));
    });
}

void TrainingWorker::lr_find() {
    run_job("lr_find", [&] {
        if (!learner_) throw UserError("create a learner first");
        in_lr_find_ = true;
        struct Reset {
            bool& flag;
            ~Reset() { flag = false; }
        } reset{in_lr_find_};
        const auto r = learner_->lr_find(1e-5, 10, false, &stop_);
        Q_EMIT lr_find_finished(curve_of(r));
        Q_EMIT job_finished("lr_find", stop_.load(), {});
    });
}

void TrainingWorker::fit(const train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze) {
    run_job("fit", [&] {
        if (!learner_) throw UserError("create a learner first");
        learner_->freeze_to(freeze_to);
        learner_->bn_freeze(bn_freeze);
        if (precompute != learner_->precompute()) learner_->set_precompute(precompute);
        const auto r = learner_->fit(options, &stop_);
        persist();
        changed();
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

void TrainingWorker::fit_processes(const train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze, int nproc) {
    run_job("fit", [&] {
        if (!learner_) throw UserError("create a learner first");
        const std::filesystem::path cli = cli_program();
        if (!std::filesystem::exists(cli))
            throw UserError("cannot find whisker-cli at " + cli.string(), "install it beside whisker, or set WHISKER_CLI to its path");
        // The workers start from exactly this learner's state.
        learner_->freeze_to(freeze_to);
        learner_->bn_freeze(bn_freeze);
        persist();
        train::LocalLaunchOptions o;
        o.executable = cli;
        o.nproc = nproc;
        o.args = {"fit", learner_->project().string(), "--json", "--lr", join_numbers(options.lrs),
                  "--cycles", std::to_string(options.n_cycle), "--cycle-mult", std::to_string(options.cycle_mult),
                  "--freeze-to", std::to_string(freeze_to), precompute ? "--precompute" : "--no-precompute",
                  bn_freeze ? "--bn-freeze" : "--no-bn-freeze"};
        if (options.cycle_len > 0) o.args.insert(o.args.end(), {"--cycle-len", fmt::format("{}", options.cycle_len)});
        if (!options.wds.empty()) o.args.insert(o.args.end(), {"--wd", join_numbers(options.wds)});
        o.stop = &stop_;
        long last_iteration = -1;
        o.on_output = [this, &last_iteration](const std::string& line) {
            try {
                const auto j = nlohmann::json::parse(line);
                if (j.value("event", "") == "batch") {
                    last_iteration = j.value("iteration", 0L);
                    pending_.push_back({iteration_base_ + last_iteration, j.value("loss", 0.0), j.value("smooth_loss", 0.0),
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
        iteration_base_ += last_iteration + 1;
        const bool stopped = stop_.load();
        // What rank 0 saved (also after a stop: the workers save before they exit).
        learner_->load("current");
        changed();
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
        if (!learner_) throw UserError("create a learner first");
        const auto r = learner_->resume("autosave", &stop_);
        persist();
        changed();
        Q_EMIT job_finished("resume", r.stopped, QString::fromStdString(r.stop_reason));
    });
}

void TrainingWorker::save(const QString& name) {
    run_job("save", [&] {
        if (!learner_) throw UserError("create a learner first");
        learner_->save(name.toStdString());
        Q_EMIT job_finished("save", false, name);
    });
}

void TrainingWorker::load(const QString& name) {
    run_job("load", [&] {
        if (!learner_) throw UserError("create a learner first");
        learner_->load(name.toStdString());
        persist();
        changed();
        Q_EMIT job_finished("load", false, name);
    });
}

}  // namespace whisker::ui
