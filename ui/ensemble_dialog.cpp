#include "ensemble_dialog.h"

#include "train_page.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace fs = std::filesystem;

namespace whisker::ui {

namespace {

QString score_text(double v) { return std::isfinite(v) ? QString::number(v, 'f', 4) : QStringLiteral("-"); }

QTableWidgetItem* text_cell(const QString& text, bool number = false) {
    auto* item = new QTableWidgetItem(text);
    item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
    if (number) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return item;
}

// Why a run cannot be a member ("" when it can).
QString why_not_member(const project::RunRecord& r, const fs::path& project) {
    using project::RunKind;
    if (r.checkpoint.empty()) {
        switch (r.kind) {
        case RunKind::LrFind: return EnsembleDialog::tr("an LR sweep trains no weights");
        case RunKind::Predict:
        case RunKind::Submission:
            return r.parent ? EnsembleDialog::tr("a prediction has no weights of its own: select #%1, the run that trained them").arg(r.parent)
                            : EnsembleDialog::tr("a prediction has no weights of its own: select the run that trained them");
        case RunKind::Ensemble: return EnsembleDialog::tr("an ensemble is not one model: select its members instead");
        default:
            return r.status == "running" ? EnsembleDialog::tr("it is still running: its checkpoint comes when it ends")
                                         : EnsembleDialog::tr("it left no checkpoint (it %1 before an epoch ended)")
                                               .arg(QString::fromStdString(r.status == "finished" ? std::string("ended") : r.status));
        }
    }
    // A fold's model trained on the validation images of the project's split, so its score here
    // would flatter it; the folds are ensembled and scored out of fold by the Cross-validation
    // dialog (or `whisker-cli ensemble --folds`).
    if (r.fold >= 0)
        return EnsembleDialog::tr("a cross-validation fold trained on this validation split: ensemble the folds in "
                                  "Cross-validation… (scored out of fold)");
    std::error_code ec;
    if (!fs::exists(project / "models" / (r.checkpoint + ".safetensors"), ec))
        return EnsembleDialog::tr("its checkpoint %1 is gone from the models folder").arg(QString::fromStdString(r.checkpoint));
    return {};
}

}  // namespace

EnsembleDialog::EnsembleDialog(TrainPage* train, fs::path project, const std::vector<project::RunRecord>& runs, QWidget* parent)
    : QDialog(parent), train_(train), project_(std::move(project)) {
    setObjectName("ensembleDialog");
    setWindowTitle(tr("Ensemble of runs"));
    resize(980, 520);

    // The candidates: each selected run, and its SGDR snapshots.
    for (const auto& r : runs) {
        Candidate c;
        c.reference = QString("#%1").arg(r.number);
        c.label = QString("#%1 %2").arg(r.number).arg(project::run_kind_name(r.kind));
        c.arch = QString::fromStdString(r.arch);
        c.size = r.size;
        c.accuracy = c.log_loss = NAN;
        if (const auto v = r.validation()) {
            c.accuracy = v->accuracy;
            c.log_loss = v->log_loss;
        }
        c.why_not = why_not_member(r, project_);
        c.ticked = c.why_not.isEmpty();
        candidates_.push_back(c);
        int cycle = 0;
        for (const auto& f : r.fits)
            for (const auto& name : f.snapshots) {
                Candidate s;
                s.reference = QString::fromStdString(name);
                s.label = tr("%1 (cycle %2 of #%3)").arg(s.reference).arg(++cycle).arg(r.number);
                s.arch = c.arch;
                s.size = c.size;
                s.accuracy = s.log_loss = NAN;
                std::error_code ec;
                if (!fs::exists(project_ / "models" / (name + ".safetensors"), ec)) s.why_not = tr("the snapshot's checkpoint is gone");
                candidates_.push_back(s);   // offered, not ticked: the run's own checkpoint is usually its last snapshot
            }
    }

    auto* intro = new QLabel(tr("Each member predicts the validation and test sets with its own architecture and size, one at a "
                                "time; their probabilities are averaged row by row. The scores on the right are measured here "
                                "(with the TTA below); the recorded ones are each run's own."));
    intro->setWordWrap(true);

    table_ = new QTableWidget(0, ColumnCount);
    table_->setObjectName("ensembleMembers");
    table_->setHorizontalHeaderLabels({tr("Member"), tr("Architecture"), tr("Size"), tr("Recorded accuracy"), tr("Recorded log loss"),
                                       tr("Weight"), tr("Accuracy"), tr("Log loss")});
    table_->verticalHeader()->hide();
    table_->setSelectionMode(QAbstractItemView::NoSelection);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table_->horizontalHeader()->setSectionResizeMode(Member, QHeaderView::Stretch);

    excluded_ = new QLabel;
    excluded_->setObjectName("ensembleExcluded");
    excluded_->setWordWrap(true);
    excluded_->setStyleSheet("color: #8a5a00");

    mix_ = new QComboBox;
    mix_->setObjectName("ensembleMix");
    mix_->addItems({tr("Mean (equal weights)"), tr("Weighted mean"), tr("Geometric mean (weighted; for log loss)")});
    mix_->setToolTip(tr("The geometric mean of the probabilities (renormalised) punishes one member's confident mistake less "
                        "than the mean does, which suits log-loss competitions"));
    tta_ = new QSpinBox;
    tta_->setObjectName("ensembleTta");
    tta_->setRange(0, 32);
    tta_->setSpecialValueText(tr("none"));
    tta_->setSuffix(tr(" augmented passes"));
    connect(tta_, &QSpinBox::valueChanged, this, [this](int n) { tta_->setSuffix(n == 1 ? tr(" augmented pass") : tr(" augmented passes")); });
    tta_->setToolTip(tr("Test-time augmentation for every member: this many augmented copies of each image besides the plain one"));
    compute_button_ = new QPushButton(tr("&Compute"));
    compute_button_->setObjectName("ensembleCompute");
    compute_button_->setDefault(true);
    stop_button_ = new QPushButton(tr("S&top"));
    stop_button_->setObjectName("ensembleStop");
    progress_ = new QProgressBar;
    progress_->setRange(0, 1000);
    progress_->setVisible(false);
    progress_->setTextVisible(false);
    status_ = new QLabel;
    status_->setObjectName("ensembleStatus");
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    send_button_ = new QPushButton(tr("Send to &Submit"));
    send_button_->setObjectName("ensembleSend");
    send_button_->setToolTip(tr("Open the Submit page with the ensemble's test predictions: the usual checks, then one click to submit"));
    auto* close_button = new QPushButton(tr("Close"));

    auto* settings = new QHBoxLayout;
    auto* form = new QFormLayout;
    form->setFieldGrowthPolicy(QFormLayout::FieldsStayAtSizeHint);
    form->addRow(tr("Mix"), mix_);
    form->addRow(tr("TTA"), tta_);
    settings->addLayout(form);
    settings->addStretch(1);
    settings->addWidget(compute_button_, 0, Qt::AlignBottom);
    settings->addWidget(stop_button_, 0, Qt::AlignBottom);
    auto* bottom = new QHBoxLayout;
    bottom->addStretch(1);
    bottom->addWidget(send_button_);
    bottom->addWidget(close_button);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(intro);
    layout->addWidget(table_, 1);
    layout->addWidget(excluded_);
    layout->addLayout(settings);
    layout->addWidget(progress_);
    layout->addWidget(status_);
    layout->addLayout(bottom);

    fill_table();
    // Tall enough for the members, no taller (a long selection scrolls).
    resize(980, std::clamp(240 + 30 * (candidate_count() + 1), 380, 640));

    connect(compute_button_, &QPushButton::clicked, this, &EnsembleDialog::compute);
    connect(stop_button_, &QPushButton::clicked, this, [this] {
        if (computing_) train_->worker()->request_stop();   // thread-safe: the worker checks it between batches
    });
    connect(send_button_, &QPushButton::clicked, this, &EnsembleDialog::send);
    connect(close_button, &QPushButton::clicked, this, &QDialog::reject);
    connect(mix_, &QComboBox::currentIndexChanged, this, &EnsembleDialog::settings_changed);
    connect(tta_, &QSpinBox::valueChanged, this, &EnsembleDialog::settings_changed);
    connect(table_, &QTableWidget::itemChanged, this, [this](QTableWidgetItem* item) {
        if (item->column() != Member || item->row() >= candidate_count()) return;
        const bool ticked = item->checkState() == Qt::Checked;
        if (candidates_[static_cast<std::size_t>(item->row())].ticked == ticked) return;
        candidates_[static_cast<std::size_t>(item->row())].ticked = ticked;
        settings_changed();
    });

    TrainingWorker* worker = train_->worker();
    connect(worker, &TrainingWorker::progress, this, [this](const QString& stage, qlonglong done, qlonglong total) {
        if (!computing_) return;
        progress_->setVisible(true);
        progress_->setRange(0, total > 0 ? 1000 : 0);
        if (total > 0) progress_->setValue(static_cast<int>(1000.0 * static_cast<double>(done) / static_cast<double>(total)));
        say(stage);
    });
    connect(worker, &TrainingWorker::ensemble_ready, this, [this](const EnsembleResult& r) {
        if (r.id != request_id_) return;   // an earlier request's
        result_ = r;
        has_result_ = true;
        stale_ = false;
        show_result();
    });
    connect(worker, &TrainingWorker::job_finished, this, [this](const QString& job, bool stopped, const QString&) {
        if (job != "Ensemble" || !computing_) return;
        computing_ = false;
        progress_->setVisible(false);
        if (stopped) say(tr("Stopped: nothing was recorded."), "#8a5a00");
        update_buttons();
    });
    connect(worker, &TrainingWorker::failed, this, [this](const QString& job, const QString& message) {
        if (job != "Ensemble" || !computing_) return;
        computing_ = false;
        progress_->setVisible(false);
        say(tr("The ensemble failed: %1").arg(message), "#b00020");
        update_buttons();
    });
    settings_changed();
}

void EnsembleDialog::fill_table() {
    const QSignalBlocker block(table_);
    table_->setRowCount(candidate_count() + 1);
    QStringList excluded;
    for (int row = 0; row < candidate_count(); ++row) {
        const Candidate& c = candidates_[static_cast<std::size_t>(row)];
        const bool usable = c.why_not.isEmpty();
        auto* member = new QTableWidgetItem(usable ? c.label : tr("%1 — not a member (see below)").arg(c.label));
        member->setFlags(usable ? Qt::ItemIsEnabled | Qt::ItemIsUserCheckable : Qt::NoItemFlags);
        member->setCheckState(c.ticked ? Qt::Checked : Qt::Unchecked);
        member->setToolTip(usable ? tr("Tick to make it a member") : c.why_not);
        table_->setItem(row, Member, member);
        table_->setItem(row, Architecture, text_cell(c.arch.isEmpty() ? "-" : c.arch));
        table_->setItem(row, Size, text_cell(c.size > 0 ? QString::number(c.size) : "-", true));
        table_->setItem(row, RecordedAccuracy, text_cell(score_text(c.accuracy), true));
        table_->setItem(row, RecordedLogLoss, text_cell(score_text(c.log_loss), true));
        table_->setItem(row, Accuracy, text_cell("", true));
        table_->setItem(row, LogLoss, text_cell("", true));
        if (usable) {
            auto* weight = new QDoubleSpinBox;
            weight->setRange(0, 100);
            weight->setDecimals(2);
            weight->setSingleStep(0.5);
            weight->setValue(1);
            weight->setFrame(false);
            weight->setToolTip(tr("This member's share of the (weighted) mean; 0 leaves it out of the sum"));
            connect(weight, &QDoubleSpinBox::valueChanged, this, &EnsembleDialog::settings_changed);
            table_->setCellWidget(row, Weight, weight);
        } else {
            table_->setItem(row, Weight, text_cell("-", true));
            for (int col = Architecture; col < ColumnCount; ++col)
                if (auto* item = table_->item(row, col)) item->setFlags(Qt::NoItemFlags);
            excluded << tr("%1 (%2)").arg(c.label, c.why_not);
        }
    }
    const int last = candidate_count();
    auto* ensemble = text_cell(tr("Ensemble"));
    QFont bold = ensemble->font();
    bold.setBold(true);
    ensemble->setFont(bold);
    table_->setItem(last, Member, ensemble);
    for (int col = Architecture; col < ColumnCount; ++col) {
        auto* item = text_cell("", col >= Size);
        item->setFont(bold);
        table_->setItem(last, col, item);
    }
    excluded_->setText(excluded.isEmpty() ? QString() : tr("Not members: %1.").arg(excluded.join("; ")));
    excluded_->setVisible(!excluded.isEmpty());
}

bool EnsembleDialog::is_usable(int row) const {
    return row >= 0 && row < candidate_count() && candidates_[static_cast<std::size_t>(row)].why_not.isEmpty();
}
QString EnsembleDialog::reference(int row) const {
    return row >= 0 && row < candidate_count() ? candidates_[static_cast<std::size_t>(row)].reference : QString();
}
bool EnsembleDialog::is_member(int row) const { return is_usable(row) && candidates_[static_cast<std::size_t>(row)].ticked; }
void EnsembleDialog::set_member(int row, bool ticked) {
    if (!is_usable(row)) return;
    table_->item(row, Member)->setCheckState(ticked ? Qt::Checked : Qt::Unchecked);   // itemChanged does the rest
}
QDoubleSpinBox* EnsembleDialog::weight_box(int row) const { return qobject_cast<QDoubleSpinBox*>(table_->cellWidget(row, Weight)); }

void EnsembleDialog::say(const QString& text, const char* colour) {
    status_->setStyleSheet(colour ? QString("color: %1").arg(colour) : QString());
    status_->setText(text);
}

void EnsembleDialog::settings_changed() {
    // Equal weights for the plain mean: the boxes show it.
    const bool weighted = mix_->currentIndex() != Mean;
    for (int row = 0; row < candidate_count(); ++row)
        if (auto* w = weight_box(row)) w->setEnabled(weighted && is_member(row));
    if (has_result_ && !stale_) {
        stale_ = true;
        say(tr("The members or settings changed since the scores below: Compute again to score and send them "
               "(members already predicted are not predicted again)."),
            "#8a5a00");
        for (int row = 0; row <= candidate_count(); ++row)
            for (int col : {Accuracy, LogLoss})
                if (auto* item = table_->item(row, col)) item->setForeground(QColor(150, 150, 150));
    } else if (!has_result_ && !computing_) {
        int members = 0;
        for (int row = 0; row < candidate_count(); ++row) members += is_member(row) ? 1 : 0;
        say(tr("%n member(s) ticked. Compute predicts each on the validation and test sets and scores them.", nullptr, members));
    }
    update_buttons();
}

void EnsembleDialog::update_buttons() {
    compute_button_->setEnabled(!computing_);
    stop_button_->setEnabled(computing_);
    send_button_->setEnabled(!computing_ && has_result());
    mix_->setEnabled(!computing_);
    tta_->setEnabled(!computing_);
    table_->setEnabled(!computing_);
}

bool EnsembleDialog::compute() {
    if (computing_) return false;
    EnsembleRequest request;
    const bool weighted = mix_->currentIndex() != Mean;
    double total = 0;
    for (int row = 0; row < candidate_count(); ++row) {
        if (!is_member(row)) continue;
        request.members << reference(row);
        const double w = weighted ? weight_box(row)->value() : 1.0;
        request.weights << w;
        total += w;
    }
    if (request.members.size() < 2) {
        say(tr("Tick at least two members: an ensemble averages several models (runs that trained no weights cannot be members)."),
            "#b00020");
        return false;
    }
    if (!(total > 0)) {
        say(tr("The weights add up to 0: give at least one member a positive weight."), "#b00020");
        return false;
    }
    if (!weighted) request.weights.clear();   // equal: recorded as the plain mean
    request.geometric = mix_->currentIndex() == Geometric;
    request.tta = tta_->value();
    request.id = ++request_id_;
    const bool started = train_->run_on_worker(tr("Computing the ensemble…"), [request](TrainingWorker* w) { w->ensemble(request); });
    if (!started) {
        say(tr("The learner is busy (see the Train page): wait for it, or stop it, and try again."), "#b00020");
        return false;
    }
    computing_ = true;
    progress_->setVisible(true);
    progress_->setRange(0, 0);
    say(tr("Computing the ensemble of %1…").arg(request.members.join(", ")));
    update_buttons();
    Q_EMIT log(tr("Computing an ensemble of %1 (%2, TTA %3)").arg(request.members.join(", "), mix_->currentText()).arg(request.tta));
    return true;
}

void EnsembleDialog::show_result() {
    const QSignalBlocker block(table_);
    // Each computed member's scores in its row (rows follow the request's order of ticked rows).
    int next = 0;
    double best_log_loss = INFINITY;
    for (int row = 0; row < candidate_count(); ++row) {
        table_->item(row, Accuracy)->setText("");
        table_->item(row, LogLoss)->setText("");
        for (int col : {Accuracy, LogLoss}) table_->item(row, col)->setForeground(palette().text());
        if (!is_member(row) || next >= result_.members.size()) continue;
        const auto& m = result_.members[next++];
        table_->item(row, Accuracy)->setText(score_text(m.accuracy));
        table_->item(row, LogLoss)->setText(score_text(m.log_loss));
        if (std::isfinite(m.log_loss)) best_log_loss = std::min(best_log_loss, m.log_loss);
    }
    const int last = candidate_count();
    table_->item(last, Member)->setText(tr("Ensemble #%1 (%2)").arg(result_.run).arg(result_.mix));
    table_->item(last, Accuracy)->setText(score_text(result_.accuracy));
    table_->item(last, LogLoss)->setText(score_text(result_.log_loss));
    for (int col : {Accuracy, LogLoss}) table_->item(last, col)->setForeground(palette().text());
    const bool better = std::isfinite(result_.log_loss) && result_.log_loss < best_log_loss;
    table_->item(last, LogLoss)->setBackground(better ? QColor(214, 240, 214) : QColor(250, 226, 200));
    if (!std::isfinite(result_.log_loss))
        say(tr("Recorded as run #%1. The dataset has no validation images: the ensemble is not scored.").arg(result_.run), "#8a5a00");
    else
        say(better ? tr("Recorded as run #%1. The ensemble's log loss %2 beats its best member's (%3).")
                         .arg(result_.run)
                         .arg(score_text(result_.log_loss), score_text(best_log_loss))
                   : tr("Recorded as run #%1. The ensemble's log loss %2 does not beat its best member's (%3): try other "
                        "weights or members.")
                         .arg(result_.run)
                         .arg(score_text(result_.log_loss), score_text(best_log_loss)),
            better ? "#1e7a1e" : "#8a5a00");
    Q_EMIT log(tr("Ensemble #%1 (%2): validation log loss %3, accuracy %4")
                   .arg(result_.run)
                   .arg(result_.mix, score_text(result_.log_loss), score_text(result_.accuracy)));
    update_buttons();
}

bool EnsembleDialog::send() {
    if (!has_result() || computing_ || !result_.test.valid()) return false;
    Q_EMIT send_to_submit(result_.test);
    accept();
    return true;
}

}  // namespace whisker::ui
