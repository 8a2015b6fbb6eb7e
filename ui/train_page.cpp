#include "train_page.h"

#include "architecture_picker.h"

#include "whisker/common/device.h"
#include "whisker/common/files.h"
#include "whisker/models/weights.h"
#include "whisker/train/distributed.h"

#include <nlohmann/json.hpp>
#include "whisker/models/zoo.h"
#include "whisker/data/transforms.h"

#include "qcustomplot_include.h"

#include <QCheckBox>
#include <QCoreApplication>
#include <QEvent>
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
#include <QStandardItemModel>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QSplitter>
#include <QDialog>
#include <QDialogButtonBox>
#include <QEventLoop>
#include <QTimer>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace whisker::ui {

namespace {
QCustomPlot* make_plot(const QString& title) {
    auto* p = new QCustomPlot;
    p->setMinimumHeight(170);
    // A laptop leaves each plot's axes some 40 px: five loss ticks and their labels would print
    // over each other there ("2.2 2 1.8 1.6…"); three stay readable on any height.
    for (QCPAxis* axis : {p->yAxis, p->yAxis2}) axis->ticker()->setTickCount(3);
    // A header row above the axes: the title on the left, the legend on the right. The legend
    // used to sit inside the axes, where on a laptop's short plots it covered the curves.
    auto* header = new QCPLayoutGrid;
    p->plotLayout()->insertRow(0);
    p->plotLayout()->addElement(0, 0, header);
    p->plotLayout()->setRowStretchFactor(0, 0.001);
    p->plotLayout()->setRowSpacing(0);
    auto* title_element = new QCPTextElement(p, title, QFont(p->font().family(), 9, QFont::Bold));
    title_element->setTextFlags(Qt::AlignLeft | Qt::AlignVCenter);
    title_element->setMargins(QMargins(8, 4, 8, 4));   // the row is as tall as this: room for the legend
    header->addElement(0, 0, title_element);
    p->legend->setVisible(true);
    p->axisRect()->insetLayout()->take(p->legend);
    header->addElement(0, 1, p->legend);
    header->setColumnStretchFactor(0, 1);
    header->setColumnStretchFactor(1, 0.001);
    p->legend->setLayer("legend");
    // Three entries a row, so extra curves (the EMA weights') wrap instead of widening it.
    p->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    p->legend->setWrap(3);
    p->legend->setIconSize(16, 8);
    p->legend->setRowSpacing(0);
    p->legend->setColumnSpacing(6);
    p->legend->setMargins(QMargins(4, 2, 4, 2));
    p->legend->setFont(QFont(p->font().family(), 8));
    p->legend->setBorderPen(Qt::NoPen);
    p->legend->setBrush(Qt::NoBrush);
    p->legend->setMaximumSize(QWIDGETSIZE_MAX, QWIDGETSIZE_MAX);
    const QFont small(p->font().family(), 8);
    for (QCPAxis* axis : p->axisRect()->axes()) {
        axis->setLabelFont(small);
        axis->setTickLabelFont(small);
    }
    // As many ticks as the height has room for: five labels stacked in 30 pixels are unreadable.
    QObject::connect(p, &QCustomPlot::beforeReplot, p, [p] {
        const int height = p->axisRect()->height();
        const int count = std::clamp(height / 28, 2, 6);
        for (QCPAxis* axis : {p->yAxis, p->yAxis2})
            if (axis->ticker()->tickCount() != count) axis->ticker()->setTickCount(count);
    });
    p->setNoAntialiasingOnDrag(true);
    return p;
}

// A wheel turned over the settings column scrolls the column; it changes a spin box or a
// combo box only after the user clicked into it. Otherwise scrolling down the settings on a
// laptop silently edits whichever field passes under the mouse (Qt's default).
class WheelScrollsColumn : public QObject {
public:
    WheelScrollsColumn(QScrollArea* column) : QObject(column), column_(column) {}

protected:
    bool eventFilter(QObject* watched, QEvent* event) override {
        auto* field = qobject_cast<QWidget*>(watched);
        if (event->type() != QEvent::Wheel || !field || field->hasFocus()) return false;
        QCoreApplication::sendEvent(column_->verticalScrollBar(), event);
        return true;
    }

private:
    QScrollArea* column_;
};

// A worker job's name in the words of the log and status line.
QString job_words(const QString& job) {
    if (job == "fit") return TrainPage::tr("Training");
    if (job == "resume") return TrainPage::tr("The resumed fit");
    if (job == "lr_find") return TrainPage::tr("The learning-rate sweep");
    if (job == "predict") return TrainPage::tr("Prediction");
    if (job == "recipe") return TrainPage::tr("The recipe");
    if (job == "create learner") return TrainPage::tr("The new learner");
    if (job == "resize") return TrainPage::tr("The size change");
    if (job == "map") return TrainPage::tr("The map of the data");
    if (job == "Folds") return TrainPage::tr("Making the folds");
    if (job == "Cross-validation") return TrainPage::tr("Cross-validation");
    if (job == "Ensemble") return TrainPage::tr("The ensemble");
    return job;
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

// The learning rate(s) last chosen for each project, typed or picked on the LR-finder curve
// (QSettings "projects/learning_rates": "RATES<tab>PROJECT", newest first), as the main window
// remembers each project's page: a project opens with its own rate, one never given a rate
// with the default. Projects are keyed by the normalised path MainWindow::open_project gives.
const QString kDefaultRate = QStringLiteral("1e-2");
constexpr int kRememberedRates = 64;

void remember_rate(const std::filesystem::path& project, const QString& rates) {
    const QString suffix = "\t" + QString::fromStdString(project.string());
    const QString entry = rates + suffix;
    QSettings settings;
    QStringList entries = settings.value("projects/learning_rates").toStringList();
    if (!entries.isEmpty() && entries.first() == entry) return;
    entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const QString& e) { return e.endsWith(suffix); }),
                  entries.end());
    entries.prepend(entry);
    while (entries.size() > kRememberedRates) entries.removeLast();
    settings.setValue("projects/learning_rates", entries);
}

