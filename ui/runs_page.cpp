#include "runs_page.h"

#include "cross_validation_dialog.h"
#include "ensemble_dialog.h"
#include "train_page.h"
#include "training_worker.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"

#include "qcustomplot_include.h"

#include <QFileSystemWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QStandardItemModel>
#include <QTableView>
#include <QVBoxLayout>

#include <cmath>
#include <map>
#include <optional>

namespace whisker::ui {

struct RunsPage::Records {
    std::vector<project::RunRecord> runs;
    std::vector<project::SubmissionScore> scores;
    const project::RunRecord* find(int number) const {
        for (const auto& r : runs)
            if (r.number == number) return &r;
        return nullptr;
    }
};

namespace {

QCustomPlot* make_plot(const QString& title) {
    auto* p = new QCustomPlot;
    p->setMinimumHeight(170);
    p->plotLayout()->insertRow(0);
    p->plotLayout()->addElement(0, 0, new QCPTextElement(p, title, QFont(p->font().family(), 9, QFont::Bold)));
    p->legend->setVisible(true);
    p->legend->setFont(QFont(p->font().family(), 8));
    p->legend->setBrush(QColor(255, 255, 255, 200));
    p->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    return p;
}

// A number cell: shown with `decimals`, sorted as a number ("-" sorts last).
QStandardItem* number_item(double v, int decimals) {
    auto* item = new QStandardItem(std::isfinite(v) ? QString::number(v, 'f', decimals) : QStringLiteral("-"));
    item->setData(std::isfinite(v) ? v : 1e300, Qt::UserRole);
    item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return item;
}
QStandardItem* text_item(const QString& text) {
    auto* item = new QStandardItem(text);
    item->setData(text, Qt::UserRole);
    return item;
}

QString duration(double s) {
    if (s < 60) return QString::number(std::lround(s)) + "s";
    if (s < 3600) return QString("%1m%2s").arg(static_cast<int>(s / 60)).arg(static_cast<int>(std::fmod(s, 60)), 2, 10, QChar('0'));
    return QString("%1h%2m").arg(static_cast<int>(s / 3600)).arg(static_cast<int>(std::fmod(s / 60, 60)), 2, 10, QChar('0'));
}

// The Epochs cell of a run. A run that trains but ended (stopped, interrupted, failed) before
// its first epoch was over recorded no epoch: "0" would read as a run that trained nothing, so
// the cell says how it ended, as the Status column does, and its tooltip says what that means.
QStandardItem* epochs_item(const project::RunRecord& r) {
    const bool trains = r.kind == project::RunKind::Fit || r.kind == project::RunKind::Recipe || !r.fits.empty();
    if (!trains) return number_item(NAN, 0);   // predictions, sweeps, submissions, ensembles: "-"
    const long epochs = r.epochs();
    const bool ended_early = r.status == "stopped" || r.status == "interrupted" || r.status == "failed";
    if (epochs > 0 || !ended_early) return number_item(r.fits.empty() ? NAN : static_cast<double>(epochs), 0);
    const QString how = QString::fromStdString(r.status);
    // A recipe can end in its LR sweep, before its first fit began.
    auto* item = number_item(0, 0);
    item->setText(r.fits.empty() ? RunsPage::tr("%1 before epoch 1").arg(how) : RunsPage::tr("%1 in epoch 1").arg(how));
    QString why = r.fits.empty() ? RunsPage::tr("This run was %1 before its first fit began: it trained no epoch.").arg(how)
                                 : RunsPage::tr("This run was %1 during its first epoch, before that epoch was over: it "
                                                "recorded no epoch, so it has no curve and no validation scores.")
                                       .arg(how);
    if (!r.error.empty()) why += "\n" + QString::fromStdString(r.error);
    item->setToolTip(why);
    return item;
}

// A plot with nothing to show: no ticks, numbers or grid (they would read a meaningless 0–5),
// and a line in its middle that says what fills it. An empty `message` puts the axes back.
void show_plot_message(QCustomPlot* plot, const QString& message) {
    for (QCPAxis* axis : {plot->xAxis, plot->yAxis}) {
        axis->setTicks(message.isEmpty());
        axis->setTickLabels(message.isEmpty());
        axis->grid()->setVisible(message.isEmpty());
    }
    if (message.isEmpty()) return;
    auto* text = new QCPItemText(plot);
    text->setObjectName("emptyPlotMessage");
    text->position->setType(QCPItemPosition::ptAxisRectRatio);
    text->position->setCoords(0.5, 0.5);
    text->setPositionAlignment(Qt::AlignCenter);
    text->setTextAlignment(Qt::AlignCenter);
    text->setColor(QColor(85, 85, 85));
    text->setFont(QFont(plot->font().family(), 10));
    text->setText(message);
}

const QColor kColours[] = {QColor(31, 119, 180), QColor(255, 127, 14), QColor(44, 160, 44), QColor(214, 39, 40),
                           QColor(148, 103, 189), QColor(140, 86, 75), QColor(227, 119, 194), QColor(127, 127, 127)};

}  // namespace

RunsPage::RunsPage(TrainPage* train, QWidget* parent) : QWidget(parent), train_(train), records_(std::make_unique<Records>()) {
    model_ = new QStandardItemModel(0, ColumnCount, this);
    model_->setHorizontalHeaderLabels({tr("#"), tr("Kind"), tr("Status"), tr("Started"), tr("Model"), tr("Epochs"),
                                       tr("Val loss"), tr("Accuracy"), tr("Log loss"), tr("Public"), tr("Time"),
                                       tr("From"), tr("Output")});
    proxy_ = new QSortFilterProxyModel(this);
    proxy_->setSourceModel(model_);
    proxy_->setSortRole(Qt::UserRole);
    proxy_->setFilterKeyColumn(-1);   // any column
    proxy_->setFilterCaseSensitivity(Qt::CaseInsensitive);

    table_ = new QTableView;
    table_->setObjectName("runsTable");
    table_->setModel(proxy_);
    table_->setSortingEnabled(true);
    table_->sortByColumn(Number, Qt::DescendingOrder);   // newest first
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setSelectionMode(QAbstractItemView::ExtendedSelection);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->verticalHeader()->hide();
    table_->horizontalHeader()->setStretchLastSection(true);
    table_->setAlternatingRowColors(true);

    filter_ = new QLineEdit;
    filter_->setObjectName("runsFilter");
    filter_->setPlaceholderText(tr("Filter: resnet34, fit, finished, snapshot…"));
    filter_->setClearButtonEnabled(true);
    connect(filter_, &QLineEdit::textChanged, proxy_, &QSortFilterProxyModel::setFilterFixedString);

    load_button_ = new QPushButton(tr("Load this run's checkpoint"));
    load_button_->setObjectName("loadRunCheckpoint");
    load_button_->setToolTip(tr("Make the selected run's weights the project's learner (the Train, Inspect and Submit pages use it)"));
    load_button_->setEnabled(false);
    connect(load_button_, &QPushButton::clicked, this, &RunsPage::load_selected_checkpoint);
    ensemble_button_ = new QPushButton(tr("&Ensemble…"));
    ensemble_button_->setObjectName("ensembleRuns");
    ensemble_button_->setToolTip(tr("Average the predictions of the selected runs: weights, mix, TTA, their validation scores, "
                                    "then the Submit page"));
    ensemble_button_->setEnabled(false);
    connect(ensemble_button_, &QPushButton::clicked, this, &RunsPage::open_ensemble_dialog);
    cross_validation_button_ = new QPushButton(tr("&Cross-validation…"));
    cross_validation_button_->setObjectName("crossValidation");
    cross_validation_button_->setToolTip(tr("K folds: deal them, train a model per fold, the out-of-fold score, and the folds' "
                                            "ensemble to the Submit page"));
    cross_validation_button_->setEnabled(false);
    connect(cross_validation_button_, &QPushButton::clicked, this, &RunsPage::open_cross_validation_dialog);
    auto* refresh_button = new QPushButton(tr("Refresh"));
    connect(refresh_button, &QPushButton::clicked, this, &RunsPage::refresh);

    summary_ = new QLabel;
    details_ = new QLabel;
    details_->setWordWrap(true);
    details_->setTextInteractionFlags(Qt::TextSelectableByMouse);

    curves_ = make_plot(tr("Epoch curves of the selected runs (validation loss; training loss dashed)"));
    curves_->setObjectName("runsCurves");
    curves_->xAxis->setLabel(tr("epoch"));
    curves_->yAxis->setLabel(tr("loss"));
    cv_plot_ = make_plot(tr("Validation log loss against the public leaderboard score"));
    cv_plot_->setObjectName("cvLeaderboardPlot");
    cv_plot_->xAxis->setLabel(tr("validation log loss"));
    cv_plot_->yAxis->setLabel(tr("public score"));
    cv_plot_->legend->setVisible(false);   // the title says what the points are; labels name their runs
    // Whole epochs on the curves' axis.
    curves_->xAxis->setTicker(QSharedPointer<QCPAxisTickerFixed>::create());
    qSharedPointerCast<QCPAxisTickerFixed>(curves_->xAxis->ticker())->setTickStep(1.0);
    qSharedPointerCast<QCPAxisTickerFixed>(curves_->xAxis->ticker())->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);

