#include "submit_page.h"

#include "background_job.h"
#include "train_page.h"

#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/kaggle/client.h"
#include "whisker/kaggle/credentials.h"
#include "whisker/kaggle/submission_check.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/project/project_lock.h"
#include "whisker/project/runs.h"

#include "qcustomplot_include.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDesktopServices>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QUrl>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <memory>

namespace fs = std::filesystem;

namespace whisker::ui {

// A label whose lines are each elided in the middle to its width (paths keep their start and
// their file name), the whole text in its tooltip: it never widens its column, and nothing is
// cut mid-glyph when the column is narrow.
class ElidingLabel : public QLabel {
public:
    ElidingLabel() {
        setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
        setMinimumWidth(80);
    }
    void set_full_text(const QString& text) {
        full_ = text;
        setToolTip(text);
        elide();
    }
    const QString& full_text() const { return full_; }
    QSize sizeHint() const override {
        const QFontMetrics fm(font());
        int width = 0;
        for (const QString& line : full_.split('\n')) width = std::max(width, fm.horizontalAdvance(line));
        return {width, fm.lineSpacing() * static_cast<int>(full_.count('\n') + 1)};
    }
    QSize minimumSizeHint() const override { return {80, sizeHint().height()}; }

protected:
    void resizeEvent(QResizeEvent* event) override {
        QLabel::resizeEvent(event);
        elide();
    }

private:
    void elide() {
        const QFontMetrics fm(font());
        QStringList lines = full_.split('\n');
        for (QString& line : lines) line = fm.elidedText(line, Qt::ElideMiddle, std::max(20, contentsRect().width()));
        QLabel::setText(lines.join('\n'));
    }
    QString full_;
};

namespace {
QString qstr(const std::string& s) { return QString::fromStdString(s); }
QString qstr(const fs::path& p) { return QString::fromStdString(p.string()); }

QTableWidgetItem* cell(const QString& text) {
    auto* item = new QTableWidgetItem(text);
    item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
    return item;
}

// What the submit job hands back to the UI thread.
struct SubmitOutcome {
    kaggle::SubmissionRecord record;
    kaggle::Submission result;
};

// "weights/data" -> "data".
QString data_part(const QString& state) { return state.section('/', 1); }

// The run whose weights made predictions of learner state `state` when the predictions do
// not say (a recipe's): the newest fit or recipe that ended in that state.
int run_of_state(const fs::path& project, const QString& state) {
    const std::string weights = state.section('/', 0, 0).toStdString();
    if (weights.empty()) return 0;
    const auto runs = project::list_runs(project);
    for (auto r = runs.rbegin(); r != runs.rend(); ++r)
        if ((r->kind == project::RunKind::Fit || r->kind == project::RunKind::Recipe) && r->end_state == weights) return r->number;
    return 0;
}
}  // namespace

SubmitPage::SubmitPage(TrainPage* train, QWidget* parent) : QWidget(parent), train_(train) {
    job_ = new BackgroundJob(this);

    // ---- predict ----
    tta_ = new QSpinBox;
    tta_->setObjectName("submitTta");
    tta_->setRange(0, 32);
    tta_->setValue(4);
    tta_->setSpecialValueText(tr("none"));
    tta_->setSuffix(tr(" augmented passes"));
    tta_->setToolTip(tr("Test-time augmentation: predictions on this many augmented copies of each image, besides the plain one"));
    mix_ = new QComboBox;
    mix_->addItems({tr("mean of all passes (fastai 0.7)"), tr("0.75 × augmented + 0.25 × plain (fastai v2)")});
    ema_ = new QCheckBox(tr("With the weight EMA"));
    ema_->setObjectName("submitEma");
    ema_->setToolTip(tr("Predict with the exponential moving average of the weights that the latest fit kept "
                        "(Weight EMA on the Train page)"));
    ema_->setEnabled(false);
    predict_button_ = new QPushButton(tr("&Predict the test set"));
    predict_button_->setObjectName("submitPredict");
    predictions_label_ = new QLabel(tr("No test predictions yet."));
    predictions_label_->setWordWrap(true);
    auto* predict_box = new QGroupBox(tr("1. Predict"));
    auto* pf = new QFormLayout(predict_box);
    pf->addRow(tr("TTA"), tta_);
    pf->addRow(tr("Mix"), mix_);
    pf->addRow(QString(), ema_);
    pf->addRow(predict_button_);
    pf->addRow(predictions_label_);

    // ---- the file ----
    clip_ = new QDoubleSpinBox;
    clip_->setObjectName("clipBox");
    clip_->setDecimals(4);
    clip_->setRange(0, 0.49);
    clip_->setSingleStep(0.005);
    clip_->setSpecialValueText(tr("no clipping"));
    clip_->setToolTip(tr("Clip probabilities to [c, 1 − c]: one confident mistake costs far less log loss"));
    labels_ = new QCheckBox(tr("Class names instead of probabilities"));
    export_button_ = new QPushButton(tr("&Export…"));
    export_button_->setToolTip(tr("Save the submission as .csv or .csv.gz"));
    check_label_ = new QLabel;
    check_label_->setObjectName("checkLabel");
    check_label_->setWordWrap(true);
    check_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* file_box = new QGroupBox(tr("2. The file"));
    auto* ff = new QFormLayout(file_box);
    ff->addRow(tr("Clip"), clip_);
    ff->addRow(labels_);
    ff->addRow(export_button_);
    ff->addRow(check_label_);

    // ---- submit ----
    competition_ = new QLineEdit;
    competition_->setObjectName("competitionEdit");
    competition_->setPlaceholderText(tr("e.g. dogs-vs-cats-redux-kernels-edition"));
    message_ = new QLineEdit;
    message_->setObjectName("messageEdit");
    message_->setPlaceholderText(tr("What is new in this submission"));
    account_label_ = new ElidingLabel;
    account_label_->setObjectName("kaggleAccountLabel");
    account_label_->setTextFormat(Qt::PlainText);
    account_button_ = new QPushButton(tr("Kaggle &account…"));
    submit_button_ = new QPushButton(tr("&Submit to Kaggle"));
    submit_button_->setObjectName("submitButton");
    // Why Submit is disabled, where the user looks (not only in the button's tooltip).
    submit_note_ = new QLabel;
    submit_note_->setObjectName("submitNote");
    submit_note_->setWordWrap(true);
    submit_note_->setStyleSheet("color: #a05a00");
    submit_note_->setVisible(false);
    progress_ = new QProgressBar;
    progress_->setRange(0, 1000);
    progress_->setVisible(false);
    state_label_ = new QLabel;
    state_label_->setWordWrap(true);
    score_label_ = new QLabel;
    score_label_->setObjectName("scoreLabel");
    QFont big = score_label_->font();
    big.setPointSizeF(big.pointSizeF() * 1.4);
    big.setBold(true);
    score_label_->setFont(big);
    auto* submit_box = new QGroupBox(tr("3. Submit"));
    auto* sf = new QFormLayout(submit_box);
    sf->addRow(tr("Competition"), competition_);
    sf->addRow(tr("Message"), message_);
    sf->addRow(tr("Account"), account_button_);
    sf->addRow(account_label_);
    sf->addRow(submit_button_);
    sf->addRow(submit_note_);
    sf->addRow(progress_);
    sf->addRow(state_label_);
    sf->addRow(score_label_);

    // ---- preview and history ----
    preview_ = new QTableWidget;
    preview_->setObjectName("submissionPreview");
    preview_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    preview_->verticalHeader()->setVisible(false);
    rows_label_ = new QLabel;
    rows_label_->setObjectName("rowsLabel");
    members_label_ = new QLabel;
    members_label_->setObjectName("ensembleMembers");
    members_label_->setWordWrap(true);
    members_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    members_label_->setVisible(false);
    histogram_ = new QCustomPlot;
    histogram_->setObjectName("probabilityHistogram");
    histogram_->setMinimumHeight(150);
    histogram_->xAxis->setLabel(tr("probability"));
    histogram_->yAxis->setLabel(tr("images"));
    // Counts: whole-number ticks only.
    QSharedPointer<QCPAxisTickerFixed> whole(new QCPAxisTickerFixed);
    whole->setTickStep(1);
    whole->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    histogram_->yAxis->setTicker(whole);
    histogram_->xAxis->setRange(0, 1);   // probabilities, also before there are any
    histogram_->yAxis->setRange(0, 5);
    auto* bars = new QCPBars(histogram_->xAxis, histogram_->yAxis);
    bars->setWidth(0.045);
    bars->setPen(QPen(QColor(30, 60, 200)));
    bars->setBrush(QColor(80, 120, 230, 160));
    history_ = new QTableWidget(0, 8);
    history_->setObjectName("submissionHistory");
    history_->setHorizontalHeaderLabels(
        {tr("date"), tr("status"), tr("public"), tr("private"), tr("message"), tr("model"), tr("checkpoint"), tr("run")});
    history_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    // The long ones keep a sensible width (the whole text is in their tooltip).
    for (int column : {5, 6}) {
        history_->horizontalHeader()->setSectionResizeMode(column, QHeaderView::Interactive);
        history_->setColumnWidth(column, 190);
    }
    history_->horizontalHeader()->setStretchLastSection(true);
    history_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    history_->verticalHeader()->setVisible(false);
    refresh_button_ = new QPushButton(tr("&Refresh scores from Kaggle"));

    auto* left = new QWidget;
    auto* ll = new QVBoxLayout(left);
    ll->setContentsMargins(0, 0, 0, 0);
    ll->addWidget(predict_box);
    ll->addWidget(file_box);
    ll->addWidget(submit_box);
    ll->addStretch(1);
    auto* preview_box = new QGroupBox(tr("Preview"));
    auto* pl = new QVBoxLayout(preview_box);
    auto* preview_split = new QHBoxLayout;
    preview_split->addWidget(preview_, 1);
    preview_split->addWidget(histogram_, 1);
    pl->addWidget(rows_label_);
    pl->addWidget(members_label_);
    pl->addLayout(preview_split, 1);
    auto* history_box = new QGroupBox(tr("This project's submissions"));
    auto* hl = new QVBoxLayout(history_box);
    hl->addWidget(history_, 1);
    hl->addWidget(refresh_button_, 0, Qt::AlignRight);
    auto* right = new QSplitter(Qt::Vertical);
    right->addWidget(preview_box);
    right->addWidget(history_box);
    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 2);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(split);