QString remembered_rate(const std::filesystem::path& project) {
    const QString suffix = "\t" + QString::fromStdString(project.string());
    for (const QString& e : QSettings().value("projects/learning_rates").toStringList()) {
        if (!e.endsWith(suffix)) continue;
        const QString rates = e.left(e.size() - suffix.size());
        bool ok = false;
        parse_rates(rates, &ok);
        return ok ? rates : kDefaultRate;
    }
    return kDefaultRate;
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
    for (const auto& a : models::all_architectures()) {
        const QString name = QString::fromStdString(a.name);
        arch_->addItem(name);
        arch_->setItemData(arch_->count() - 1, ArchitecturePicker::summary(name), Qt::ToolTipRole);
    }
    arch_->setCurrentText("resnet34");
    arch_->setToolTip(ArchitecturePicker::summary("resnet34"));
    arch_table_ = new QPushButton(tr("Compare…"));
    arch_table_->setObjectName("archTableButton");
    arch_table_->setToolTip(tr("Every architecture in a sortable table: parameters, GFLOPs, ImageNet top-1, default "
                               "size, cached weights and the speed measured on this machine"));
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
    // fastai 0.7's aug_tfms presets; chosen with the learner, kept in learner.json.
    augment_ = new QComboBox;
    augment_->setObjectName("augmentBox");
    for (const auto p : data::augment_presets()) augment_->addItem(QString::fromStdString(data::augment_preset_name(p)));
    augment_->setToolTip(tr("side-on: rotate ±10°, lighting, left-right flips (photos of things, fastai's default)\n"
                            "top-down: rotate ±10°, lighting, all 8 flips and quarter turns (satellite, microscope)\n"
                            "basic: rotate ±10°, lighting\nnone: only the zoom and the random crop"));
    max_zoom_ = new QDoubleSpinBox;
    max_zoom_->setObjectName("maxZoomBox");
    max_zoom_->setRange(1.0, 3.0);
    max_zoom_->setSingleStep(0.05);
    max_zoom_->setValue(1.1);
    max_zoom_->setToolTip(tr("Random zoom up to this factor (1 = none)"));
    no_flip_ = new QCheckBox(tr("No flips"));
    no_flip_->setObjectName("noFlipBox");
    no_flip_->setToolTip(tr("Never mirror the images (text, digits, anything with a handedness)"));
    trivial_augment_ = new QCheckBox(tr("TrivialAugment"));
    trivial_augment_->setObjectName("trivialAugmentBox");
    trivial_augment_->setToolTip(tr("TrivialAugmentWide on top of the preset: one of 14 operations (shear, translate, "
                                    "rotate, colour, contrast, posterize, solarize, equalize, …) at a random strength "
                                    "per image, as torchvision's"));
    random_erasing_ = new QDoubleSpinBox;
    random_erasing_->setObjectName("randomErasingBox");
    random_erasing_->setRange(0, 1);
    random_erasing_->setSingleStep(0.05);
    random_erasing_->setDecimals(2);
    random_erasing_->setSpecialValueText(tr("off"));
    random_erasing_->setToolTip(tr("RandomErasing: with this probability a rectangle of the image is blanked out "
                                   "(torchvision's; 0.25 is common)"));
    connect(augment_, &QComboBox::currentTextChanged, this, [this](const QString& name) {
        if (const auto p = data::parse_augment_preset(name.toStdString())) max_zoom_->setValue(data::default_max_zoom(*p));
    });
    create_ = new QPushButton(tr("&Create learner"));
    learner_label_ = new QLabel(tr("No learner yet"));
    learner_label_->setObjectName("learnerLabel");
    learner_label_->setWordWrap(true);
    holder_banner_ = new QLabel;
    holder_banner_->setObjectName("holderBanner");
    holder_banner_->setWordWrap(true);
    holder_banner_->setStyleSheet("background: #fff3cd; color: #664d03; padding: 6px; border: 1px solid #ffe69c;");
    holder_banner_->setVisible(false);
    auto* settings = new QGroupBox(tr("Learner"));
    auto* sf = new QFormLayout(settings);
    auto* arch_row = new QHBoxLayout;
    arch_row->addWidget(arch_, 1);
    arch_row->addWidget(arch_table_);
    sf->addRow(tr("Architecture"), arch_row);
    resize_ = new QPushButton(tr("Use this size"));
    resize_->setObjectName("resizeButton");
    resize_->setToolTip(tr("Progressive resizing: the learner goes on at this image size with the same weights "
                           "(fastai's set_data(get_data(sz)))"));
    auto* size_row = new QHBoxLayout;
    size_row->addWidget(size_, 1);
    size_row->addWidget(resize_);
    sf->addRow(tr("Image size"), size_row);
    sf->addRow(tr("Batch size"), batch_);
    // Mixed precision: a choice of this program for every learner it runs (not saved with one).
    precision_ = new QComboBox;
    precision_->setObjectName("precisionBox");
    precision_->addItem(tr("auto"), static_cast<int>(train::Precision::Auto));
    precision_->addItem(tr("fp32"), static_cast<int>(train::Precision::FP32));
    precision_->addItem(tr("bf16"), static_cast<int>(train::Precision::BF16));
    precision_->addItem(tr("fp16 (GPU)"), static_cast<int>(train::Precision::FP16));
    precision_->setToolTip(tr("Arithmetic of training and prediction: auto uses bf16 where the CPU or GPU computes it "
                              "(about twice as fast, same accuracy), fp16 with loss scaling on older GPUs, else fp32. "
                              "Weights and checkpoints stay fp32."));
    if (!detect_compute_device().cuda)
        if (auto* model = qobject_cast<QStandardItemModel*>(precision_->model())) model->item(3)->setEnabled(false);
    precision_used_ = new QLabel;
    precision_used_->setObjectName("precisionUsed");
    precision_used_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    auto* precision_row = new QHBoxLayout;
    precision_row->addWidget(precision_);
    precision_row->addWidget(precision_used_, 1);
    sf->addRow(tr("Precision"), precision_row);
    auto* pre_row = new QHBoxLayout;
    pre_row->addWidget(pretrained_);
    pre_row->addWidget(weights_state_, 1);
    sf->addRow(tr("Pretrained"), pre_row);
    auto* aug_row = new QHBoxLayout;
    aug_row->addWidget(augment_, 1);
    aug_row->addWidget(new QLabel(tr("zoom")));
    aug_row->addWidget(max_zoom_);
    aug_row->addWidget(no_flip_);
    sf->addRow(tr("Augmentation"), aug_row);
    auto* extra_aug_row = new QHBoxLayout;
    extra_aug_row->addWidget(trivial_augment_);
    extra_aug_row->addWidget(new QLabel(tr("random erasing")));
    extra_aug_row->addWidget(random_erasing_);
    extra_aug_row->addStretch(1);
    sf->addRow(QString(), extra_aug_row);
    sf->addRow(create_);
    sf->addRow(learner_label_);

    // ---- LR finder ----
    lr_find_ = new QPushButton(tr("&Find learning rate"));
    lr_plot_ = make_plot(tr("Learning rate finder (click to choose)"));
    lr_plot_->setObjectName("lrPlot");
    lr_plot_->xAxis->setScaleType(QCPAxis::stLogarithmic);
    lr_plot_->xAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    // 1e-4 rather than 0.0001: a short sweep (less than a decade) puts several ticks close
    // together, and the long decimal labels then run into each other.
    lr_plot_->xAxis->setNumberFormat("eb");
    lr_plot_->xAxis->setNumberPrecision(0);
    lr_plot_->xAxis->setLabel(tr("learning rate"));
    lr_plot_->yAxis->setLabel(tr("loss"));
    lr_plot_->addGraph();
    lr_plot_->graph(0)->setName(tr("smoothed loss"));
    lr_plot_->graph(0)->setPen(QPen(QColor(30, 60, 200), 2));
    lr_plot_->addGraph();  // suggestions, as points
    lr_plot_->graph(1)->setName(tr("suggestions"));
    lr_plot_->graph(1)->setLineStyle(QCPGraph::lsNone);
    lr_plot_->graph(1)->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QColor(220, 60, 40), QColor(220, 60, 40), 8));
    lr_plot_->addGraph();  // the chosen rate, as a vertical line
    lr_plot_->graph(2)->setName(tr("chosen rate"));
    lr_plot_->graph(2)->setPen(QPen(QColor(30, 150, 60), 2, Qt::DashLine));
    connect(lr_plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
        if (lr_plot_->graph(0)->dataCount() == 0) return;
        const double x = lr_plot_->xAxis->pixelToCoord(e->position().x());
        if (x > 0) choose_learning_rate(x);
    });
    // The finder's button sits on the plot's own row, not in a titled box: the plot's title
    // says what it is, and a short screen needs the height for the curve.
    auto* finder = new QWidget;
    finder->setObjectName("lrFinder");
    auto* fl = new QVBoxLayout(finder);
    fl->setContentsMargins(0, 0, 0, 0);
    fl->setSpacing(2);
    fl->addWidget(lr_find_);
    fl->addWidget(lr_plot_, 1);

    // ---- fit ----
    lr_ = new QLineEdit(kDefaultRate);
    lr_->setObjectName("lrEdit");
    lr_->setToolTip(tr("One learning rate, or three (early layers, late layers, head) separated by commas"));
    // The project's rate is kept for the next time it is opened: when typed (Enter, or the
    // field left), chosen on the curve, and when the project is left or the window closed.
    connect(lr_, &QLineEdit::editingFinished, this, &TrainPage::remember_learning_rate);
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
    wd_->setSpecialValueText(tr("none"));   // 0 reads "none", not "0.000000"
    wd_->setRange(0, 1);
    wd_->setSingleStep(1e-4);
    // Modern training options (issue-level details in docs/training.md): MixUp / CutMix on the
    // training batches, and an exponential moving average of the weights.
    auto alpha_box = [this](const char* name, const QString& tip) {
        auto* b = new QDoubleSpinBox;
        b->setObjectName(name);
        b->setRange(0, 4);
        b->setSingleStep(0.1);
        b->setDecimals(2);
        b->setSpecialValueText(tr("off"));
        b->setToolTip(tip);
        return b;
    };
    mixup_ = alpha_box("mixupBox", tr("MixUp: blend pairs of training images and their labels, λ ~ Beta(α, α) "
                                      "(0.2–0.4 is common); not with precompute"));
    cutmix_ = alpha_box("cutmixBox", tr("CutMix: paste a box of one training image into another, labels mixed by area "
                                        "(α = 1 is common); not with precompute"));
    ema_ = new QDoubleSpinBox;
    ema_->setObjectName("emaBox");
    ema_->setRange(0, 0.9999);
    ema_->setDecimals(4);
    ema_->setSingleStep(0.001);
    ema_->setSpecialValueText(tr("off"));
    ema_->setToolTip(tr("Weight EMA: also keep an exponential moving average of the weights (decay such as 0.999), "
                        "validated every epoch (ema_ columns) and saved with the checkpoints"));
    label_smoothing_ = new QDoubleSpinBox;
    label_smoothing_->setObjectName("labelSmoothingBox");
    label_smoothing_->setRange(0, 0.5);
    label_smoothing_->setSingleStep(0.05);
    label_smoothing_->setDecimals(2);
    label_smoothing_->setSpecialValueText(tr("off"));
    label_smoothing_->setToolTip(tr("Label smoothing ε: train towards (1−ε) for the right class and ε spread over all "
                                    "classes (0.1 is usual); the validation loss stays the plain one"));
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
    sync_bn_ = new QCheckBox(tr("Sync BN"));
    sync_bn_->setObjectName("syncBnBox");
    sync_bn_->setToolTip(tr("Synchronised BatchNorm (whisker-cli fit --sync-bn): the BatchNorm statistics of the whole "
                            "global batch instead of each process's share, as PyTorch's SyncBatchNorm. Helps when each "
                            "process has only a few images; costs one small exchange per BatchNorm layer."));
    accumulate_ = new QSpinBox;
    accumulate_->setObjectName("accumulateBox");
    accumulate_->setRange(1, 256);
    accumulate_->setSpecialValueText(tr("off (step every batch)"));
    accumulate_->setSuffix(tr(" batches per step"));
    accumulate_->setToolTip(tr("Gradient accumulation (whisker-cli fit --accumulate): the optimiser steps every N "
                               "batches, so batch size 16 with 4 trains like a batch of 64 in a quarter of the GPU "
                               "memory. The schedule and the learning-rate finder count steps; BatchNorm sees each "
                               "batch of 16."));
    effective_batch_ = new QLabel;
    effective_batch_->setObjectName("effectiveBatchLabel");
    auto update_batch_options = [this] {
        sync_bn_->setEnabled(processes_->value() > 1);
        const int n = accumulate_->value();
        effective_batch_->setText(n > 1 ? tr("= %1 per step").arg(batch_->value() * n) : QString());
    };
    connect(processes_, &QSpinBox::valueChanged, this, update_batch_options);
    connect(batch_, &QSpinBox::valueChanged, this, update_batch_options);
    connect(accumulate_, &QSpinBox::valueChanged, this, update_batch_options);
    update_batch_options();
    start_ = new QPushButton(tr("&Start"));
    stop_button_ = new QPushButton(tr("Sto&p"));
    resume_ = new QPushButton(tr("&Resume"));
    save_ = new QPushButton(tr("Save…"));
    load_ = new QPushButton(tr("Load…"));
    recipe_ = new QPushButton(tr("Run the &recipe (fastai's Dogs vs. Cats lesson)"));
    recipe_->setToolTip(tr("precompute → lr_find → fit → train with augmentation (SGDR) → unfreeze → "
                           "differential rates → lr_find → SGDR with cycle_mult 2, then TTA and the submission.\n"
                           "A learner trained from scratch runs the same steps adapted to it: one epoch per frozen "
                           "step, then every layer at 2e-3 with AdamW for 2+4+8 epochs of SGDR."));
    auto* fit_box = new QGroupBox(tr("Fit"));
    auto* ff = new QFormLayout(fit_box);
    ff->addRow(tr("Learning rate(s)"), lr_);
    ff->addRow(tr("Cycles"), cycles_);
    ff->addRow(tr("Cycle length (epochs)"), cycle_len_);
    ff->addRow(tr("Cycle multiplier"), cycle_mult_);
    ff->addRow(tr("Weight decay"), wd_);
    auto* mix_row = new QHBoxLayout;
    mix_row->addWidget(mixup_, 1);
    mix_row->addWidget(new QLabel(tr("CutMix α")));
    mix_row->addWidget(cutmix_, 1);
    ff->addRow(tr("MixUp α"), mix_row);
    auto* ema_row = new QHBoxLayout;
    ema_row->addWidget(ema_, 1);
    ema_row->addWidget(new QLabel(tr("Label smoothing")));
    ema_row->addWidget(label_smoothing_, 1);
    ff->addRow(tr("Weight EMA"), ema_row);
    ff->addRow(tr("Train"), trainable_);
    // A body trained from scratch is random: fitting only the head on it learns little, and
    // nothing else on the page would tell a new user why the accuracy stays near chance.
    scratch_note_ = new QLabel(tr("From scratch: the body is random, so train everything "
                                  "(or run the recipe, which does)."));
    scratch_note_->setObjectName("scratchNote");
    scratch_note_->setWordWrap(true);
    scratch_note_->setStyleSheet("color: #a05a00");
    scratch_note_->setVisible(false);
    ff->addRow(scratch_note_);
    connect(trainable_, &QComboBox::currentIndexChanged, this, &TrainPage::update_scratch_note);
    ff->addRow(precompute_);
    ff->addRow(bn_freeze_);
    auto* parallel_row = new QHBoxLayout;
    parallel_row->addWidget(processes_, 1);
    parallel_row->addWidget(all_gpus_);
    parallel_row->addWidget(sync_bn_);
    ff->addRow(tr("Processes"), parallel_row);
    auto* accumulate_row = new QHBoxLayout;
    accumulate_row->addWidget(accumulate_, 1);
    accumulate_row->addWidget(effective_batch_);
    ff->addRow(tr("Accumulate"), accumulate_row);
    auto* buttons = new QHBoxLayout;
    for (auto* b : {start_, stop_button_, resume_, save_, load_}) buttons->addWidget(b);
    ff->addRow(buttons);
    ff->addRow(recipe_);

    // ---- live ----
    progress_ = new QProgressBar;
    status_ = new QLabel(tr("Open a project with a dataset, then create a learner."));
    loss_plot_ = make_plot(tr("Batch loss and learning rate"));
    loss_plot_->setObjectName("lossPlot");
    loss_plot_->addGraph();
    loss_plot_->graph(0)->setName(tr("batch loss"));
    loss_plot_->graph(0)->setPen(QPen(QColor(150, 150, 220)));
    loss_plot_->addGraph();
    loss_plot_->graph(1)->setName(tr("smoothed loss"));
    loss_plot_->graph(1)->setPen(QPen(QColor(30, 60, 200), 2));
    loss_plot_->yAxis2->setVisible(true);
    loss_plot_->addGraph(loss_plot_->xAxis, loss_plot_->yAxis2);
    loss_plot_->graph(2)->setName(tr("learning rate (right)"));
    loss_plot_->graph(2)->setPen(QPen(QColor(230, 120, 20)));
    loss_plot_->xAxis->setLabel(tr("batch"));
    loss_plot_->yAxis->setLabel(tr("loss"));
    loss_plot_->yAxis2->setLabel(tr("lr"));
    metrics_plot_ = make_plot(tr("Epochs"));
    metrics_plot_->setObjectName("metricsPlot");
    for (const QColor& c : {QColor(30, 60, 200), QColor(200, 40, 40)}) {
        metrics_plot_->addGraph();
        metrics_plot_->graph(metrics_plot_->graphCount() - 1)->setPen(QPen(c, 2));
        metrics_plot_->graph(metrics_plot_->graphCount() - 1)->setScatterStyle(QCPScatterStyle::ssDisc);
    }
    metrics_plot_->graph(0)->setName(tr("trn_loss"));
    metrics_plot_->graph(1)->setName(tr("val_loss"));
    metrics_plot_->yAxis->setLabel(tr("loss"));
    metrics_plot_->yAxis2->setVisible(true);
    metrics_plot_->addGraph(metrics_plot_->xAxis, metrics_plot_->yAxis2);
    metrics_plot_->graph(2)->setName(tr("accuracy (right)"));
    metrics_plot_->graph(2)->setPen(QPen(QColor(30, 150, 60), 2));
    metrics_plot_->graph(2)->setScatterStyle(QCPScatterStyle::ssDisc);
    metrics_plot_->xAxis->setLabel(tr("epoch"));
    metrics_plot_->yAxis2->setLabel(tr("accuracy"));
    metrics_plot_->yAxis2->setRange(0, 1);
    table_ = new QTableWidget(0, 8);
    table_->setObjectName("epochTable");
    table_->setHorizontalHeaderLabels({tr("epoch"), tr("trn_loss"), tr("val_loss"), tr("accuracy"), tr("log_loss"), tr("time"),
                                       tr("ema_val_loss"), tr("ema_accuracy")});
    // The EMA weights' columns appear with the first fit that keeps an EMA.
    table_->setColumnHidden(6, true);
    table_->setColumnHidden(7, true);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    table_->verticalHeader()->setVisible(false);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 6);
    table_->setMinimumHeight(table_->horizontalHeader()->sizeHint().height() + 3 * (table_->fontMetrics().height() + 6));

    // The settings scroll on a small screen (1280x720) instead of pushing the window past it.
    auto* left_content = new QWidget;
    auto* ll = new QVBoxLayout(left_content);
    ll->setContentsMargins(0, 0, 4, 0);
    ll->addWidget(holder_banner_);
    ll->addWidget(settings);
    ll->addWidget(fit_box);
    ll->addStretch(1);
    auto* left = new QScrollArea;
    left->setObjectName("trainSettingsScroll");
    left->setWidget(left_content);
    left->setWidgetResizable(true);
    left->setFrameShape(QFrame::NoFrame);
    left->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    left->setMinimumWidth(left_content->minimumSizeHint().width() + left->verticalScrollBar()->sizeHint().width() + 4);
    auto* wheel_guard = new WheelScrollsColumn(left);
    for (QWidget* field : left_content->findChildren<QWidget*>()) {
        if (!qobject_cast<QAbstractSpinBox*>(field) && !qobject_cast<QComboBox*>(field)) continue;
        field->setFocusPolicy(Qt::StrongFocus);   // no focus by wheel, so the guard can tell
        field->installEventFilter(wheel_guard);
    }
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
    plots->setChildrenCollapsible(false);
    // Equal shares: the table gets room for about 6 rows on a 1600x1000 screen.
    for (int i = 0; i < 4; ++i) plots->setStretchFactor(i, 1);
    for (auto* p : {lr_plot_, loss_plot_, metrics_plot_}) p->setMinimumHeight(100);
    rl->addWidget(plots, 1);
    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 3);
    split->setSizes({380, 900});
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(split);

    // ---- wiring ----
    connect(arch_, &QComboBox::currentTextChanged, this, &TrainPage::update_weights_state);
    connect(arch_, &QComboBox::currentTextChanged, this, &TrainPage::architecture_changed);
    connect(accumulate_, &QSpinBox::valueChanged, this, [this](int n) {
        QMetaObject::invokeMethod(worker_, [w = worker_, n] { w->set_accumulate(n); }, Qt::QueuedConnection);
    });
    connect(precision_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] {
        const int p = precision_->currentData().toInt();
        QMetaObject::invokeMethod(worker_, [w = worker_, p] { w->set_precision(p); }, Qt::QueuedConnection);
    });
    connect(arch_table_, &QPushButton::clicked, this, [this] {
        ArchitecturePicker* picker = open_architecture_picker();
        picker->hide();
        picker->exec();
    });
    connect(pretrained_, &QCheckBox::toggled, this, &TrainPage::update_weights_state);
    connect(create_, &QPushButton::clicked, this, [this] {
        if (has_learner_ && view_.trained) {
            QMessageBox box(QMessageBox::Question, tr("New learner"),
                            tr("Replace the project's learner (%1) with a new %2 at %3 px?")
                                .arg(view_.learner, arch_->currentText()).arg(size_->value()),
                            QMessageBox::NoButton, this);
            box.setInformativeText(tr("Its trained weights are kept as a checkpoint (Load… brings them back)."));
            QPushButton* replace = box.addButton(tr("New learner"), QMessageBox::AcceptRole);
            QPushButton* keep = box.addButton(tr("Continue with the current one"), QMessageBox::RejectRole);
            box.setDefaultButton(keep);
            box.exec();
            if (box.clickedButton() != replace) return;
        }
        LearnerSettings s;
        s.project = QString::fromStdString(project_.string());
        s.arch = arch_->currentText();
        s.size = size_->value();
        s.batch_size = batch_->value();
        s.pretrained = pretrained_->isChecked();
        s.augment = augment_->currentText();
        s.max_zoom = max_zoom_->value();
        s.no_flip = no_flip_->isChecked();
        s.trivial_augment = trivial_augment_->isChecked();
        s.random_erasing = random_erasing_->value();
        set_busy(true, tr("Creating the learner…"));
        QMetaObject::invokeMethod(worker_, [w = worker_, s] { w->create_learner(s); }, Qt::QueuedConnection);
    });
    connect(lr_find_, &QPushButton::clicked, this, [this] {
        set_busy(true, tr("Finding a learning rate…"));
        QMetaObject::invokeMethod(worker_, [w = worker_] { w->lr_find(); }, Qt::QueuedConnection);
    });
    connect(start_, &QPushButton::clicked, this, &TrainPage::start_fit);
    connect(size_, &QSpinBox::valueChanged, this, &TrainPage::update_buttons);
    connect(resize_, &QPushButton::clicked, this, [this] {
        const int size = size_->value();
        set_busy(true, tr("Changing the image size to %1 px…").arg(size));
        QMetaObject::invokeMethod(worker_, [w = worker_, size] { w->resize(size); }, Qt::QueuedConnection);
    });
    connect(stop_button_, &QPushButton::clicked, this, &TrainPage::stop);
    connect(recipe_, &QPushButton::clicked, this, [this] {
        set_busy(true, tr("Running the recipe…"));

        QMetaObject::invokeMethod(worker_, [w = worker_] { w->run_recipe({}); }, Qt::QueuedConnection);
    });
    connect(worker_, &TrainingWorker::recipe_step, this, [this](int, const QString& step) {
        status_->setText(step);
        Q_EMIT log(step);
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
        QDialog* d = open_checkpoint_dialog();
        d->hide();
        d->exec();
    });
    connect(worker_, &TrainingWorker::session_changed, this, &TrainPage::show_session);
    connect(worker_, &TrainingWorker::lr_find_points, this, &TrainPage::draw_lr_curve);
    connect(worker_, &TrainingWorker::progress, this, [this](const QString& stage, qlonglong done, qlonglong total) {
        status_->setText(stage);
        progress_->setRange(0, total > 0 ? static_cast<int>(total) : 0);
        progress_->setValue(static_cast<int>(done));
        Q_EMIT progress_changed(stage, done, total);
    });
    connect(worker_, &TrainingWorker::lr_find_finished, this, [this](const LrCurve& c) { show_lr_curve(c, true); });
    connect(worker_, &TrainingWorker::note, this, &TrainPage::log);
    connect(worker_, &TrainingWorker::batches, this, &TrainPage::add_points);
    connect(worker_, &TrainingWorker::epoch_finished, this, &TrainPage::add_epoch);
    connect(worker_, &TrainingWorker::job_finished, this, [this](const QString& job, bool stopped, const QString& message) {
        set_busy(false);
        if (job == "open" || job == "reload") {   // not the user's job: the page shows the result
            if (!view_.can_resume) status_->setText(view_.has_learner ? tr("Ready") : QString());
            return;
        }
        status_->setText(stopped ? tr("%1 stopped: %2").arg(job_words(job), message)
                         : job == "save"  ? tr("Saved the checkpoint %1").arg(message)
                         : job == "load"  ? tr("Loaded the checkpoint %1").arg(message)
                                          : tr("%1: done").arg(job_words(job)));
        Q_EMIT log(status_->text());
        if (stopped && message.contains("NaN")) QMessageBox::warning(this, tr("Training stopped"), message);
    });
    connect(worker_, &TrainingWorker::failed, this, [this](const QString& job, const QString& message) {
        set_busy(false);
        status_->setText(tr("%1 failed").arg(job_words(job)));
        Q_EMIT log(tr("%1 failed: %2").arg(job_words(job), message));
        // The Ensemble and Cross-validation dialogs show their own jobs' errors where the user
        // is looking; a second, modal box over them would only repeat it.
        const bool shown_by_a_dialog = job == "Ensemble" || job == "Folds" || job == "Cross-validation";
        if (!shown_by_a_dialog) QMessageBox::warning(this, tr("%1 failed").arg(job_words(job)), message);
    });
    set_busy(false);
    update_weights_state();
}

