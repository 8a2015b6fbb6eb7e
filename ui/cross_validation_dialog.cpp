#include "cross_validation_dialog.h"

#include "train_page.h"

#include "whisker/common/errors.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"
#include "whisker/project/folds.h"
#include "whisker/project/session.h"
#include "whisker/train/recipe.h"

#include <QCheckBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <optional>

namespace fs = std::filesystem;

namespace whisker::ui {

struct CrossValidationDialog::Snapshot {
    std::optional<data::Dataset> dataset;
    std::optional<project::LearnerSpec> spec;
    std::optional<project::CrossValidationSummary> summary;
    std::vector<project::FoldRecipeState> recipe;   // per fold, for the recipe shown (empty: unknown)
    std::string recipe_json;                         // the recipe the folds train with
    QString error;                                   // why something could not be read
    bool has_fingerprints = false;
};

namespace {

constexpr const char* kRed = "#b00020";
constexpr const char* kAmber = "#8a5a00";
constexpr const char* kGreen = "#1e7a1e";

QString score_text(double v) { return std::isfinite(v) ? QString::number(v, 'f', 4) : QStringLiteral("-"); }

QTableWidgetItem* cell(const QString& text, bool number = false) {
    auto* item = new QTableWidgetItem(text);
    item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
    if (number) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return item;
}

QString message_of(const UserError& e) {
    QString m = QString::fromStdString(e.what());
    if (!e.hint().empty()) m += " — " + QString::fromStdString(e.hint());
    return m;
}

QString fold_list(const std::vector<int>& folds) {
    QStringList parts;
    for (int f : folds) parts << QString::number(f);
    return parts.join(", ");
}

// "fold 2", "folds 0, 1, 2"
QString folds_words(const std::vector<int>& folds) {
    return (folds.size() == 1 ? CrossValidationDialog::tr("fold %1") : CrossValidationDialog::tr("folds %1")).arg(fold_list(folds));
}

}  // namespace

CrossValidationDialog::CrossValidationDialog(TrainPage* train, fs::path project, QWidget* parent)
    : QDialog(parent), train_(train), project_(std::move(project)), snap_(std::make_unique<Snapshot>()) {
    setObjectName("crossValidationDialog");
    setWindowTitle(tr("Cross-validation — %1").arg(QString::fromStdString(project_.filename().string())));
    confirm_ = [this](const QString& question) {
        return QMessageBox::question(this, tr("Make new folds"), question, QMessageBox::Yes | QMessageBox::Cancel,
                                     QMessageBox::Cancel) == QMessageBox::Yes;
    };

    auto* intro = new QLabel(tr("K-fold cross-validation: the labelled images (train and valid) are dealt into K folds; each "
                                "fold's model trains on the other folds and is scored on its own, so every labelled image is "
                                "predicted once by a model that never saw it. The out-of-fold score is steadier than one "
                                "validation split, and the K models ensemble into the submission."));
    intro->setWordWrap(true);

    // ---- folds ----
    k_ = new QSpinBox;
    k_->setObjectName("cvFolds");
    k_->setRange(2, 10);
    k_->setValue(5);
    k_->setToolTip(tr("K: how many folds (each class needs at least K usable images)"));
    seed_ = new QSpinBox;
    seed_->setObjectName("cvSeed");
    seed_->setRange(0, 999999);
    seed_->setToolTip(tr("The same seed deals the same folds"));
    group_ = new QCheckBox(tr("Keep near-duplicates in one fold"));
    group_->setObjectName("cvGroupDuplicates");
    group_->setToolTip(tr("Finds near-duplicate images first (the Data page's duplicates scan) and deals each group into one "
                          "fold, so that no copy of a fold's image trains that fold's model and flatters its score"));
    group_note_ = new QLabel;
    group_note_->setStyleSheet("color: #666");
    make_button_ = new QPushButton(tr("&Make folds"));
    make_button_->setObjectName("cvMakeFolds");
    folds_label_ = new QLabel;
    folds_label_->setObjectName("cvFoldsDescription");
    folds_label_->setWordWrap(true);
    folds_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* folds_box = new QGroupBox(tr("Folds"));
    auto* folds_row = new QHBoxLayout;
    folds_row->addWidget(new QLabel(tr("K")));
    folds_row->addWidget(k_);
    folds_row->addSpacing(12);
    folds_row->addWidget(new QLabel(tr("Seed")));
    folds_row->addWidget(seed_);
    folds_row->addSpacing(12);
    folds_row->addWidget(group_);
    folds_row->addWidget(group_note_);
    folds_row->addStretch(1);
    folds_row->addWidget(make_button_);
    auto* folds_layout = new QVBoxLayout(folds_box);
    folds_layout->addWidget(folds_label_);
    folds_layout->addLayout(folds_row);

    // ---- the table ----
    table_ = new QTableWidget(0, ColumnCount);
    table_->setObjectName("cvFoldsTable");
    table_->setHorizontalHeaderLabels({tr("Fold"), tr("Images"), tr("State"), tr("Run"), tr("Model"), tr("Accuracy"), tr("Log loss")});
    table_->verticalHeader()->hide();
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setSelectionMode(QAbstractItemView::ExtendedSelection);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table_->horizontalHeader()->setSectionResizeMode(State, QHeaderView::Stretch);
    table_->setToolTip(tr("Select folds to train just those"));

    // ---- training ----
    learner_label_ = new QLabel;
    learner_label_->setObjectName("cvLearner");
    learner_label_->setWordWrap(true);
    recipe_label_ = new QLabel;
    recipe_label_->setObjectName("cvRecipe");
    recipe_label_->setWordWrap(true);
    recipe_button_ = new QPushButton(tr("Recipe file…"));
    recipe_button_->setObjectName("cvRecipeFile");
    recipe_button_->setToolTip(tr("Train the folds with a recipe of your own (a JSON list of steps, as whisker-cli run --recipe)"));
    default_recipe_button_ = new QPushButton(tr("Train page's recipe"));
    default_recipe_button_->setObjectName("cvDefaultRecipe");
    train_button_ = new QPushButton(tr("&Train all folds"));
    train_button_->setObjectName("cvTrain");
    train_button_->setDefault(true);
    stop_button_ = new QPushButton(tr("S&top"));
    stop_button_->setObjectName("cvStop");
    stop_button_->setToolTip(tr("Stops at the next batch; the fold continues from there next time"));
    progress_ = new QProgressBar;
    progress_->setObjectName("cvProgress");
    progress_->setRange(0, 1000);
    progress_->setTextVisible(false);
    progress_->setVisible(false);
    status_ = new QLabel;
    status_->setObjectName("cvStatus");
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* train_box = new QGroupBox(tr("Training"));
    auto* recipe_row = new QHBoxLayout;
    recipe_row->addWidget(recipe_label_, 1);
    recipe_row->addWidget(recipe_button_);
    recipe_row->addWidget(default_recipe_button_);
    auto* train_row = new QHBoxLayout;
    train_row->addWidget(learner_label_, 1);
    train_row->addWidget(train_button_);
    train_row->addWidget(stop_button_);
    auto* train_layout = new QVBoxLayout(train_box);
    train_layout->addLayout(recipe_row);
    train_layout->addLayout(train_row);

    // ---- the score and the ensemble ----
    score_ = new QLabel;
    score_->setObjectName("cvScore");
    score_->setWordWrap(true);
    score_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    models_note_ = new QLabel;
    models_note_->setObjectName("cvModelsNote");
    models_note_->setWordWrap(true);
    models_note_->setStyleSheet(QString("color: %1").arg(kAmber));
    tta_ = new QSpinBox;
    tta_->setObjectName("cvTta");
    tta_->setRange(0, 32);
    tta_->setSpecialValueText(tr("none"));
    tta_->setSuffix(tr(" augmented passes"));
    tta_->setToolTip(tr("Test-time augmentation for every fold's model: this many augmented copies of each test image besides "
                        "the plain one"));
    ensemble_button_ = new QPushButton(tr("&Ensemble the folds → Send to Submit"));
    ensemble_button_->setObjectName("cvEnsemble");
    ensemble_button_->setToolTip(tr("Predict the test set with the K fold models, average them (recorded as an ensemble run, "
                                    "scored out of fold) and open the Submit page with the result"));
    auto* close_button = new QPushButton(tr("Close"));
    auto* score_box = new QGroupBox(tr("Out-of-fold score"));
    auto* ensemble_row = new QHBoxLayout;
    ensemble_row->addWidget(new QLabel(tr("TTA")));
    ensemble_row->addWidget(tta_);
    ensemble_row->addStretch(1);
    ensemble_row->addWidget(ensemble_button_);
    auto* score_layout = new QVBoxLayout(score_box);
    score_layout->addWidget(score_);
    score_layout->addWidget(models_note_);
    score_layout->addLayout(ensemble_row);

    auto* bottom = new QHBoxLayout;
    bottom->addStretch(1);
    bottom->addWidget(close_button);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(intro);
    layout->addWidget(folds_box);
    layout->addWidget(table_, 1);
    layout->addWidget(train_box);
    layout->addWidget(progress_);
    layout->addWidget(status_);
    layout->addWidget(score_box);
    layout->addLayout(bottom);
    resize(960, 640);

    connect(make_button_, &QPushButton::clicked, this, &CrossValidationDialog::make_folds);
    connect(train_button_, &QPushButton::clicked, this, &CrossValidationDialog::train_folds);
    connect(stop_button_, &QPushButton::clicked, this, &CrossValidationDialog::stop);
    connect(ensemble_button_, &QPushButton::clicked, this, &CrossValidationDialog::ensemble_folds);
    connect(close_button, &QPushButton::clicked, this, &QDialog::reject);
    connect(recipe_button_, &QPushButton::clicked, this, [this] {
        const QString file = QFileDialog::getOpenFileName(this, tr("Recipe for the folds"), QString::fromStdString(project_.string()),
                                                          tr("Recipes (*.json);;All files (*)"));
        if (!file.isEmpty()) set_recipe_file(file);
    });
    connect(default_recipe_button_, &QPushButton::clicked, this, [this] { set_recipe_file({}); });
    connect(table_, &QTableWidget::itemSelectionChanged, this, &CrossValidationDialog::update_buttons);

    // Another page's job: everything that starts one waits for it (and the table may have news).
    connect(train_, &TrainPage::busy_changed, this, [this](bool busy) {
        if (job_ != Job::None) return;
        if (busy) say(tr("The learner is busy with another job (see the Train page): wait for it, or stop it there."), kAmber);
        else {
            refresh();
            say({});
        }
        update_buttons();
    });
    TrainingWorker* worker = train_->worker();
    connect(worker, &TrainingWorker::progress, this, [this](const QString& stage, qlonglong done, qlonglong total) {
        if (job_ == Job::None) return;
        progress_->setVisible(true);
        progress_->setRange(0, total > 0 ? 1000 : 0);
        if (total > 0) progress_->setValue(static_cast<int>(1000.0 * static_cast<double>(done) / static_cast<double>(total)));
        say(total > 0 ? tr("%1 (%2 of %3)").arg(stage).arg(done).arg(total) : stage);
    });
    connect(worker, &TrainingWorker::fold_started, this, [this](int fold, int, const QString& note, bool skipped) {
        if (job_ != Job::Train) return;
        training_fold_ = skipped ? -1 : fold;
        Q_EMIT log(skipped ? tr("Cross-validation: fold %1 skipped (%2)").arg(fold).arg(note)
                           : tr("Cross-validation: fold %1 starts (%2)").arg(fold).arg(note));
        fill_table();
    });
    connect(worker, &TrainingWorker::fold_finished, this, [this](int fold, int run, double accuracy, double log_loss) {
        if (job_ != Job::Train) return;
        training_fold_ = -1;
        Q_EMIT log(tr("Cross-validation: fold %1 finished (run #%2): accuracy %3, log loss %4")
                       .arg(fold)
                       .arg(run)
                       .arg(score_text(accuracy), score_text(log_loss)));
        refresh();
    });
    connect(worker, &TrainingWorker::ensemble_ready, this, [this](const EnsembleResult& r) {
        if (job_ != Job::Ensemble || r.id != request_id_) return;
        ensemble_result_ = r;
        ensemble_ready_ = true;
    });
    connect(worker, &TrainingWorker::job_finished, this, [this](const QString& job, bool stopped, const QString& message) {
        if (job == "Folds" && job_ == Job::Folds) {
            job_ended();
            refresh();
            if (stopped) say(tr("Stopped: the folds are as they were."), kAmber);
            else if (snap_->dataset && folds_ > 0)
                say(tr("Dealt %1.%2").arg(QString::fromStdString(data::describe_folds(*snap_->dataset)),
                                          message.isEmpty() ? QString() : " " + message + "."),
                    kGreen);
        } else if (job == "Cross-validation" && job_ == Job::Train) {
            job_ended();
            refresh();
            if (stopped) say(tr("Stopped in %1. Train continues that fold after its last finished step (inside a fit, from its "
                                "autosave).").arg(message), kAmber);
            else if (oof_complete_) say(tr("Every fold is trained: the out-of-fold score is below."), kGreen);
            else
                say(tr("Done; %1 still without a finished run.")
                        .arg(folds_words(snap_->summary ? snap_->summary->missing_folds() : std::vector<int>{})),
                    kAmber);
        } else if (job == "Ensemble" && job_ == Job::Ensemble) {
            job_ended();
            if (stopped || !ensemble_ready_) {
                say(tr("Stopped: nothing was recorded or sent."), kAmber);
                return;
            }
            const auto& r = ensemble_result_;
            Q_EMIT log(tr("Ensemble #%1 of the %2 folds (%3): out-of-fold log loss %4, accuracy %5; sent to the Submit page")
                           .arg(r.run)
                           .arg(r.members.size())
                           .arg(r.mix, score_text(r.log_loss), score_text(r.accuracy)));
            Q_EMIT send_to_submit(r.test);
            accept();
        }
    });
    connect(worker, &TrainingWorker::failed, this, [this](const QString& job, const QString& message) {
        const bool mine = (job == "Folds" && job_ == Job::Folds) || (job == "Cross-validation" && job_ == Job::Train) ||
                          (job == "Ensemble" && job_ == Job::Ensemble);
        if (!mine) return;
        const QString what = job_ == Job::Folds ? tr("Making the folds") : job_ == Job::Train ? tr("Training the folds")
                                                                                            : tr("The folds' ensemble");
        job_ended();
        refresh();
        say(tr("%1 failed: %2").arg(what, message), kRed);
    });

    refresh();
    if (snap_->dataset) {   // the folds' own K and seed to start from, else 5 and the split's seed
        k_->setValue(folds_ > 0 ? std::clamp(folds_, 2, 10) : 5);
        seed_->setValue(static_cast<int>(folds_ > 0 ? snap_->dataset->split.fold_seed : snap_->dataset->split.seed) % 1000000);
    }
    group_->setChecked(snap_->has_fingerprints);   // as whisker-cli: by default only when it is quick
    if (train_->busy()) say(tr("The learner is busy with another job (see the Train page): wait for it, or stop it there."), kAmber);
    update_buttons();
}

CrossValidationDialog::~CrossValidationDialog() = default;

void CrossValidationDialog::say(const QString& text, const char* colour) {
    status_->setStyleSheet(colour ? QString("color: %1").arg(colour) : QString());
    status_->setText(text);
}

void CrossValidationDialog::job_ended() {
    job_ = Job::None;
    training_fold_ = -1;
    progress_->setVisible(false);
    update_buttons();
}

void CrossValidationDialog::refresh() {
    auto s = std::make_unique<Snapshot>();
    s->has_fingerprints = project::has_duplicate_fingerprints(project_);
    try {
        s->dataset = data::Dataset::load(project_);
    } catch (const std::exception& e) {
        s->error = tr("The project has no usable dataset: %1").arg(QString::fromStdString(e.what()));
    }
    try {
        s->spec = project::LearnerSpec::read(project_);
    } catch (const std::exception& e) {
        s->error = QString::fromStdString(e.what());
    }
    folds_ = s->dataset ? s->dataset->folds() : 0;
    if (s->spec) s->recipe_json = recipe_text_.isEmpty() ? project::default_folds_recipe(*s->spec) : recipe_text_.toStdString();
    if (folds_ > 0) {
        try {
            s->summary = project::cross_validation_summary(project_, *s->dataset);
        } catch (const std::exception& e) {
            s->error = QString::fromStdString(e.what());
        }
        if (s->spec) {
            try {
                for (int f = 0; f < folds_; ++f)
                    s->recipe.push_back(project::fold_recipe_state(project_, *s->dataset, *s->spec, s->recipe_json, f));
            } catch (const std::exception& e) {
                s->recipe.clear();
                s->error = QString::fromStdString(e.what());
            }
        }
    }
    snap_ = std::move(s);

    // The folds in words, and what "Make folds" does.
    const auto* d = snap_->dataset ? &*snap_->dataset : nullptr;
    if (!d) {
        folds_label_->setText(snap_->error);
    } else if (folds_ > 0) {
        QString text = tr("<b>%1.</b>").arg(QString::fromStdString(data::describe_folds(*d)).toHtmlEscaped());
        text += tr(" Seed %1.").arg(d->split.fold_seed);
        folds_label_->setText(text);
    } else {
        std::size_t labelled = 0;
        for (const auto& im : d->images) labelled += im.split != data::Split::Test && !im.labels.empty() && !im.excluded;
        folds_label_->setText(tr("No folds yet: deal the %1 usable labelled images (train and valid) into K folds, stratified by "
                                 "class.").arg(labelled));
    }
    make_button_->setText(folds_ > 0 ? tr("&Make new folds…") : tr("&Make folds"));
    group_note_->setText(snap_->has_fingerprints ? tr("(fingerprints cached: quick)")
                                                 : tr("(decodes every image once; the fingerprints are kept)"));

    // The learner and recipe the folds train with.
    if (snap_->spec) {
        const auto& sp = *snap_->spec;
        learner_label_->setText(tr("Each fold trains its own %1 at %2 px, %3 (the project's learner's setup, from its starting "
                                   "weights); the project's learner is left alone.")
                                    .arg(QString::fromStdString(sp.arch))
                                    .arg(sp.size)
                                    .arg(sp.pretrained ? tr("pretrained") : tr("from scratch")));
    } else {
        learner_label_->setText(tr("The project has no learner yet: create one on the Train page (each fold's learner copies "
                                   "its architecture, size and augmentation)."));
    }
    int steps = 0;
    try {
        if (!snap_->recipe_json.empty()) steps = train::recipe_steps(snap_->recipe_json);
    } catch (const std::exception&) {
    }
    const QString step_words = steps == 1 ? tr("1 step") : tr("%1 steps").arg(steps);
    if (!recipe_file_.isEmpty())
        recipe_label_->setText(tr("Recipe: %1 (%2)").arg(QFileInfo(recipe_file_).fileName(), step_words));
    else if (snap_->spec)
        recipe_label_->setText(snap_->spec->pretrained
                                   ? tr("Recipe: the Train page's — the seed's %1 (fastai's Dogs vs. Cats lesson)").arg(step_words)
                                   : tr("Recipe: the Train page's — %1 made for training from scratch").arg(step_words));
    else
        recipe_label_->setText(tr("Recipe: the Train page's"));
    fill_table();
}

CrossValidationDialog::FoldState CrossValidationDialog::fold_state(int fold) const {
    if (fold < 0 || fold >= folds_) return FoldState::NotStarted;
    if (job_ == Job::Train && training_fold_ == fold) return FoldState::Training;
    const auto f = static_cast<std::size_t>(fold);
    if (f < snap_->recipe.size() && snap_->recipe[f].interrupted) return FoldState::CutOff;
    if (snap_->summary && f < snap_->summary->per_fold.size()) {
        const auto& score = snap_->summary->per_fold[f];
        if (score.run) return FoldState::Finished;
        if (score.stale_run) return FoldState::Stale;
    }
    return FoldState::NotStarted;
}

std::vector<int> CrossValidationDialog::folds_to_train() const {
    std::vector<int> chosen;
    for (const auto& index : table_->selectionModel()->selectedRows(Fold))
        if (index.row() < folds_) chosen.push_back(index.row());
    std::sort(chosen.begin(), chosen.end());
    if (!chosen.empty()) return chosen;
    for (int f = 0; f < folds_; ++f)
        if (fold_state(f) != FoldState::Finished) chosen.push_back(f);
    return chosen;
}

void CrossValidationDialog::fill_table() {
    const auto keep = table_->selectionModel()->selectedRows(Fold);
    const QSignalBlocker block(table_);
    table_->setRowCount(folds_);
    const auto* summary = snap_->summary ? &*snap_->summary : nullptr;
    std::vector<std::string> models;
    for (int f = 0; f < folds_; ++f) {
        const auto i = static_cast<std::size_t>(f);
        const project::FoldScore* score = summary && i < summary->per_fold.size() ? &summary->per_fold[i] : nullptr;
        const FoldState state = fold_state(f);
        QString text;
        QColor colour = palette().text().color();
        switch (state) {
        case FoldState::NotStarted: text = tr("not started"); break;
        case FoldState::Training:
            text = tr("training…");
            colour = QColor(31, 90, 180);
            break;
        case FoldState::CutOff: {
            const auto& r = snap_->recipe[i];
            // Where Train picks it up: inside step N's fit (from the autosave), or at step N.
            text = (r.in_fit ? tr("cut off midway (resumable): inside step %1 of %2 (a fit), run #%3")
                             : tr("cut off midway (resumable): %1 of %2 steps done, run #%3"))
                       .arg(r.in_fit ? r.steps_done + 1 : r.steps_done)
                       .arg(r.steps)
                       .arg(r.run);
            if (score && score->run) text += tr("; the scores are of its earlier run");
            colour = QColor(kAmber);
            break;
        }
        case FoldState::Finished:
            text = tr("finished");
            colour = QColor(kGreen);
            break;
        case FoldState::Stale:
            text = tr("stale: run #%1 was made for other folds — train it again").arg(score->stale_run);
            colour = QColor(130, 130, 130);
            break;
        }
        const bool scored = score && score->run;
        if (scored && std::find(models.begin(), models.end(), score->model) == models.end()) models.push_back(score->model);
        table_->setItem(f, Fold, cell(QString::number(f), true));
        table_->setItem(f, Images, cell(score ? QString::number(score->images) : QStringLiteral("-"), true));
        auto* state_item = cell(text);
        state_item->setForeground(colour);
        if (score && !score->missing.empty() && !scored) state_item->setToolTip(QString::fromStdString(score->missing));
        table_->setItem(f, State, state_item);
        table_->setItem(f, Run, cell(scored ? QString("#%1").arg(score->run) : QStringLiteral("-"), true));
        table_->setItem(f, Model, cell(scored ? QString::fromStdString(score->model) : QStringLiteral("-")));
        table_->setItem(f, Accuracy, cell(scored ? score_text(score->accuracy) : QStringLiteral("-"), true));
        table_->setItem(f, LogLoss, cell(scored ? score_text(score->log_loss) : QStringLiteral("-"), true));
    }
    for (const auto& index : keep)
        if (index.row() < folds_) table_->selectRow(index.row());

    // The out-of-fold score, once every fold has its run.
    oof_complete_ = summary && summary->complete();
    oof_accuracy_ = oof_complete_ ? summary->oof->accuracy() : NAN;
    oof_log_loss_ = oof_complete_ ? summary->oof->log_loss() : NAN;
    if (folds_ == 0) {
        score_->setText(tr("Make the folds first."));
    } else if (oof_complete_) {
        score_->setText(tr("<b>Out of fold: %1 images, accuracy %2, log loss %3</b> (every labelled image predicted by the fold "
                           "model that did not train on it)")
                            .arg(summary->oof->records.size())
                            .arg(score_text(oof_accuracy_), score_text(oof_log_loss_)));
    } else {
        const auto missing = summary ? summary->missing_folds() : std::vector<int>{};
        score_->setText(tr("Out of fold: not yet — %1 without a finished run.").arg(folds_words(missing)));
    }
    if (oof_complete_ && models.size() > 1) {
        QStringList names;
        for (const auto& m : models) names << QString::fromStdString(m);
        models_note_->setText(tr("Note: the folds' runs are of different models (%1): train the odd ones again for a fair score "
                                 "(select them in the table, then Train).")
                                  .arg(names.join(", ")));
        models_note_->setVisible(true);
    } else {
        models_note_->clear();
        models_note_->setVisible(false);
    }
    update_buttons();
}

void CrossValidationDialog::update_buttons() {
    const bool mine = job_ != Job::None;
    const bool free = !mine && !train_->busy();
    const QString busy = tr("The learner is busy with another job (see the Train page)");
    const bool has_data = snap_->dataset.has_value();
    for (QWidget* w : std::initializer_list<QWidget*>{k_, seed_, group_, make_button_}) w->setEnabled(free && has_data);
    make_button_->setToolTip(!free       ? busy
                             : folds_ > 0 ? tr("Deal new folds (asks first: the present folds' runs become stale)")
                                          : tr("Deal the labelled images into K stratified folds"));

    const auto to_train = folds_to_train();
    const bool selected = !table_->selectionModel()->selectedRows().isEmpty();
    train_button_->setText(selected ? (to_train.size() == 1 ? tr("&Train the selected fold") : tr("&Train the selected folds"))
                                    : tr("&Train all folds"));
    QString why_not_train;
    if (!free) why_not_train = mine ? tr("A cross-validation job is running") : busy;
    else if (folds_ == 0) why_not_train = tr("Make the folds first");
    else if (!snap_->spec) why_not_train = tr("The project has no learner yet: create one on the Train page");
    else if (to_train.empty()) why_not_train = tr("Every fold has a finished run (select folds to train them again)");
    train_button_->setEnabled(why_not_train.isEmpty());
    train_button_->setToolTip(why_not_train.isEmpty() ? tr("Trains %1 one after another (cut-off ones continue where they stopped)")
                                                            .arg(folds_words(to_train))
                                                      : why_not_train);
    stop_button_->setEnabled(mine);
    recipe_button_->setEnabled(!mine);
    default_recipe_button_->setEnabled(!mine && !recipe_file_.isEmpty());

    const bool has_test = has_data && snap_->dataset->count(data::Split::Test) > 0;
    QString why_not_ensemble;
    if (!free) why_not_ensemble = mine ? tr("A cross-validation job is running") : busy;
    else if (!oof_complete_) why_not_ensemble = tr("Every fold needs a finished run first");
    else if (!has_test) why_not_ensemble = tr("The dataset has no test images to predict (prepare it with its test folder)");
    ensemble_button_->setEnabled(why_not_ensemble.isEmpty());
    ensemble_button_->setToolTip(why_not_ensemble.isEmpty() ? tr("Predict the test set with the K fold models and open the Submit "
                                                                 "page with their average")
                                                            : why_not_ensemble);
    tta_->setEnabled(free);
}

bool CrossValidationDialog::set_recipe_file(const QString& path) {
    if (path.isEmpty()) {
        recipe_file_.clear();
        recipe_text_.clear();
        refresh();
        return true;
    }
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) {
        say(tr("Cannot read the recipe %1: %2").arg(path, file.errorString()), kRed);
        return false;
    }
    const QString text = QString::fromUtf8(file.readAll());
    try {
        train::recipe_steps(text.toStdString());   // a bad recipe is refused now, not after the first fold
    } catch (const std::exception& e) {
        say(tr("%1 is not a recipe: %2").arg(QFileInfo(path).fileName(), QString::fromStdString(e.what())), kRed);
        return false;
    }
    recipe_file_ = path;
    recipe_text_ = text;
    refresh();
    say(tr("The folds train with %1 from now on; a fold cut off with another recipe starts over.").arg(QFileInfo(path).fileName()));
    return true;
}