    auto* top = new QHBoxLayout;
    top->addWidget(filter_, 1);
    top->addWidget(load_button_);
    top->addWidget(ensemble_button_);
    top->addWidget(cross_validation_button_);
    top->addWidget(refresh_button);
    auto* upper = new QWidget;
    auto* upper_layout = new QVBoxLayout(upper);
    upper_layout->setContentsMargins(0, 0, 0, 0);
    upper_layout->addLayout(top);
    upper_layout->addWidget(table_, 1);
    upper_layout->addWidget(summary_);
    upper_layout->addWidget(details_);
    auto* plots = new QSplitter(Qt::Horizontal);
    plots->addWidget(curves_);
    plots->addWidget(cv_plot_);
    plots->setStretchFactor(0, 3);
    plots->setStretchFactor(1, 2);
    auto* split = new QSplitter(Qt::Vertical);
    split->addWidget(upper);
    split->addWidget(plots);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(split);

    connect(table_->selectionModel(), &QItemSelectionModel::selectionChanged, this, &RunsPage::selection_changed);
    watcher_ = new QFileSystemWatcher(this);
    connect(watcher_, &QFileSystemWatcher::directoryChanged, this, [this](const QString& dir) {
        // The runs folder, or the project's (a new score in submissions.json, written by rename).
        if (std::filesystem::path(dir.toStdString()) == project_ / "runs") return refresh();
        std::error_code ec;
        if (std::filesystem::last_write_time(project_ / "submissions.json", ec) != history_time_ && !ec) refresh();
    });
}