    // ---- wiring ----
    connect(predict_button_, &QPushButton::clicked, this, [this] {
        if (!predict())
            QMessageBox::information(this, tr("Busy"), tr("The learner is busy (see the Train page): wait for it, or stop it."));
    });
    connect(clip_, &QDoubleSpinBox::valueChanged, this, &SubmitPage::rewrite_submission);
    connect(labels_, &QCheckBox::toggled, this, &SubmitPage::rewrite_submission);
    connect(export_button_, &QPushButton::clicked, this, [this] {
        const QString file = QFileDialog::getSaveFileName(this, tr("Export the submission"), qstr(project_ / "submission.csv.gz"),
                                                          tr("Submissions (*.csv *.csv.gz *.gz)"));
        if (!file.isEmpty()) export_to(file);
    });
    connect(account_button_, &QPushButton::clicked, this, [this] { open_credentials_dialog(); });
    connect(submit_button_, &QPushButton::clicked, this, &SubmitPage::submit);
    connect(refresh_button_, &QPushButton::clicked, this, &SubmitPage::refresh_history);
    connect(competition_, &QLineEdit::textChanged, this, &SubmitPage::update_buttons);
    connect(job_, &BackgroundJob::progressed, this, [this](const QString& stage, qulonglong done, qulonglong total) {
        progress_->setVisible(true);
        progress_->setRange(0, total ? 1000 : 0);
        if (total) progress_->setValue(static_cast<int>(1000.0 * static_cast<double>(done) / static_cast<double>(total)));
        state_label_->setText(stage);
        Q_EMIT progress_changed(stage, static_cast<qlonglong>(done), static_cast<qlonglong>(total));
    });
    connect(job_, &BackgroundJob::failed, this, [this](const QString& name, const QString& message) {
        state_label_->setText(tr("%1 failed").arg(name));
        Q_EMIT log(tr("%1 failed: %2").arg(name, message));
        QMessageBox::warning(this, tr("%1 failed").arg(name), message);
    });
    connect(job_, &BackgroundJob::finished, this, [this] {
        progress_->setVisible(false);
        update_buttons();
        Q_EMIT busy_changed(false);
    });
    TrainingWorker* worker = train_->worker();
    connect(worker, &TrainingWorker::predictions_ready, this, [this](const PredictionSet& p) {
        if (p.split == static_cast<int>(data::Split::Test) && fs::path(p.project.toStdString()) == project_) show_predictions(p);
    });
    connect(worker, &TrainingWorker::session_changed, this, &SubmitPage::show_session);
    connect(message_, &QLineEdit::textEdited, this, [this](const QString& text) {
        if (!project_.empty()) QSettings().setValue("submit/message/" + qstr(project_), text);
    });
    update_account_label();
    update_buttons();
}