TrainPage::~TrainPage() {
    remember_learning_rate();
    worker_->request_stop();
    thread_.quit();
    thread_.wait();
}

void TrainPage::set_project(const std::filesystem::path& project) {
    remember_learning_rate();   // the project being left
    project_ = project;
    view_ = SessionView{};
    has_learner_ = false;
    external_holder_.clear();
    holder_banner_->setVisible(false);
    learner_label_->setText(tr("Opening %1…").arg(QString::fromStdString(project.string())));
    lr_->setText(project.empty() ? kDefaultRate : remembered_rate(project));
    status_->setText(QString());
    clear_plots();
    update_buttons();
    // The worker replaces its session with this project's (its learner loaded as it was left).
    set_busy(true, tr("Opening the project…"));
    QMetaObject::invokeMethod(worker_, [w = worker_, p = QString::fromStdString(project.string())] { w->open(p); },
                              Qt::QueuedConnection);
}

void TrainPage::clear_plots() {
    for (int g = 0; g < lr_plot_->graphCount(); ++g) lr_plot_->graph(g)->data()->clear();
    lr_plot_->clearItems();
    lr_plot_->replot();
    for (int g = 0; g < loss_plot_->graphCount(); ++g) loss_plot_->graph(g)->data()->clear();
    loss_plot_->yAxis->setScaleType(QCPAxis::stLinear);
    loss_plot_->replot();
    for (int g = 0; g < metrics_plot_->graphCount(); ++g) metrics_plot_->graph(g)->data()->clear();
    metrics_plot_->yAxis->setScaleType(QCPAxis::stLinear);
    metrics_plot_->replot();
    table_->setRowCount(0);
    table_->setColumnHidden(6, true);
    table_->setColumnHidden(7, true);
    epochs_shown_ = 0;
    epoch_losses_.clear();
}

