#include "train_page.h"

#include "whisker/common/files.h"
#include "whisker/models/weights.h"
#include "whisker/train/distributed.h"

#include <nlohmann/json.hpp>
#include "whisker/models/zoo.h"

#include "qcustomplot_include.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <cmath>

namespace whisker::ui {

namespace {
QCustomPlot* make_plot(const QString& title) {
    auto* p = new QCustomPlot;
    p->setMinimumHeight(170);
    p->plotLayout()->insertRow(0);
    p->plotLayout()->addElement(0, 0, new QCPTextElement(p, title, QFont(p->font().family(), 9, QFont::Bold)));
    p->legend->setVisible(false);
    p->setNoAntialiasingOnDrag(true);
    return p;
}

std::vector<double> parse_rates(const QString& text, bool* ok) {
    std::vector<double> out;
    *ok = true;
    for (const QString& part : text.split(',', Qt::SkipEmptyParts)) {
        bool good = false;
        const double v = part.trimmed().toDouble(&good);
        if (!good || v < 0) {
            *ok = false;
            return {};
        }
        out.push_back(v);
    }
    *ok = !out.empty() && (out.size() == 1 || out.size() == 3);
    return out;
}
}  // namespace

TrainPage::TrainPage(QWidget* parent) : QWidget(parent) {
    register_training_types();
    worker_ = new TrainingWorker;
    worker_->moveToThread(&thread_);
    connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
    thread_.start();

    // ---- learner settings ----
    arch_ = new QComboBox;
    arch_->setObjectName("archBox");
    for (const auto& a : models::all_architectures()) arch_->addItem(QString::fromStdString(a.name));
    arch_->setCurrentText("resnet34");
    size_ = new QSpinBox;
    size_->setRange(32, 1024);
    size_->setSingleStep(32);
    size_->setValue(224);
    batch_ = new QSpinBox;
    batch_->setRange(1, 1024);
    batch_->setValue(64);
    pretrained_ = new QCheckBox(tr("ImageNet weights"));
    pretrained_->setChecked(true);
    weights_state_ = new QLabel;
    create_ = new QPushButton(tr("&Create learner"));
    learner_label_ = new QLabel(tr("No learner yet"));
    learner_label_->setWordWrap(true);
    auto* settings = new QGroupBox(tr("Learner"));
    auto* sf = new QFormLayout(settings);
    sf->addRow(tr("Architecture"), arch_);
    sf->addRow(tr("Image size"), size_);
    sf->addRow(tr("Batch size"), batch_);
    auto* pre_row = new QHBoxLayout;
    pre_row->addWidget(pretrained_);
    pre_row->addWidget(weights_state_, 1);
    sf->addRow(tr("Pretrained"), pre_row);
    sf->addRow(create_);
    sf->addRow(learner_label_);

    // ---- LR finder ----
    lr_find_ = new QPushButton(tr("&Find learning rate"));
    lr_plot_ = make_plot(tr("LR finder: smoothed loss (click to choose)"));
    lr_plot_->setObjectName("lrPlot");
    lr_plot_->xAxis->setScaleType(QCPAxis::stLogarithmic);
    lr_plot_->xAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    lr_plot_->xAxis->setLabel(tr("learning rate"));
    lr_plot_->yAxis->setLabel(tr("loss"));
    lr_plot_->addGraph();
    lr_plot_->addGraph();  // suggestions, as points
    lr_plot_->graph(1)->setLineStyle(QCPGraph::lsNone);
    lr_plot_->graph(1)->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QColor(220, 60, 40), QColor(220, 60, 40), 8));
    connect(lr_plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
        if (lr_plot_->graph(0)->dataCount() == 0) return;
        const double x = lr_plot_->xAxis->pixelToCoord(e->position().x());
        if (x > 0) choose_learning_rate(x);
    });
    auto* finder = new QGroupBox(tr("Learning rate finder"));
    auto* fl = new QVBoxLayout(finder);
    fl->addWidget(lr_find_);
    fl->addWidget(lr_plot_, 1);

    // ---- fit ----
    lr_ = new QLineEdit("1e-2");
    lr_->setObjectName("lrEdit");
    lr_->setToolTip(tr("One learning rate, or three (early layers, late layers, head) separated by commas"));
    cycles_ = new QSpinBox;
    cycles_->setRange(1, 1000);
    cycles_->setValue(1);
    cycle_len_ = new QDoubleSpinBox;
    cycle_len_->setRange(0, 100);
    cycle_len_->setDecimals(1);
    cycle_len_->setSpecialValueText(tr("constant lr"));
    cycle_mult_ = new QSpinBox;
    cycle_mult_->setRange(1, 10);
    wd_ = new QDoubleSpinBox;
    wd_->setDecimals(6);
    wd_->setRange(0, 1);
    wd_->setSingleStep(1e-4);
    precompute_ = new QCheckBox(tr("Precompute activations"));
    trainable_ = new QComboBox;
    trainable_->addItems({tr("Head only (frozen body)"), tr("Late body + head"), tr("Everything (unfrozen)")});
    bn_freeze_ = new QCheckBox(tr("Freeze BatchNorm statistics"));
    // Data-parallel training (c10d): N worker processes, one per GPU; the batch size stays the
    // global batch.
    const int gpus = train::local_gpu_count();
    processes_ = new QSpinBox;
    processes_->setObjectName("processesBox");
    processes_->setRange(1, std::max(1, gpus > 0 ? gpus : 8));
    processes_->setSpecialValueText(tr("1 (in this window)"));
    processes_->setToolTip(tr("Data-parallel training in this many processes (whisker-cli fit --nproc): one per GPU; "
                              "on a CPU they share the cores. The batch size is the global batch."));
    all_gpus_ = new QCheckBox(gpus >= 2 ? tr("Use all GPUs (%1)").arg(gpus) : tr("Use all GPUs"));
    all_gpus_->setObjectName("allGpusBox");
    all_gpus_->setEnabled(gpus >= 2);
    all_gpus_->setToolTip(gpus >= 2 ? tr("One training process per GPU") : tr("Needs two or more CUDA GPUs; this machine has %1").arg(gpus));
    connect(all_gpus_, &QCheckBox::toggled, this, [this, gpus](bool on) {
        if (on) processes_->setValue(gpus);
        processes_->setEnabled(!on);
    });
    start_ = new QPushButton(tr("&Start"));
    stop_button_ = new QPushButton(tr("Sto&p"));
    resume_ = new QPushButton(tr("&Resume"));
    save_ = new QPushButton(tr("Save…"));
    load_ = new QPushButton(tr("Load…"));
    recipe_ = new QPushButton(tr("Run the &recipe (8 steps)"));
    recipe_->setToolTip(tr("precompute → lr_find → fit → train with augmentation (SGDR) → unfreeze → "
                           "differential rates → lr_find → SGDR with cycle_mult 2, then TTA and the submission"));
    auto* fit_box = new QGroupBox(tr("Fit"));
    auto* ff = new QFormLayout(fit_box);
    ff->addRow(tr("Learning rate(s)"), lr_);
    ff->addRow(tr("Cycles"), cycles_);
    ff->addRow(tr("Cycle length (epochs)"), cycle_len_);
    ff->addRow(tr("Cycle multiplier"), cycle_mult_);
    ff->addRow(tr("Weight decay"), wd_);
    ff->addRow(tr("Train"), trainable_);
    ff->addRow(precompute_);
    ff->addRow(bn_freeze_);
    auto* parallel_row = new QHBoxLayout;
    parallel_row->addWidget(processes_, 1);
    parallel_row->addWidget(all_gpus_);
    ff->addRow(tr("Processes"), parallel_row);
    auto* buttons = new QHBoxLayout;
    for (auto* b : {start_, stop_button_, resume_, save_, load_}) buttons->addWidget(b);
    ff->addRow(buttons);
    ff->addRow(recipe_);

    // ---- live ----
    progress_ = new QProgressBar;
    status_ = new QLabel(tr("Open a project with a dataset, then create a learner."));
    loss_plot_ = make_plot(tr("Batch loss (raw, smoothed) and learning rate"));
    loss_plot_->setObjectName("lossPlot");
    loss_plot_->addGraph();
    loss_plot_->graph(0)->setPen(QPen(QColor(150, 150, 220)));
    loss_plot_->addGraph();
    loss_plot_->graph(1)->setPen(QPen(QColor(30, 60, 200), 2));
    loss_plot_->yAxis2->setVisible(true);
    loss_plot_->addGraph(loss_plot_->xAxis, loss_plot_->yAxis2);
    loss_plot_->graph(2)->setPen(QPen(QColor(230, 120, 20)));
    loss_plot_->xAxis->setLabel(tr("batch"));
    loss_plot_->yAxis->setLabel(tr("loss"));
    loss_plot_->yAxis2->setLabel(tr("lr"));
    metrics_plot_ = make_plot(tr("Epochs: train / valid loss, accuracy"));
    metrics_plot_->setObjectName("metricsPlot");
    for (const QColor& c : {QColor(30, 60, 200), QColor(200, 40, 40)}) {
        metrics_plot_->addGraph();
        metrics_plot_->graph(metrics_plot_->graphCount() - 1)->setPen(QPen(c, 2));
        metrics_plot_->graph(metrics_plot_->graphCount() - 1)->setScatterStyle(QCPScatterStyle::ssDisc);
    }
    metrics_plot_->yAxis2->setVisible(true);
    metrics_plot_->addGraph(metrics_plot_->xAxis, metrics_plot_->yAxis2);
    metrics_plot_->graph(2)->setPen(QPen(QColor(30, 150, 60), 2));
    metrics_plot_->graph(2)->setScatterStyle(QCPScatterStyle::ssDisc);
    metrics_plot_->xAxis->setLabel(tr("epoch"));
    metrics_plot_->yAxis2->setLabel(tr("accuracy"));
    metrics_plot_->yAxis2->setRange(0, 1);
    table_ = new QTableWidget(0, 6);
    table_->setObjectName("epochTable");
    table_->setHorizontalHeaderLabels({tr("epoch"), tr("trn_loss"), tr("val_loss"), tr("accuracy"), tr("log_loss"), tr("time")});
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    table_->verticalHeader()->setVisible(false);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);

    auto* left = new QWidget;
    auto* ll = new QVBoxLayout(left);
    ll->setContentsMargins(0, 0, 0, 0);
    ll->addWidget(settings);
    ll->addWidget(fit_box);
    ll->addStretch(1);
    auto* right = new QWidget;
    auto* rl = new QVBoxLayout(right);
    rl->setContentsMargins(0, 0, 0, 0);
    auto* status_row = new QHBoxLayout;
    status_row->addWidget(status_, 1);
    status_row->addWidget(progress_);
    rl->addLayout(status_row);
    auto* plots = new QSplitter(Qt::Vertical);
    plots->addWidget(finder);
    plots->addWidget(loss_plot_);
    plots->addWidget(metrics_plot_);
    plots->addWidget(table_);
    rl->addWidget(plots, 1);
    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 3);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(split);

    // ---- wiring ----
    connect(arch_, &QComboBox::currentTextChanged, this, &TrainPage::update_weights_state);
    connect(pretrained_, &QCheckBox::toggled, this, &TrainPage::update_weights_state);
    connect(create_, &QPushButton::clicked, this, [this] {
        LearnerSettings s;
        s.project = QString::fromStdString(project_.string());
        s.arch = arch_->currentText();
        s.size = size_->value();
        s.batch_size = batch_->value();
        s.pretrained = pretrained_->isChecked();
        set_busy(true, tr("Creating the learner…"));
        QMetaObject::invokeMethod(worker_, [w = worker_, s] { w->create_learner(s); }, Qt::QueuedConnection);
    });
    connect(lr_find_, &QPushButton::clicked, this, [this] {
        set_busy(true, tr("Finding a learning rate…"));
        QMetaObject::invokeMethod(worker_, [w = worker_] { w->lr_find(); }, Qt::QueuedConnection);
    });
    connect(start_, &QPushButton::clicked, this, &TrainPage::start_fit);
    connect(stop_button_, &QPushButton::clicked, this, &TrainPage::stop);
    connect(recipe_, &QPushButton::clicked, this, [this] {
        set_busy(true, tr("Running the recipe…"));
        QMetaObject::invokeMethod(worker_, [w = worker_] { w->run_recipe({}); }, Qt::QueuedConnection);
    });
    connect(worker_, &TrainingWorker::recipe_step, this, [this](int n, const QString& step) {
        status_->setText(tr("Recipe step %1: %2").arg(n).arg(step));
        Q_EMIT log(status_->text());
    });
    connect(resume_, &QPushButton::clicked, this, [this] {
        set_busy(true, tr("Resuming the interrupted fit…"));
        QMetaObject::invokeMethod(worker_, [w = worker_] { w->resume(); }, Qt::QueuedConnection);
    });
    connect(save_, &QPushButton::clicked, this, [this] {
        const QString name = QInputDialog::getText(this, tr("Save checkpoint"), tr("Name:"), QLineEdit::Normal, "stage1");
        if (name.isEmpty()) return;
        set_busy(true, tr("Saving…"));
        QMetaObject::invokeMethod(worker_, [w = worker_, name] { w->save(name); }, Qt::QueuedConnection);
    });
    connect(load_, &QPushButton::clicked, this, [this] {
        const QString name = QInputDialog::getText(this, tr("Load checkpoint"), tr("Name:"), QLineEdit::Normal, "stage1");
        if (name.isEmpty()) return;
        set_busy(true, tr("Loading…"));
        QMetaObject::invokeMethod(worker_, [w = worker_, name] { w->load(name); }, Qt::QueuedConnection);
    });
    connect(worker_, &TrainingWorker::learner_ready, this, [this](const QString& d) {
        has_learner_ = true;
        learner_label_->setText(d);
        Q_EMIT log(tr("Learner: %1").arg(d));
    });
    connect(worker_, &TrainingWorker::progress, this, [this](const QString& stage, qlonglong done, qlonglong total) {
        status_->setText(stage);
        progress_->setRange(0, total > 0 ? static_cast<int>(total) : 0);
        progress_->setValue(static_cast<int>(done));
        Q_EMIT progress_changed(stage, done, total);
    });
    connect(worker_, &TrainingWorker::lr_find_finished, this, &TrainPage::show_lr_curve);
    connect(worker_, &TrainingWorker::note, this, &TrainPage::log);
    connect(worker_, &TrainingWorker::batches, this, &TrainPage::add_points);
    connect(worker_, &TrainingWorker::epoch_finished, this, &TrainPage::add_epoch);
    connect(worker_, &TrainingWorker::job_finished, this, [this](const QString& job, bool stopped, const QString& message) {
        set_busy(false);
        status_->setText(stopped ? tr("%1 stopped: %2").arg(job, message) : tr("%1 finished").arg(job));
        Q_EMIT log(status_->text());
        if (stopped && message.contains("NaN")) QMessageBox::warning(this, tr("Training stopped"), message);
    });
    connect(worker_, &TrainingWorker::failed, this, [this](const QString& job, const QString& message) {
        set_busy(false);
        status_->setText(tr("%1 failed").arg(job));
        Q_EMIT log(tr("%1 failed: %2").arg(job, message));
        QMessageBox::warning(this, tr("%1 failed").arg(job), message);
    });
    set_busy(false);
    update_weights_state();
}