bool CrossValidationDialog::make_folds() {
    if (job_ != Job::None) return false;
    if (!snap_->dataset) {
        say(snap_->error, kRed);
        return false;
    }
    const int k = k_->value();
    const auto seed = static_cast<qulonglong>(seed_->value());
    const bool group = group_->isChecked();
    // The check the worker's assign_folds makes, at once on a copy (cheap: no images are read),
    // so that "a class with fewer images than K" is said before anything starts.
    try {
        data::Dataset trial = *snap_->dataset;
        data::FoldOptions o;
        o.folds = k;
        o.seed = seed;
        data::assign_folds(trial, o);
    } catch (const UserError& e) {
        // Core's hint names whisker-cli's option; here the K box is the option.
        QString message = message_of(e);
        message.replace("use --folds ", tr("set K to "));
        say(tr("Cannot deal %1 folds: %2").arg(k).arg(message), kRed);
        return false;
    }
    if (folds_ > 0) {
        const QString question =
            tr("Deal the labelled images into %1 new folds?\n\nThe runs of the present %2 folds stay in the Runs page, but they "
               "become stale: their out-of-fold predictions belong to the old folds, so the out-of-fold score starts over and "
               "every fold trains again.")
                .arg(k)
                .arg(folds_);
        if (!confirm_(question)) {
            say(tr("The folds are as they were."));
            return false;
        }
    }
    if (!train_->run_on_worker(tr("Dealing the folds…"), [k, seed, group](TrainingWorker* w) { w->make_folds(k, seed, group); })) {
        say(tr("The learner is busy with another job (see the Train page): wait for it, or stop it, and try again."), kRed);
        return false;
    }
    job_ = Job::Folds;
    progress_->setVisible(true);
    progress_->setRange(0, 0);
    say(group ? tr("Finding near-duplicates, then dealing %1 folds…").arg(k) : tr("Dealing %1 folds…").arg(k));
    update_buttons();
    Q_EMIT log(tr("Dealing the labelled images into %1 cross-validation folds (seed %2%3)")
                   .arg(k)
                   .arg(seed)
                   .arg(group ? tr(", near-duplicates kept together") : QString()));
    return true;
}