void TrainPage::show_session(const SessionView& v) {
    // Only the project this page shows (a late view of a closed project is dropped).
    if (v.project.isEmpty() || std::filesystem::path(v.project.toStdString()) != project_) return;
    view_ = v;
    has_learner_ = v.has_learner;
    {
        const QSignalBlocker b1(arch_), b2(pretrained_), b3(augment_);
        arch_->setCurrentText(v.settings.arch);
        arch_->setToolTip(ArchitecturePicker::summary(v.settings.arch));
        // The choice in a word (the settings column stays narrow at 1280x720), why in the tooltip.
        const QString used = v.precision.section(' ', 0, 0);
        precision_used_->setText(used.isEmpty() ? QString() : tr("→ %1").arg(used));
        precision_used_->setToolTip(v.precision);
        shown_arch_ = v.settings.arch;
        augment_->setCurrentText(v.settings.augment);
        max_zoom_->setValue(v.settings.max_zoom);
        no_flip_->setChecked(v.settings.no_flip);
        trivial_augment_->setChecked(v.settings.trivial_augment);
        random_erasing_->setValue(v.settings.random_erasing);
        size_->setValue(v.settings.size);
        batch_->setValue(v.settings.batch_size);
        pretrained_->setChecked(v.settings.pretrained);
    }
    update_weights_state();
    if (v.has_learner) {
        learner_label_->setText(tr("<b>Learner:</b> %1").arg(v.learner.toHtmlEscaped()));
        trainable_->setCurrentIndex(2 - std::clamp(v.frozen_groups, 0, 2));
        precompute_->setChecked(v.precompute);
        bn_freeze_->setChecked(v.bn_freeze);
    } else if (!v.has_dataset) {
        learner_label_->setText(tr("No dataset yet: get the images on the Data page first."));
    } else if (!v.learner_error.isEmpty()) {
        learner_label_->setText(tr("%1<br>Choose the settings above and create a new learner.").arg(v.learner_error.toHtmlEscaped()));
    } else {
        learner_label_->setText(tr("No learner yet: choose the settings above and create one."));
    }
    update_scratch_note();
    clear_plots();
    if (v.lr_curve.valid || !v.lr_curve.lrs.isEmpty()) show_lr_curve(v.lr_curve, false);
    add_points(v.batches);
    for (const auto& e : v.epochs) add_epoch(e);
    if (v.can_resume) status_->setText(v.resume_text);
    else if (!busy_) status_->setText(v.has_learner ? tr("Ready") : QString());
    update_buttons();
}