void SubmitPage::set_project(const fs::path& project) {
    project_ = project;
    predictions_ = {};
    seen_session_test_.reset();
    learner_state_.clear();
    has_learner_ = false;
    ema_->setEnabled(false);
    ema_->setChecked(false);
    // The message is the project's own (remembered per project).
    message_->setText(QSettings().value("submit/message/" + qstr(project)).toString());
    check_ok_ = false;
    preview_->clear();
    preview_->setRowCount(0);
    preview_->setColumnCount(0);
    rows_label_->clear();
    members_label_->clear();
    members_label_->setVisible(false);
    check_label_->clear();
    score_label_->clear();
    state_label_->clear();
    predictions_label_->setText(tr("No test predictions yet."));
    static_cast<QCPBars*>(histogram_->plottable(0))->data()->clear();
    histogram_->replot();
    try {
        const auto history = kaggle::SubmissionHistory::load(project);
        competition_->setText(qstr(history.competition.empty() ? suggested_competition().toStdString() : history.competition));
    } catch (const std::exception& e) {
        Q_EMIT log(QString::fromStdString(e.what()));
    }
    fill_history();
    update_account_label();
    update_buttons();
}

void SubmitPage::show_session(const SessionView& v) {
    if (v.project.isEmpty() || fs::path(v.project.toStdString()) != project_) return;
    learner_state_ = v.state;
    has_learner_ = v.has_learner;
    ema_->setEnabled(v.has_ema);
    if (!v.has_ema) ema_->setChecked(false);
    const PredictionSet& p = v.test;
    // New test predictions of the session replace what is shown; the same ones again do not
    // (an ensemble sent here stays until the learner predicts anew).
    if (p.valid() && p.predictions != seen_session_test_) {
        seen_session_test_ = p.predictions;
        if (!predictions_.valid() || p.predictions != predictions_.predictions) {
            show_predictions(p);
            return;
        }
    }
    if (predictions_.valid() && !predictions_current()) {
        check_ok_ = false;
        predictions_label_->setText(tr("<b>These test predictions came from an earlier state of the learner</b> (it was trained, "
                                       "loaded or replaced since): predict the test set again to write or send a submission."));
    }
    update_buttons();
}