TrainPage::~TrainPage() {
    worker_->request_stop();
    thread_.quit();
    thread_.wait();
}

void TrainPage::set_project(const std::filesystem::path& project) {
    project_ = project;
    // The learner whisker-cli made for this project, if any: same settings, so "Create"
    // continues from its checkpoint.
    try {
        if (std::filesystem::exists(project / "learner.json")) {
            const auto j = nlohmann::json::parse(read_file(project / "learner.json"));
            arch_->setCurrentText(QString::fromStdString(j.value("arch", "resnet34")));
            size_->setValue(j.value("size", 224));
            batch_->setValue(j.value("batch_size", 64));
            pretrained_->setChecked(j.value("pretrained", true));
        }
    } catch (const std::exception&) {
    }
    has_learner_ = false;
    learner_label_->setText(tr("No learner yet"));
    set_busy(false);
}

void TrainPage::stop() {
    worker_->request_stop();  // atomic: seen before the next batch
    status_->setText(tr("Stopping after this batch…"));
}

void TrainPage::set_busy(bool busy, const QString& what) {
    busy_ = busy;
    const bool project = !project_.empty();
    create_->setEnabled(!busy && project);
    for (auto* w : std::initializer_list<QWidget*>{lr_find_, start_, resume_, save_, load_, recipe_})
        w->setEnabled(!busy && has_learner_);
    stop_button_->setEnabled(busy);
    if (busy) {
        status_->setText(what);
        progress_->setRange(0, 0);
    } else {
        progress_->setRange(0, 1);
        progress_->setValue(0);
    }
    Q_EMIT busy_changed(busy);
}