void TrainPage::set_external_holder(const QString& text) {
    external_holder_ = text;
    holder_banner_->setText(tr("<b>%1</b> is using this project. Training controls are off until it finishes; "
                               "its results show here then.").arg(text.toHtmlEscaped()));
    holder_banner_->setVisible(!text.isEmpty());
    update_buttons();
}

bool TrainPage::wait_until_idle(int timeout_ms) {
    if (!busy_) return true;
    QEventLoop loop;
    QTimer timer;
    timer.setSingleShot(true);
    connect(&timer, &QTimer::timeout, &loop, &QEventLoop::quit);
    connect(this, &TrainPage::busy_changed, &loop, [&loop](bool busy) {
        if (!busy) loop.quit();
    });
    timer.start(timeout_ms);
    loop.exec();
    return !busy_;
}

ArchitecturePicker* TrainPage::open_architecture_picker() {
    auto* picker = new ArchitecturePicker(arch_->currentText(), this);
    picker->setAttribute(Qt::WA_DeleteOnClose);
    connect(picker, &QDialog::accepted, this, [this, picker] {
        if (!picker->chosen().isEmpty()) arch_->setCurrentText(picker->chosen());
    });
    picker->open();
    return picker;
}

QDialog* TrainPage::open_checkpoint_dialog() {
    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setObjectName("checkpointDialog");
    dialog->setWindowTitle(tr("Load a checkpoint"));
    auto* table = new QTableWidget(0, 6, dialog);
    table->setObjectName("checkpointTable");
    table->setHorizontalHeaderLabels({tr("name"), tr("saved"), tr("model"), tr("epochs"), tr("val_loss"), tr("accuracy")});
    table->verticalHeader()->setVisible(false);
    table->setSelectionBehavior(QAbstractItemView::SelectRows);
    table->setSelectionMode(QAbstractItemView::SingleSelection);
    table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    for (const auto& c : view_.checkpoints) {
        const int r = table->rowCount();
        table->insertRow(r);
        const QStringList cells{c.name + (c.fit_in_progress ? tr(" (interrupted fit)") : QString()), c.saved,
                                tr("%1 at %2 px").arg(c.arch).arg(c.size), QString::number(c.epochs),
                                c.has_metrics ? QString::number(c.val_loss, 'f', 4) : QString("—"),
                                c.has_metrics ? QString::number(c.accuracy, 'f', 4) : QString("—")};
        for (int k = 0; k < cells.size(); ++k) {
            auto* item = new QTableWidgetItem(cells[k]);
            item->setData(Qt::UserRole, c.name);
            table->setItem(r, k, item);
        }
    }
    table->resizeColumnsToContents();
    table->horizontalHeader()->setStretchLastSection(true);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, dialog);
    QPushButton* load = buttons->addButton(tr("Load"), QDialogButtonBox::AcceptRole);
    load->setObjectName("loadCheckpointButton");
    load->setEnabled(false);
    connect(table, &QTableWidget::itemSelectionChanged, dialog, [table, load] { load->setEnabled(!table->selectedItems().isEmpty()); });
    connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::reject);
    auto do_load = [this, dialog, table] {
        const auto items = table->selectedItems();
        if (items.isEmpty() || busy_) return;
        const QString name = items.first()->data(Qt::UserRole).toString();
        dialog->accept();
        set_busy(true, tr("Loading %1…").arg(name));
        QMetaObject::invokeMethod(worker_, [w = worker_, name] { w->load(name); }, Qt::QueuedConnection);
    };
    connect(buttons, &QDialogButtonBox::accepted, dialog, do_load);
    connect(table, &QTableWidget::cellDoubleClicked, dialog, do_load);
    auto* layout = new QVBoxLayout(dialog);
    auto* help = new QLabel(view_.checkpoints.isEmpty() ? tr("This project has no checkpoints yet (Save… makes one).")
                                                        : tr("The project's checkpoints, newest first. \"current\" is the learner as it "
                                                             "was last left; \"autosave\" is written at each epoch's end."));
    help->setWordWrap(true);
    layout->addWidget(help);
    layout->addWidget(table);
    layout->addWidget(buttons);
    dialog->resize(640, 320);
    dialog->show();
    return dialog;
}