RunsPage::~RunsPage() = default;

void RunsPage::set_project(const std::filesystem::path& project) {
    project_ = project;
    if (!watcher_->directories().isEmpty()) watcher_->removePaths(watcher_->directories());
    std::error_code ec;
    std::filesystem::create_directories(project / "runs", ec);   // watched before the first run
    watcher_->addPath(QString::fromStdString((project / "runs").string()));
    if (!project.empty()) watcher_->addPath(QString::fromStdString(project.string()));
    if (ensemble_dialog_) ensemble_dialog_->close();   // its members were the previous project's
    if (cross_validation_dialog_) cross_validation_dialog_->deleteLater();   // the previous project's
    cross_validation_button_->setEnabled(!project.empty() && train_ != nullptr);
    refresh();
}

void RunsPage::refresh() {
    const auto keep = selected_runs();
    records_->runs = project_.empty() ? std::vector<project::RunRecord>{} : project::list_runs(project_);
    std::error_code ec;
    history_time_ = std::filesystem::last_write_time(project_ / "submissions.json", ec);
    records_->scores = project_.empty() ? std::vector<project::SubmissionScore>{} : project::submission_scores(project_);
    std::map<int, std::string> public_scores;
    for (const auto& s : records_->scores)
        if (!s.public_score.empty()) public_scores[s.run] = s.public_score;
    model_->removeRows(0, model_->rowCount());
    for (const auto& r : records_->runs) {
        QList<QStandardItem*> row;
        auto* n = number_item(r.number, 0);
        QString kind = project::run_kind_name(r.kind);
        if (r.folds > 0) kind += tr(" · fold %1/%2").arg(r.fold).arg(r.folds);   // a cross-validation fold's run
        row << n << text_item(kind) << text_item(QString::fromStdString(r.status))
            << text_item(QString::fromStdString(r.started.substr(0, 16)));
        QString model = r.kind == project::RunKind::Ensemble ? tr("ensemble of %1").arg(r.members.size())
                        : r.kaggle                          ? tr("to Kaggle: %1").arg(QString::fromStdString(r.kaggle->competition))
                        : r.arch.empty()                    ? QStringLiteral("-")
                                                            : QString("%1 %2px bs%3").arg(QString::fromStdString(r.arch)).arg(r.size).arg(r.batch_size);
        row << text_item(model) << epochs_item(r);
        double val = NAN, acc = NAN, ll = NAN;
        if (const auto e = r.best_epoch()) {
            val = e->val_loss;
            acc = e->accuracy;
            ll = e->log_loss;
        } else if (const auto v = r.validation()) {
            acc = v->accuracy;
            ll = v->log_loss;
        }
        row << number_item(val, 4) << number_item(acc, 4) << number_item(ll, 4);
        // A submission run's own score; a run whose predictions were sent, the latest of theirs.
        const auto pub = public_scores.find(r.number);
        std::string public_score = pub == public_scores.end() ? std::string() : pub->second;
        if (r.kaggle) public_score = r.kaggle->public_score;
        double public_value = NAN;
        try {
            if (!public_score.empty()) public_value = std::stod(public_score);
        } catch (const std::exception&) {
        }
        auto* public_item = number_item(public_value, 5);
        if (std::isfinite(public_value)) public_item->setText(QString::fromStdString(public_score));   // as Kaggle gave it
        else if (r.kaggle) public_item->setText(QString::fromStdString(r.kaggle->status));             // PENDING, ERROR…
        row << public_item;
        auto* time = text_item(duration(r.wall_seconds));
        time->setData(r.wall_seconds, Qt::UserRole);
        row << time;
        QString from = "-";
        if (r.parent) from = r.resumed ? tr("resumes #%1").arg(r.parent) : QString("#%1").arg(r.parent);
        row << text_item(from);
        QString output = QString::fromStdString(r.checkpoint);
        if (!r.submission.empty()) output += (output.isEmpty() ? "" : ", ") + QString::fromStdString(r.submission);
        int snapshots = 0;
        for (const auto& f : r.fits) snapshots += static_cast<int>(f.snapshots.size());
        if (snapshots) output += tr(" + %1 snapshots").arg(snapshots);
        row << text_item(output);
        if (r.status == "failed" || r.status == "interrupted")
            for (auto* item : row) item->setForeground(QColor(170, 40, 40));
        model_->appendRow(row);
    }
    table_->resizeColumnsToContents();
    summary_->setText(records_->runs.empty() ? tr("No runs recorded yet: every fit, LR sweep, recipe, prediction and "
                                                  "ensemble adds one, from the workbench or whisker-cli.")
                                             : tr("%1 runs; select several to overlay their curves").arg(records_->runs.size()));
    select_runs(keep);
    draw_cv_plot();
    selection_changed();
}