QString SubmitPage::suggested_competition() const {
    // A dataset downloaded from Kaggle lies in PROJECT/download/<competition>.zip.
    try {
        if (!data::Dataset::exists(project_)) return {};
        const auto d = data::Dataset::load(project_);
        const fs::path source = d.source;
        if (source.extension() == ".zip" && source.parent_path().filename() == "download") return qstr(source.stem().string());
    } catch (const std::exception&) {
    }
    return {};
}

bool SubmitPage::predict() {
    if (project_.empty()) return false;
    if (!train_->has_learner()) return false;
    const int tta = tta_->value(), mix = mix_->currentIndex();
    const bool ema = ema_->isEnabled() && ema_->isChecked();
    const bool started = train_->run_on_worker(tr("Predicting the test set…"), [tta, mix, ema](TrainingWorker* w) {
        w->predict(static_cast<int>(data::Split::Test), tta, mix, ema);
    });
    if (started) Q_EMIT log(tr("Predicting the test set%1").arg(tta ? tr(" with TTA (%1 augmented passes)").arg(tta) : ""));
    return started;
}

bool SubmitPage::predictions_current() const {
    if (!predictions_.valid()) return false;
    if (predictions_.is_ensemble()) return !learner_state_.isEmpty() && data_part(predictions_.state) == data_part(learner_state_);
    return predictions_.state == learner_state_;
}

QString SubmitPage::model_label_text() const { return predictions_label_->text(); }

QString SubmitPage::model_description() const {
    if (!predictions_.valid()) return {};
    QString s = predictions_.model;
    if (predictions_.tta) s += tr(", TTA ×%1 (%2)").arg(predictions_.tta).arg(predictions_.mix ? "beta" : "mean");
    if (clip_->value() > 0) s += tr(", clipped at %1").arg(clip_->value());
    return s;
}

void SubmitPage::show_predictions(const PredictionSet& p) {
    predictions_ = p;
    score_label_->clear();
    members_label_->setVisible(p.is_ensemble());
    if (p.is_ensemble()) {
        // The members (beside the preview, where there is room), and the ensemble's validation
        // score as its run recorded it.
        QString score;
        if (const auto run = project::read_run(project_, p.run))
            if (const auto v = run->validation())
                score = tr(": validation log loss %1, accuracy %2").arg(v->log_loss, 0, 'f', 4).arg(v->accuracy, 0, 'f', 4);
        QStringList members;
        for (const auto& m : p.members) members << m.toHtmlEscaped();
        members_label_->setText(tr("<b>%1</b>%2. Members: %3.")
                                    .arg(model_description().toHtmlEscaped(), score, members.join(" &nbsp;·&nbsp; ")));
        predictions_label_->setText(tr("%1 test images predicted by ensemble #%2 (its members are beside the preview).")
                                        .arg(p.predictions->records.size())
                                        .arg(p.run));
    } else {
        members_label_->clear();
        predictions_label_->setText(tr("%1 test images predicted with %2.").arg(p.predictions->records.size()).arg(model_description()));
    }
    labels_->setEnabled(true);
    rewrite_submission();
    Q_EMIT log(tr("Test predictions ready: %1 images").arg(p.predictions->records.size()));
}

void SubmitPage::rewrite_submission() {
    if (!predictions_.valid()) return;
    if (!predictions_current()) {   // never a file from a learner state that is gone
        check_ok_ = false;
        update_buttons();
        return;
    }
    try {
        // The project is written: not while another program does.
        const auto lock = project::ProjectLock::acquire(project_, "write submission");
        // The same call, with the same settings, as `whisker-cli predict` makes.
        train::write_submission(submission_file(), *predictions_.dataset, *predictions_.predictions, clip_->value(),
                                labels_->isChecked());
    } catch (const std::exception& e) {
        check_ok_ = false;
        check_label_->setText(tr("Cannot write %1: %2").arg(qstr(submission_file()), qstr(std::string(e.what()))));
        update_buttons();
        return;
    }
    fill_preview();
    fill_histogram();
    run_checks();
    update_buttons();
}