void TrainPage::stop() {
    worker_->request_stop();  // atomic: seen before the next batch
    status_->setText(tr("Stopping after this batch…"));
    Q_EMIT stop_requested();  // jobs of other pages on this worker with flags of their own (the map)
}

void TrainPage::set_busy(bool busy, const QString& what) {
    busy_ = busy;
    update_buttons();
    progress_->setVisible(busy);
    if (busy) {
        status_->setText(what);
        progress_->setRange(0, 0);
    } else {
        progress_->setRange(0, 1);
        progress_->setValue(0);
    }
    Q_EMIT busy_changed(busy);
}

void TrainPage::update_buttons() {
    const bool free = !busy_ && !project_.empty() && external_holder_.isEmpty();
    create_->setEnabled(free && view_.has_dataset);
    create_->setText(has_learner_ ? tr("&New learner…") : tr("&Create learner"));
    create_->setToolTip(has_learner_ ? tr("Replace the project's learner with a new one made from these settings "
                                          "(its trained weights are kept as a checkpoint)")
                                     : tr("Create the learner: the pretrained body with a new head, frozen"));
    for (auto* w : std::initializer_list<QWidget*>{lr_find_, start_, save_, load_, recipe_}) w->setEnabled(free && has_learner_);
    resume_->setEnabled(free && has_learner_ && view_.can_resume);
    resize_->setVisible(has_learner_);
    resize_->setEnabled(free && has_learner_ && size_->value() != view_.settings.size);
    resume_->setToolTip(view_.can_resume ? view_.resume_text : tr("No interrupted fit to resume"));
    stop_button_->setEnabled(busy_);
}