void RunsPage::select_runs(const std::vector<int>& numbers) {
    QItemSelection selection;
    for (int row = 0; row < proxy_->rowCount(); ++row) {
        const int n = proxy_->index(row, Number).data(Qt::UserRole).toInt();
        if (std::find(numbers.begin(), numbers.end(), n) != numbers.end())
            selection.select(proxy_->index(row, 0), proxy_->index(row, ColumnCount - 1));
    }
    table_->selectionModel()->select(selection, QItemSelectionModel::ClearAndSelect);
}

std::vector<int> RunsPage::selected_runs() const {
    std::vector<int> out;
    for (const auto& index : table_->selectionModel()->selectedRows(Number)) out.push_back(index.data(Qt::UserRole).toInt());
    std::sort(out.begin(), out.end());
    return out;
}

void RunsPage::selection_changed() {
    const auto chosen = selected_runs();
    const project::RunRecord* one = chosen.size() == 1 ? records_->find(chosen[0]) : nullptr;
    load_button_->setEnabled(one && !one->checkpoint.empty() && train_ != nullptr);
    ensemble_button_->setEnabled(!chosen.empty() && train_ != nullptr);
    if (one) {
        QStringList lines;
        for (const auto& [key, value] : project::run_settings(*one))
            lines << QString("<b>%1</b> %2").arg(QString::fromStdString(key).toHtmlEscaped(), QString::fromStdString(value).toHtmlEscaped());
        details_->setText(lines.join(" &nbsp;·&nbsp; "));
    } else {
        details_->setText(chosen.empty() ? QString() : tr("%1 runs selected").arg(chosen.size()));
    }
    draw_curves();
}