void SubmitPage::fill_preview() {
    const auto all = parse_csv(read_file(submission_file()));
    const std::size_t count = all.empty() ? 0 : all.size() - 1;
    std::vector<CsvRow> rows(all.begin(), all.begin() + static_cast<long>(std::min<std::size_t>(all.size(), 21)));
    preview_->clear();
    if (rows.empty()) return;
    preview_->setColumnCount(static_cast<int>(rows[0].size()));
    QStringList head;
    for (const auto& h : rows[0]) head << qstr(h);
    preview_->setHorizontalHeaderLabels(head);
    preview_->setRowCount(static_cast<int>(rows.size()) - 1);
    for (std::size_t r = 1; r < rows.size(); ++r)
        for (std::size_t c = 0; c < rows[r].size() && c < rows[0].size(); ++c)
            preview_->setItem(static_cast<int>(r) - 1, static_cast<int>(c), cell(qstr(rows[r][c])));
    preview_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    rows_label_->setText(tr("%1 — %2 rows (first %3 shown)").arg(qstr(submission_file())).arg(count).arg(rows.size() - 1));
}

void SubmitPage::fill_histogram() {
    // Two classes: P(second class) as in the file; more: each image's highest probability.
    const auto& p = *predictions_.predictions;
    const std::vector<float> probs = p.probability_matrix();
    const int c = p.num_classes();
    const double clip = clip_->value();
    QVector<double> keys(20), counts(20, 0.0);
    for (int b = 0; b < 20; ++b) keys[b] = 0.025 + 0.05 * b;
    for (std::size_t r = 0; r < p.records.size(); ++r) {
        double v = 0;
        if (c == 2) v = probs[r * 2 + 1];
        else
            for (int k = 0; k < c; ++k) v = std::max(v, static_cast<double>(probs[r * static_cast<std::size_t>(c) + static_cast<std::size_t>(k)]));
        if (clip > 0) v = std::clamp(v, clip, 1 - clip);
        counts[std::clamp(static_cast<int>(v * 20), 0, 19)] += 1;
    }
    auto* bars = static_cast<QCPBars*>(histogram_->plottable(0));
    bars->setData(keys, counts, true);
    histogram_->xAxis->setLabel(c == 2 ? tr("P(%1)").arg(qstr(predictions_.dataset->classes[1])) : tr("highest probability per image"));
    histogram_->xAxis->setRange(0, 1);
    histogram_->yAxis->setRange(0, *std::max_element(counts.begin(), counts.end()) * 1.1 + 1);
    histogram_->replot(QCustomPlot::rpQueuedReplot);
}

void SubmitPage::run_checks() {
    const auto& d = *predictions_.dataset;
    has_sample_ = !d.sample_submission.empty() && fs::exists(project_ / d.sample_submission);
    if (!has_sample_) {
        check_ok_ = true;
        check_label_->setStyleSheet("color: #b35900");
        check_label_->setText(tr("No sample_submission.csv came with the data: the file's shape cannot be checked before it is sent."));
        return;
    }
    const auto check = kaggle::check_submission(submission_file(), project_ / d.sample_submission);
    check_ok_ = check.ok();
    if (check_ok_) {
        check_label_->setStyleSheet("color: #1e7a1e");
        check_label_->setText(tr("✓ Matches sample_submission.csv: same header, every id once (%1 rows), values in [0, 1].").arg(check.rows));
    } else {
        check_label_->setStyleSheet("color: #b00020");
        check_label_->setText(tr("✗ Does not match sample_submission.csv — nothing will be sent:\n%1").arg(qstr(check.summary())));
    }
}

bool SubmitPage::export_to(const QString& file) {
    if (!predictions_current()) return false;
    try {
        train::write_submission(file.toStdString(), *predictions_.dataset, *predictions_.predictions, clip_->value(),
                                labels_->isChecked());
    } catch (const std::exception& e) {
        QMessageBox::warning(this, tr("Cannot export"), qstr(std::string(e.what())));
        return false;
    }
    Q_EMIT log(tr("Exported the submission to %1").arg(file));
    return true;
}

QLabel* SubmitPage::account_label() const { return account_label_; }

void SubmitPage::update_account_label() {
    try {
        const auto c = kaggle::find_credentials();
        if (!c) {
            account_label_->set_full_text(tr("Not set up: you will be asked for your API key."));
            return;
        }
        // Who, then where from on a line of its own (a path does not wrap): "~" for the home folder.
        QString source = qstr(c->source);
        const QString home = QDir::homePath();
        if (!home.isEmpty() && home != "/" && source.startsWith(home + "/")) source = "~" + source.mid(home.size());
        account_label_->set_full_text(c->is_token ? tr("An access token\nfrom %1").arg(source)
                                                  : tr("User %1\nfrom %2").arg(qstr(c->username), source));
    } catch (const std::exception& e) {
        account_label_->set_full_text(qstr(std::string(e.what())));
    }
}