bool TrainPage::run_on_worker(const QString& what, std::function<void(TrainingWorker*)> call) {
    if (busy_ || project_.empty()) return false;
    set_busy(true, what);
    QMetaObject::invokeMethod(worker_, [w = worker_, call = std::move(call)] { call(w); }, Qt::QueuedConnection);
    return true;
}

void TrainPage::remember_learning_rate() {
    bool ok = false;
    parse_rates(lr_->text(), &ok);
    if (ok && !project_.empty()) remember_rate(project_, lr_->text().trimmed());   // (a text that is no rate is not kept)
}

void TrainPage::choose_learning_rate(double lr) {
    lr_->setText(QString::number(lr, 'g', 3));
    remember_learning_rate();
    mark_chosen_rate(lr);
    Q_EMIT log(tr("Learning rate set to %1").arg(lr_->text()));
}

void TrainPage::mark_chosen_rate(double lr) {
    QCPGraph* line = lr_plot_->graph(2);
    line->data()->clear();
    if (lr_plot_->graph(0)->dataCount() == 0 || lr <= 0) return;
    bool found = false;
    const QCPRange range = lr_plot_->graph(0)->getValueRange(found);
    if (!found) return;
    line->addData(lr, range.lower);
    line->addData(lr, range.upper);
    lr_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void TrainPage::architecture_changed(const QString& arch) {
    arch_->setToolTip(ArchitecturePicker::summary(arch));
    // The size follows the architecture while it is still the previous one's default (a size
    // the user chose stays); a learner's size is its own.
    try {
        const int size = models::arch_info(models::parse_arch(arch.toStdString())).default_size();
        const int previous = models::arch_info(models::parse_arch(shown_arch_.toStdString())).default_size();
        if (!has_learner_ && size_->value() == previous) size_->setValue(size);
        size_->setSingleStep(models::arch_info(models::parse_arch(arch.toStdString())).size_multiple > 1
                                 ? models::arch_info(models::parse_arch(arch.toStdString())).size_multiple
                                 : 32);
    } catch (const std::exception&) {
    }
    shown_arch_ = arch;
}

void TrainPage::update_scratch_note() {
    scratch_note_->setVisible(view_.has_learner && !view_.settings.pretrained && trainable_->currentIndex() == 0);
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
    o.mixup_alpha = mixup_->value();
    o.cutmix_alpha = cutmix_->value();
    o.ema_decay = ema_->value();
    o.label_smoothing = label_smoothing_->value();
    o.accumulate = accumulate_->value();
    if ((o.mixup_alpha > 0 || o.cutmix_alpha > 0) && precompute_->isChecked() && trainable_->currentIndex() == 0) {
        QMessageBox::warning(this, tr("MixUp and CutMix"),
                             tr("MixUp and CutMix mix images, and precompute trains on cached activations: turn "
                                "\"Precompute activations\" off to use them."));
        return;
    }
    const int freeze_to = 2 - trainable_->currentIndex();  // head only = 2, late = 1, all = 0
    const bool precompute = precompute_->isChecked() && freeze_to == 2;
    const bool bn = bn_freeze_->isChecked();
    const int nproc = processes_->value();
    const bool sync_bn = nproc > 1 && sync_bn_->isChecked();
    if (nproc > 1 && batch_->value() % nproc != 0) {
        QMessageBox::warning(this, tr("Batch size"), tr("The batch size (%1) is the global batch: use a multiple of the %2 processes.")
                                                         .arg(batch_->value()).arg(nproc));
        return;
    }
    set_busy(true, nproc > 1 ? tr("Training in %1 processes…").arg(nproc) : tr("Training…"));
    if (nproc > 1)
        QMetaObject::invokeMethod(worker_, [w = worker_, o, precompute, freeze_to, bn, nproc, sync_bn] {
            w->fit_processes(o, precompute, freeze_to, bn, nproc, sync_bn);
        }, Qt::QueuedConnection);
    else
        QMetaObject::invokeMethod(worker_, [w = worker_, o, precompute, freeze_to, bn] { w->fit(o, precompute, freeze_to, bn); },
                                  Qt::QueuedConnection);
}

void TrainPage::draw_lr_curve(const QVector<double>& lrs, const QVector<double>& losses) {
    lr_plot_->graph(0)->setData(lrs, losses);
    lr_plot_->graph(1)->data()->clear();
    lr_plot_->graph(2)->data()->clear();
    lr_plot_->clearItems();
    lr_plot_->rescaleAxes();
    lr_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void TrainPage::show_lr_curve(const LrCurve& c, bool choose) {
    draw_lr_curve(c.lrs, c.losses);
    QVector<double> sx, sy;
    const struct { double lr; const char* name; } suggestions[] = {
        {c.minimum, QT_TR_NOOP("minimum/10")}, {c.steepest, QT_TR_NOOP("steepest")}, {c.valley, QT_TR_NOOP("valley")}};
    // Labels of suggestions close together (minimum/10 and valley often are) are lifted a line
    // each, so that they do not print over each other.
    std::vector<double> placed;
    for (const auto& s : suggestions) {
        if (!c.valid || s.lr <= 0 || c.lrs.isEmpty()) continue;
        int row = 0;
        for (double other : placed)
            if (std::abs(std::log10(other / s.lr)) < 1.2) ++row;
        placed.push_back(s.lr);
        // The loss at the suggestion, from the nearest recorded point.
        int best = 0;
        for (int i = 1; i < c.lrs.size(); ++i)
            if (std::abs(std::log(c.lrs[i] / s.lr)) < std::abs(std::log(c.lrs[best] / s.lr))) best = i;
        sx << s.lr;
        sy << c.losses[best];
        auto* label = new QCPItemText(lr_plot_);
        label->position->setCoords(s.lr, c.losses[best]);
        label->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
        label->setText(QString(" %1 %2").arg(tr(s.name)).arg(s.lr, 0, 'g', 2));
        label->setFont(QFont(lr_plot_->font().family(), 8));
        label->setPadding(QMargins(0, 0, 0, row * QFontMetrics(label->font()).height()));
        label->setColor(QColor(180, 40, 30));
    }
    lr_plot_->graph(1)->setData(sx, sy);
    lr_plot_->replot(QCustomPlot::rpQueuedReplot);
    if (c.valid && choose) {
        choose_learning_rate(c.minimum);
        Q_EMIT log(tr("LR finder suggests: minimum/10 %1, steepest %2, valley %3 (click the curve to choose another)")
                       .arg(c.minimum, 0, 'g', 3)
                       .arg(c.steepest, 0, 'g', 3)
                       .arg(c.valley, 0, 'g', 3));
    } else {
        bool ok = false;
        const auto rates = parse_rates(lr_->text(), &ok);
        if (ok) mark_chosen_rate(rates.back());
    }
}

void TrainPage::fit_loss_axis(QCustomPlot* plot, QCPAxis* axis, const QVector<double>& values) {
    double lo = 0, hi = 0;
    bool any = false;
    for (double v : values) {
        if (!(v > 0) || !std::isfinite(v)) continue;
        lo = any ? std::min(lo, v) : v;
        hi = any ? std::max(hi, v) : v;
        any = true;
    }
    const bool wide = any && hi / lo > 100;
    if (wide && axis->scaleType() != QCPAxis::stLogarithmic) {
        axis->setScaleType(QCPAxis::stLogarithmic);
        axis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    } else if (!wide && axis->scaleType() != QCPAxis::stLinear) {
        axis->setScaleType(QCPAxis::stLinear);
        axis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    }
    if (any) {
        const double pad = wide ? 1.3 : 1.0;
        axis->setRange(wide ? lo / pad : std::min(0.0, lo), wide ? hi * pad : hi * 1.05);
    }
    plot->replot(QCustomPlot::rpQueuedReplot);
}

void TrainPage::add_points(const QVector<LossPoint>& points) {
    if (points.isEmpty()) return;
    for (const auto& p : points) {
        loss_plot_->graph(0)->addData(static_cast<double>(p.iteration), p.loss);
        loss_plot_->graph(1)->addData(static_cast<double>(p.iteration), p.smooth_loss);
        loss_plot_->graph(2)->addData(static_cast<double>(p.iteration), p.lr);
    }
    loss_plot_->xAxis->rescale();
    // A constant learning rate would give the lr axis no height: start it at zero.
    bool found = false;
    const QCPRange lr_range = loss_plot_->graph(2)->getValueRange(found);
    if (found) loss_plot_->yAxis2->setRange(0, lr_range.upper * 1.1 + 1e-12);
    QVector<double> losses;
    for (auto it = loss_plot_->graph(0)->data()->constBegin(); it != loss_plot_->graph(0)->data()->constEnd(); ++it)
        losses << it->value;
    fit_loss_axis(loss_plot_, loss_plot_->yAxis, losses);
}

void TrainPage::add_epoch(const train::EpochRecord& r) {
    const int n = epochs_shown_++;
    metrics_plot_->graph(0)->addData(n, r.trn_loss);
    metrics_plot_->graph(1)->addData(n, r.val_loss);
    metrics_plot_->graph(2)->addData(n, r.accuracy);
    metrics_plot_->xAxis->setRange(-0.5, n + 0.5);
    epoch_losses_ << r.trn_loss << r.val_loss;
    metrics_plot_->yAxis2->setRange(0, 1);
    fit_loss_axis(metrics_plot_, metrics_plot_->yAxis, epoch_losses_);
    table_->insertRow(n);
    QStringList cells{QString::number(n), QString::number(r.trn_loss, 'f', 6), QString::number(r.val_loss, 'f', 6),
                      QString::number(r.accuracy, 'f', 6), QString::number(r.log_loss, 'f', 6),
                      QString::number(r.seconds, 'f', 1) + " s"};
    if (r.has_ema) {
        cells << QString::number(r.ema_val_loss, 'f', 6) << QString::number(r.ema_accuracy, 'f', 6);
        table_->setColumnHidden(6, false);
        table_->setColumnHidden(7, false);
    }
    for (int c = 0; c < cells.size(); ++c) {
        auto* item = new QTableWidgetItem(cells[c]);
        item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
        table_->setItem(n, c, item);
    }
    table_->scrollToBottom();
    if (busy_)
        status_->setText(tr("epoch %1: val_loss %2, accuracy %3; %4 s left")
                             .arg(n)
                             .arg(r.val_loss, 0, 'f', 4)
                             .arg(r.accuracy, 0, 'f', 4)
                             .arg(r.eta_seconds, 0, 'f', 0));
}

}  // namespace whisker::ui