void RunsPage::draw_curves() {
    curves_->clearGraphs();
    curves_->clearItems();
    int colour = 0;
    double top = 0;
    const auto chosen = selected_runs();
    for (int n : chosen) {
        const auto* r = records_->find(n);
        if (!r) continue;
        const auto epochs = r->all_epochs();
        if (epochs.empty()) continue;
        QVector<double> x, val, trn;
        for (std::size_t i = 0; i < epochs.size(); ++i) {
            x << static_cast<double>(i + 1);
            val << epochs[i].val_loss;
            trn << epochs[i].trn_loss;
            if (std::isfinite(epochs[i].val_loss)) top = std::max(top, epochs[i].val_loss);
            if (std::isfinite(epochs[i].trn_loss)) top = std::max(top, epochs[i].trn_loss);
        }
        const QColor c = kColours[colour++ % 8];
        auto* g = curves_->addGraph();
        g->setName(QString("#%1 %2").arg(n).arg(QString::fromStdString(r->arch)));
        g->setPen(QPen(c, 2));
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 5));
        g->setData(x, val);
        auto* t = curves_->addGraph();
        t->setPen(QPen(c, 1, Qt::DashLine));
        t->setData(x, trn);
        t->removeFromLegend();
    }
    if (curves_->graphCount() == 0) {
        show_plot_message(curves_, curves_message(chosen));
    } else {
        show_plot_message(curves_, {});
        curves_->rescaleAxes();
        curves_->xAxis->setRange(0.5, std::max(2.0, curves_->xAxis->range().upper + 0.5));
        curves_->yAxis->setRange(0, top > 0 ? top * 1.1 : 1);
    }
    curves_->legend->setVisible(curves_->legend->itemCount() > 0);   // no empty box before a selection
    curves_->replot(QCustomPlot::rpQueuedReplot);
}

QString RunsPage::curves_message(const std::vector<int>& chosen) const {
    if (records_->runs.empty())
        return project_.empty() ? tr("Open a project to see its runs")
                                : tr("No runs yet: each fit or recipe adds its epoch curve here");
    if (chosen.empty()) return tr("Select runs in the table to compare their epoch curves");
    const project::RunRecord* one = chosen.size() == 1 ? records_->find(chosen[0]) : nullptr;
    if (!one) return tr("None of the %1 selected runs has epochs:\nselect fit or recipe runs that trained").arg(chosen.size());
    const bool trains = one->kind == project::RunKind::Fit || one->kind == project::RunKind::Recipe;
    if (!trains)
        return tr("Run #%1 is a %2 run: it trains no epochs.\nSelect a fit or recipe run to see its curve")
            .arg(one->number)
            .arg(project::run_kind_name(one->kind));
    if (one->status == "running") return tr("Run #%1 has no epochs yet:\nits curve starts when its first epoch ends").arg(one->number);
    return tr("Run #%1 has no epochs: it was %2 before its first epoch ended").arg(one->number).arg(QString::fromStdString(one->status));
}

void RunsPage::draw_cv_plot() {
    cv_plot_->clearGraphs();
    cv_plot_->clearItems();
    QVector<double> x, y;
    // One label per point: the same predictions sent twice share it ("#3, #5").
    std::map<std::pair<double, double>, QStringList> labels;
    for (const auto& s : records_->scores) {
        if (!s.public_value || !s.validation) continue;
        x << s.validation->log_loss;
        y << *s.public_value;
        QStringList& runs = labels[{s.validation->log_loss, *s.public_value}];
        if (!runs.contains(QString("#%1").arg(s.run))) runs << QString("#%1").arg(s.run);
    }
    for (const auto& [at, runs] : labels) {
        auto* label = new QCPItemText(cv_plot_);
        label->position->setCoords(at.first, at.second);
        label->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
        label->setText(" " + runs.join(", "));
        label->setFont(QFont(font().family(), 8));
    }
    auto* g = cv_plot_->addGraph();
    g->setName(tr("scored submissions (%1)").arg(x.size()));
    g->setLineStyle(QCPGraph::lsNone);
    g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, QColor(214, 39, 40), 8));
    g->setData(x, y, false);
    show_plot_message(cv_plot_, x.isEmpty() ? tr("No scored submissions yet.\nEach one Kaggle scores shows\nhere: its validation log loss\n"
                                                 "against its public score.")
                                            : QString());
    if (!x.isEmpty()) {
        // A little room around the points (a single point gets a window of its own).
        const auto [xmin, xmax] = std::minmax_element(x.begin(), x.end());
        const auto [ymin, ymax] = std::minmax_element(y.begin(), y.end());
        const double dx = std::max(0.02, (*xmax - *xmin) * 0.2), dy = std::max(0.02, (*ymax - *ymin) * 0.2);
        cv_plot_->xAxis->setRange(*xmin - dx, *xmax + dx);
        cv_plot_->yAxis->setRange(*ymin - dy, *ymax + dy);
    }
    cv_plot_->replot(QCustomPlot::rpQueuedReplot);
}