bool TrainPage::run_on_worker(const QString& what, std::function<void(TrainingWorker*)> call) {
    if (busy_ || project_.empty()) return false;
    set_busy(true, what);
    QMetaObject::invokeMethod(worker_, [w = worker_, call = std::move(call)] { call(w); }, Qt::QueuedConnection);
    return true;
}

void TrainPage::choose_learning_rate(double lr) {
    lr_->setText(QString::number(lr, 'g', 3));
    Q_EMIT log(tr("Learning rate set to %1").arg(lr_->text()));
}

void TrainPage::update_weights_state() {
    if (!pretrained_->isChecked()) {
        weights_state_->setText(tr("(from scratch)"));
        return;
    }
    const auto arch = models::parse_arch(arch_->currentText().toStdString());
    weights_state_->setText(models::weights_state(arch) == models::WeightsState::Cached ? tr("cached")
                                                                                      : tr("to download"));
}

void TrainPage::start_fit() {
    bool ok = false;
    const auto rates = parse_rates(lr_->text(), &ok);
    if (!ok) {
        QMessageBox::warning(this, tr("Learning rate"),
                             tr("Give one learning rate, or three separated by commas (early layers, late layers, head)."));
        return;
    }
    train::FitOptions o;
    o.lrs = rates;
    o.n_cycle = cycles_->value();
    o.cycle_len = cycle_len_->value();
    o.cycle_mult = cycle_mult_->value();
    if (wd_->value() > 0) o.wds = {wd_->value()};
    const int freeze_to = 2 - trainable_->currentIndex();  // head only = 2, late = 1, all = 0
    const bool precompute = precompute_->isChecked() && freeze_to == 2;
    const bool bn = bn_freeze_->isChecked();
    const int nproc = processes_->value();
    if (nproc > 1 && batch_->value() % nproc != 0) {
        QMessageBox::warning(this, tr("Batch size"), tr("The batch size (%1) is the global batch: use a multiple of the %2 processes.")
                                                         .arg(batch_->value()).arg(nproc));
        return;
    }
    set_busy(true, nproc > 1 ? tr("Training in %1 processes…").arg(nproc) : tr("Training…"));
    if (nproc > 1)
        QMetaObject::invokeMethod(worker_, [w = worker_, o, precompute, freeze_to, bn, nproc] {
            w->fit_processes(o, precompute, freeze_to, bn, nproc);
        }, Qt::QueuedConnection);
    else
        QMetaObject::invokeMethod(worker_, [w = worker_, o, precompute, freeze_to, bn] { w->fit(o, precompute, freeze_to, bn); },
                                  Qt::QueuedConnection);
}