bool CrossValidationDialog::train_folds() {
    if (job_ != Job::None) return false;
    refresh();   // the states as they are now (another program may have trained a fold)
    if (!train_button_->isEnabled()) {
        say(train_button_->toolTip() + ".", kRed);
        return false;
    }
    const auto folds = folds_to_train();
    const QString recipe = QString::fromStdString(snap_->recipe_json);
    const QVector<int> list(folds.begin(), folds.end());
    if (!train_->run_on_worker(tr("Training the cross-validation folds…"),
                               [recipe, list](TrainingWorker* w) { w->train_folds(recipe, list); })) {
        say(tr("The learner is busy with another job (see the Train page): wait for it, or stop it, and try again."), kRed);
        return false;
    }
    job_ = Job::Train;
    training_fold_ = -1;
    progress_->setVisible(true);
    progress_->setRange(0, 0);
    say(tr("Training %1…").arg(folds_words(folds)));
    update_buttons();
    Q_EMIT log(tr("Cross-validation: training %1 of %2").arg(folds_words(folds)).arg(folds_));
    return true;
}

void CrossValidationDialog::stop() {
    if (job_ == Job::None) return;
    train_->worker()->request_stop();   // atomic: the worker sees it before the next batch
    say(job_ == Job::Train ? tr("Stopping at the next batch; the fold continues from there next time…") : tr("Stopping…"), kAmber);
}

bool CrossValidationDialog::ensemble_folds() {
    if (job_ != Job::None) return false;
    refresh();
    if (!ensemble_button_->isEnabled()) {
        say(ensemble_button_->toolTip() + ".", kRed);
        return false;
    }
    EnsembleRequest request;
    request.folds = true;
    request.tta = tta_->value();
    request.id = request_id_ = (1 << 20) + (request_id_ & 0xfffff) + 1;   // apart from the Ensemble dialog's
    if (!train_->run_on_worker(tr("Ensembling the folds…"), [request](TrainingWorker* w) { w->ensemble(request); })) {
        say(tr("The learner is busy with another job (see the Train page): wait for it, or stop it, and try again."), kRed);
        return false;
    }
    job_ = Job::Ensemble;
    ensemble_ready_ = false;
    progress_->setVisible(true);
    progress_->setRange(0, 0);
    say(tr("Predicting the test set with the %1 fold models…").arg(folds_));
    update_buttons();
    Q_EMIT log(tr("Ensembling the %1 cross-validation folds' models (TTA %2)").arg(folds_).arg(request.tta));
    return true;
}

}  // namespace whisker::ui