void SubmitPage::update_buttons() {
    const bool busy = job_->busy();
    predict_button_->setEnabled(!project_.empty());
    const bool current = predictions_current();
    predict_button_->setEnabled(!project_.empty() && has_learner_);
    export_button_->setEnabled(current);
    const bool named = !competition_->text().trimmed().isEmpty();
    submit_button_->setEnabled(!busy && current && check_ok_ && named);
    // Why not, in a line that fits the column at 1280x720 (under the button) and in full (its tooltip).
    QString why_not, in_full;
    if (!predictions_.valid()) {
        why_not = tr("Predict the test set first (1. Predict).");
        in_full = tr("Predict the test set first");
    } else if (!current) {
        why_not = tr("The learner changed: predict again.");
        in_full = tr("The learner changed since these predictions: predict again");
    } else if (!check_ok_) {
        why_not = tr("The file does not pass its checks (2. The file).");
        in_full = tr("The file does not match sample_submission.csv");
    } else if (!named) {
        why_not = tr("No Kaggle competition yet: name it above.");
        in_full = tr("This project has no Kaggle competition yet: type its name above, the last part of its address "
                     "(kaggle.com/competitions/NAME)");
    }
    submit_button_->setToolTip(why_not.isEmpty() ? tr("Upload and wait for the score") : in_full);
    // While a submission runs, the progress and state below say what happens instead.
    submit_note_->setText(why_not);
    submit_note_->setToolTip(in_full);
    submit_note_->setVisible(!busy && !why_not.isEmpty());
    refresh_button_->setEnabled(!busy && !competition_->text().trimmed().isEmpty());
    clip_->setEnabled(current);
    labels_->setEnabled(current);
}

QDialog* SubmitPage::open_credentials_dialog() {
    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setObjectName("credentialsDialog");
    dialog->setWindowTitle(tr("Kaggle account"));
    dialog->setMinimumWidth(540);
    auto* help = new QLabel(tr("Whisker talks to Kaggle with your API key, like the official <tt>kaggle</tt> tool.<br><br>"
                               "1. Sign in at <a href=\"https://www.kaggle.com/settings\">kaggle.com/settings</a>.<br>"
                               "2. Under <b>API</b>, choose <b>Create New Token</b>: your browser downloads <tt>kaggle.json</tt>.<br>"
                               "3. Load that file below, or type the username and key it holds.<br><br>"
                               "The key is saved in <tt>%1</tt>, readable only by you, and never shown or logged.<br>"
                               "You must also accept the competition's rules on its page before downloading or submitting.")
                                .arg(qstr(kaggle::config_dir() / "kaggle.json")));
    help->setTextFormat(Qt::RichText);
    help->setOpenExternalLinks(true);
    help->setWordWrap(true);
    auto* user = new QLineEdit;
    user->setObjectName("kaggleUsername");
    auto* key = new QLineEdit;
    key->setObjectName("kaggleKey");
    key->setEchoMode(QLineEdit::Password);
    // The account already set up, if any (its key is never shown: it stays as it is unless
    // replaced).
    auto* current = new QLabel;
    current->setObjectName("kaggleCurrentAccount");
    current->setWordWrap(true);
    try {
        if (const auto c = kaggle::find_credentials()) {
            current->setText(tr("Now using: %1").arg(qstr(c->describe())));
            user->setText(qstr(c->username));
            key->setPlaceholderText(tr("(kept as it is: type a new key to replace it)"));
        } else {
            current->setText(tr("No Kaggle account is set up yet."));
        }
    } catch (const std::exception& e) {
        current->setText(qstr(std::string(e.what())));
    }
    auto* load = new QPushButton(tr("&Load kaggle.json…"));
    connect(load, &QPushButton::clicked, dialog, [dialog, user, key] {
        const QString file = QFileDialog::getOpenFileName(dialog, tr("kaggle.json from Kaggle"), {}, tr("kaggle.json (*.json)"));
        if (file.isEmpty()) return;
        try {
            const auto j = nlohmann::json::parse(read_file(file.toStdString()));
            user->setText(qstr(j.at("username").get<std::string>()));
            key->setText(qstr(j.at("key").get<std::string>()));
        } catch (const std::exception&) {
            QMessageBox::warning(dialog, tr("Not a kaggle.json"), tr("The file should hold {\"username\": …, \"key\": …}."));
        }
    });
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Save | QDialogButtonBox::Cancel);
    connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::reject);
    connect(buttons, &QDialogButtonBox::accepted, dialog, [this, dialog, user, key] {
        if (key->text().trimmed().isEmpty()) {
            // The account in use, unchanged: nothing to save.
            try {
                const auto c = kaggle::find_credentials();
                if (c && !c->is_token && qstr(c->username) == user->text().trimmed()) {
                    dialog->accept();
                    return;
                }
            } catch (const std::exception&) {
            }
        }
        if (user->text().trimmed().isEmpty() || key->text().trimmed().isEmpty()) {
            QMessageBox::warning(dialog, tr("Kaggle account"), tr("Give both the username and the key."));
            return;
        }
        try {
            const auto file = kaggle::write_kaggle_json(user->text().trimmed().toStdString(), key->text().trimmed().toStdString());
            Q_EMIT log(tr("Saved the Kaggle credentials of %1 to %2").arg(user->text().trimmed(), qstr(file)));
        } catch (const std::exception& e) {
            QMessageBox::warning(dialog, tr("Cannot save kaggle.json"), qstr(std::string(e.what())));
            return;
        }
        update_account_label();
        dialog->accept();
    });
    auto* form = new QFormLayout;
    form->addRow(tr("Username"), user);
    form->addRow(tr("API key"), key);
    form->addRow(load);
    auto* l = new QVBoxLayout(dialog);
    l->addWidget(help);
    l->addWidget(current);
    l->addLayout(form);
    l->addWidget(buttons);
    dialog->show();
    return dialog;
}