EnsembleDialog* RunsPage::ensemble_dialog() const { return ensemble_dialog_.data(); }

EnsembleDialog* RunsPage::open_ensemble_dialog() {
    const auto chosen = selected_runs();
    if (chosen.empty() || !train_) return nullptr;
    if (ensemble_dialog_) ensemble_dialog_->close();   // one at a time, with the selection as it is now
    std::vector<project::RunRecord> runs;
    for (int n : chosen)
        if (const auto* r = records_->find(n)) runs.push_back(*r);
    auto* dialog = new EnsembleDialog(train_, project_, runs, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    connect(dialog, &EnsembleDialog::log, this, &RunsPage::log);
    connect(dialog, &EnsembleDialog::send_to_submit, this, &RunsPage::send_to_submit);
    ensemble_dialog_ = dialog;
    dialog->show();
    return dialog;
}

CrossValidationDialog* RunsPage::cross_validation_dialog() const { return cross_validation_dialog_.data(); }

CrossValidationDialog* RunsPage::open_cross_validation_dialog() {
    if (project_.empty() || !train_) return nullptr;
    // One per project, kept when closed: a job it started goes on, and reopening shows it.
    if (cross_validation_dialog_) {
        if (!cross_validation_dialog_->running()) cross_validation_dialog_->refresh();
        cross_validation_dialog_->show();
        cross_validation_dialog_->raise();
        cross_validation_dialog_->activateWindow();
        return cross_validation_dialog_;
    }
    auto* dialog = new CrossValidationDialog(train_, project_, this);
    connect(dialog, &CrossValidationDialog::log, this, &RunsPage::log);
    connect(dialog, &CrossValidationDialog::send_to_submit, this, &RunsPage::send_to_submit);
    cross_validation_dialog_ = dialog;
    dialog->show();
    return dialog;
}

void RunsPage::load_selected_checkpoint() {
    const auto chosen = selected_runs();
    const project::RunRecord* r = chosen.size() == 1 ? records_->find(chosen[0]) : nullptr;
    if (!r || r->checkpoint.empty() || !train_) return;
    const QString name = QString::fromStdString(r->checkpoint);
    LearnerSettings settings;
    settings.project = QString::fromStdString(project_.string());
    settings.arch = QString::fromStdString(r->arch);
    settings.size = r->size;
    settings.batch_size = r->batch_size;
    settings.pretrained = r->pretrained;
    settings.augment = QString::fromStdString(r->augment_preset.empty() ? std::string("side-on") : r->augment_preset);
    settings.max_zoom = r->max_zoom;
    settings.no_flip = r->no_flip;
    settings.trivial_augment = r->trivial_augment;
    settings.random_erasing = r->random_erasing;
    // The checkpoint fits a learner of its own architecture and size: one is made first when
    // the project's learner is another (its trained weights are kept as a checkpoint).
    std::optional<project::LearnerSpec> spec;
    try {
        spec = project::LearnerSpec::read(project_);
    } catch (const std::exception&) {
    }
    const bool same = spec && spec->arch == r->arch && spec->size == r->size;
    const bool started = train_->run_on_worker(tr("Loading %1…").arg(name), [settings, name, same](TrainingWorker* w) {
        if (!same) w->create_learner(settings);
        w->load(name);
    });
    if (!started) {
        QMessageBox::information(this, tr("Busy"), tr("The learner is busy (see the Train page): wait for it, or stop it, and try again."));
        return;
    }
    Q_EMIT log(tr("Loading run #%1's checkpoint %2").arg(r->number).arg(name));
}

}  // namespace whisker::ui