void TrainPage::show_lr_curve(const LrCurve& c) {
    lr_plot_->graph(0)->setData(c.lrs, c.losses);
    QVector<double> sx, sy;
    for (double s : {c.minimum, c.steepest, c.valley}) {
        if (!c.valid || s <= 0 || c.lrs.isEmpty()) continue;
        // The loss at the suggestion, from the nearest recorded point.
        int best = 0;
        for (int i = 1; i < c.lrs.size(); ++i)
            if (std::abs(std::log(c.lrs[i] / s)) < std::abs(std::log(c.lrs[best] / s))) best = i;
        sx << s;
        sy << c.losses[best];
    }
    lr_plot_->graph(1)->setData(sx, sy);
    lr_plot_->rescaleAxes();
    lr_plot_->replot(QCustomPlot::rpQueuedReplot);
    if (c.valid) {
        choose_learning_rate(c.minimum);
        Q_EMIT log(tr("LR finder suggests: minimum/10 %1, steepest %2, valley %3 (click the curve to choose another)")
                       .arg(c.minimum, 0, 'g', 3)
                       .arg(c.steepest, 0, 'g', 3)
                       .arg(c.valley, 0, 'g', 3));
    }
}

void TrainPage::add_points(const QVector<LossPoint>& points) {
    for (const auto& p : points) {
        loss_plot_->graph(0)->addData(static_cast<double>(p.iteration), p.loss);
        loss_plot_->graph(1)->addData(static_cast<double>(p.iteration), p.smooth_loss);
        loss_plot_->graph(2)->addData(static_cast<double>(p.iteration), p.lr);
    }
    loss_plot_->rescaleAxes();
    // A constant learning rate would give the lr axis no height: start it at zero.
    bool found = false;
    const QCPRange lr_range = loss_plot_->graph(2)->getValueRange(found);
    if (found) loss_plot_->yAxis2->setRange(0, lr_range.upper * 1.1 + 1e-12);
    loss_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void TrainPage::add_epoch(const train::EpochRecord& r) {
    const int n = epochs_shown_++;
    metrics_plot_->graph(0)->addData(n, r.trn_loss);
    metrics_plot_->graph(1)->addData(n, r.val_loss);
    metrics_plot_->graph(2)->addData(n, r.accuracy);
    metrics_plot_->xAxis->setRange(-0.5, n + 0.5);
    metrics_plot_->graph(0)->rescaleValueAxis(false, true);
    metrics_plot_->graph(1)->rescaleValueAxis(true, true);
    metrics_plot_->yAxis2->setRange(0, 1);
    metrics_plot_->replot(QCustomPlot::rpQueuedReplot);
    table_->insertRow(n);
    const QStringList cells{QString::number(n), QString::number(r.trn_loss, 'f', 6), QString::number(r.val_loss, 'f', 6),
                            QString::number(r.accuracy, 'f', 6), QString::number(r.log_loss, 'f', 6),
                            QString::number(r.seconds, 'f', 1) + " s"};
    for (int c = 0; c < cells.size(); ++c) {
        auto* item = new QTableWidgetItem(cells[c]);
        item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
        table_->setItem(n, c, item);
    }
    table_->scrollToBottom();
    status_->setText(tr("epoch %1: val_loss %2, accuracy %3; %4 s left")
                         .arg(n)
                         .arg(r.val_loss, 0, 'f', 4)
                         .arg(r.accuracy, 0, 'f', 4)
                         .arg(r.eta_seconds, 0, 'f', 0));
}

}  // namespace whisker::ui