bool SubmitPage::submit() {
    if (!predictions_current() || !check_ok_ || job_->busy()) return false;
    project::ProjectLock lock;
    try {
        lock = project::ProjectLock::acquire(project_, "submit");
    } catch (const UserError& e) {
        QMessageBox::warning(this, tr("Cannot submit now"), qstr(std::string(e.what())) + "\n\n" + qstr(e.hint()));
        return false;
    }
    const std::string competition = competition_->text().trimmed().toStdString();
    if (competition.empty()) return false;
    if (!kaggle::find_credentials()) {
        QDialog* dialog = open_credentials_dialog();
        dialog->hide();
        if (dialog->exec() != QDialog::Accepted || !kaggle::find_credentials()) return false;
    }
    // Keep the exact bytes that are sent, and the model they came from.
    const std::string stamp = kaggle::local_timestamp();
    std::string compact = stamp;
    compact.erase(std::remove_if(compact.begin(), compact.end(), [](char ch) { return ch == '-' || ch == ':'; }), compact.end());
    std::replace(compact.begin(), compact.end(), ' ', '-');
    const fs::path kept = project_ / "submissions" / ("submission-" + compact + ".csv");
    try {
        fs::create_directories(kept.parent_path());
        write_file_atomically(kept, read_file(submission_file()));
    } catch (const std::exception& e) {
        QMessageBox::warning(this, tr("Cannot keep a copy"), qstr(std::string(e.what())));
        return false;
    }
    kaggle::SubmissionRecord record;
    record.date = stamp;
    record.file = fs::relative(kept, project_).string();
    record.message = message_->text().trimmed().isEmpty() ? "Whisker: " + model_description().toStdString()
                                                          : message_->text().trimmed().toStdString();
    record.model = model_description().toStdString();
    record.status = "UPLOADING";
    record.source_run = predictions_.run ? predictions_.run : run_of_state(project_, predictions_.state);
    for (const auto& m : predictions_.members) record.members.push_back(m.toStdString());
    if (predictions_.is_ensemble()) {
        // Its members' checkpoints are the model (run-NNNN and snapshots are kept as they are).
    } else if (predictions_current()) {
        const QString name = QString("submission-%1").arg(qstr(compact));
        if (train_->run_on_worker(tr("Saving the checkpoint %1…").arg(name), [name](TrainingWorker* w) { w->save(name); }))
            record.checkpoint = name.toStdString();
    }
    if (record.checkpoint.empty() && !predictions_.is_ensemble()) record.model += " (no checkpoint: the learner changed or was busy)";

    // The submission is a run of the project: the kept file and its SHA-256, the run the
    // predictions came from, the message and Kaggle's verdict, written as each arrives. The
    // job's thread owns the recorder from here on.
    auto run = std::make_shared<project::RunRecorder>(project_, "whisker");
    project::RunKaggle sent{competition, record.message, {}, record.status, {}, {}, {}};
    try {
        record.run = run->begin(project::RunKind::Submission, *predictions_.dataset,
                                "whisker (workbench): submit to " + competition + ": " + record.message);
        run->set_device("Kaggle");
        run->set_parent(record.source_run);
        run->set_submission(kept);
        run->set_kaggle(sent);
    } catch (const std::exception& e) {
        Q_EMIT log(tr("Cannot record the submission as a run: %1").arg(qstr(std::string(e.what()))));
    }

    auto history = kaggle::SubmissionHistory::load(project_);
    history.competition = competition;
    history.upsert(record);
    history.save(project_);
    fill_history();

    const fs::path project = project_;
    const double poll = poll_interval_;
    auto outcome = std::make_shared<SubmitOutcome>();
    outcome->record = record;
    score_label_->clear();
    const bool started = job_->start(tr("Submitting to Kaggle"), [outcome, competition, kept, poll, project, run,
                                                                   sent](const ProgressFn& progress, const std::atomic<bool>& cancel) mutable {
        auto& r = outcome->record;
        auto verdict = [&] {
            sent.ref = r.ref;
            sent.status = r.status;
            sent.public_score = r.public_score;
            sent.private_score = r.private_score;
            sent.error = r.error;
            run->set_kaggle(sent);
        };
        try {
            const auto held = project::ProjectLock::acquire(project, "submit");
            kaggle::ClientOptions co;
            co.cancel = &cancel;
            co.poll_interval_seconds = poll;
            kaggle::Client client(kaggle::require_credentials(), co);
            try {
                r.ref = client.submit(competition, kept, r.message, [&](const Progress& p) {
                    progress({"Uploading " + kept.filename().string(), p.done, p.total});
                });
            } catch (...) {
                r.status = "UPLOAD FAILED";
                throw;
            }
            r.status = "PENDING";
            verdict();
            progress({"Submitted; waiting for Kaggle to score it (PENDING)", 0, 0});
            outcome->result = client.wait_for_result(competition, r.ref, r.message, [&](const kaggle::Submission& s) {
                progress({"Kaggle: " + s.status, 0, 0});
            });
            r.status = outcome->result.status;
            r.public_score = outcome->result.public_score;
            r.private_score = outcome->result.private_score;
            r.error = outcome->result.error_description;
            if (r.ref.empty()) r.ref = outcome->result.ref;
            verdict();
            run->end(r.status == "ERROR" ? "Kaggle could not score the submission: " + r.error : std::string());
        } catch (const Cancelled&) {
            verdict();
            run->end_stopped("stopped by the user before Kaggle scored it");
            throw;
        } catch (const std::exception& e) {
            if (r.error.empty()) r.error = e.what();
            verdict();
            run->end(e.what());
            throw;
        }
    });
    if (!started) {
        run->end("the submission did not start (another Kaggle job was running)");
        return false;
    }
    Q_EMIT busy_changed(true);
    state_label_->setText(tr("Uploading…"));
    update_buttons();
    Q_EMIT log(tr("Submitting %1 to %2: %3").arg(qstr(kept), qstr(competition), qstr(record.message)));
    auto finish = [this, project, outcome] {
        try {
            auto h = kaggle::SubmissionHistory::load(project);
            h.upsert(outcome->record);
            h.save(project);
        } catch (const std::exception& e) {
            Q_EMIT log(qstr(std::string(e.what())));
        }
        if (project == project_) fill_history();
    };
    auto* context = new QObject(this);
    connect(job_, &BackgroundJob::finished, context, [this, context, finish, outcome] {
        finish();
        const auto& r = outcome->record;
        if (r.status == "COMPLETE") {
            score_label_->setText(tr("Public score: %1").arg(r.public_score.empty() ? tr("(not shown)") : qstr(r.public_score)));
            state_label_->setText(tr("Scored by Kaggle."));
            Q_EMIT log(tr("Kaggle scored the submission: public %1").arg(qstr(r.public_score)));
        } else if (r.status == "ERROR") {
            score_label_->setText(tr("Kaggle could not score it"));
            state_label_->setText(qstr(r.error));
            Q_EMIT log(tr("Kaggle could not score the submission: %1").arg(qstr(r.error)));
        }
        context->deleteLater();
    });
    return true;
}

bool SubmitPage::refresh_history() {
    const std::string competition = competition_->text().trimmed().toStdString();
    if (competition.empty() || job_->busy()) return false;
    const fs::path project = project_;
    auto list = std::make_shared<std::vector<kaggle::Submission>>();
    const bool started = job_->start(tr("Reading the submissions from Kaggle"), [list, competition](const ProgressFn& progress,
                                                                                                      const std::atomic<bool>& cancel) {
        progress({"Asking Kaggle for the submissions", 0, 0});
        kaggle::ClientOptions co;
        co.cancel = &cancel;
        kaggle::Client client(kaggle::require_credentials(), co);
        *list = client.submissions(competition);
    });
    if (!started) return false;
    auto* context = new QObject(this);
    connect(job_, &BackgroundJob::succeeded, context, [this, project, list, competition] {
        auto h = kaggle::SubmissionHistory::load(project);
        h.competition = competition;
        h.merge(*list);
        h.save(project);
        project::record_submission_verdicts(project);   // the submission runs learn their scores
        if (project == project_) fill_history();
        state_label_->setText(tr("%n submission(s) on Kaggle", nullptr, static_cast<int>(list->size())));
    });
    connect(job_, &BackgroundJob::finished, context, &QObject::deleteLater);
    return true;
}

void SubmitPage::fill_history() {
    history_->setRowCount(0);
    if (project_.empty()) return;
    kaggle::SubmissionHistory h;
    try {
        h = kaggle::SubmissionHistory::load(project_);
    } catch (const std::exception&) {
        return;
    }
    // Newest first.
    int row = 0;
    for (auto it = h.submissions.rbegin(); it != h.submissions.rend(); ++it, ++row) {
        history_->insertRow(row);
        QString run = it->run ? QString("#%1").arg(it->run) : QString();
        if (it->source_run) run += (run.isEmpty() ? tr("from #%1") : tr(" from #%1")).arg(it->source_run);
        QStringList members;
        for (const auto& m : it->members) members << qstr(m);
        const QStringList cells{qstr(it->date), qstr(it->status) + (it->error.empty() ? "" : ": " + qstr(it->error)),
                                qstr(it->public_score), qstr(it->private_score), qstr(it->message), qstr(it->model),
                                it->members.empty() ? qstr(it->checkpoint) : tr("members: %1").arg(members.join("; ")), run};
        for (int c = 0; c < cells.size(); ++c) {
            auto* item = cell(cells[c]);
            item->setToolTip(qstr(it->model) + "\n" + qstr(it->file) + (members.isEmpty() ? "" : "\n" + members.join("\n")));
            history_->setItem(row, c, item);
        }
    }
}

}  // namespace whisker::ui
