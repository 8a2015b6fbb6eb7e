#include "architecture_picker.h"

#include "whisker/models/arch_stats.h"
#include "whisker/models/weights.h"
#include "whisker/models/zoo.h"

#include <QDialogButtonBox>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

namespace whisker::ui {

namespace {

// A cell that shows text and sorts by a number (Qt::UserRole).
class NumberSortedItem : public QTableWidgetItem {
public:
    using QTableWidgetItem::QTableWidgetItem;
    bool operator<(const QTableWidgetItem& other) const override {
        const QVariant a = data(Qt::UserRole), b = other.data(Qt::UserRole);
        if (a.isValid() && b.isValid()) return a.toDouble() < b.toDouble();
        return QTableWidgetItem::operator<(other);
    }
};

QTableWidgetItem* sorted_number(double value, const QString& text) {
    auto* item = new NumberSortedItem;
    item->setData(Qt::DisplayRole, text);
    item->setData(Qt::UserRole, value);
    item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return item;
}

enum Column { Name, Family, Params, Gflops, Top1, Size, Weights, TrainSpeed, PredictSpeed, ColumnCount };

}  // namespace

QString ArchitecturePicker::summary(const QString& arch) {
    try {
        const auto& a = models::arch_info(models::parse_arch(arch.toStdString()));
        return QObject::tr("%1 · %2 M parameters · %3 GFLOPs · ImageNet top-1 %4% · %5 px (evaluated at %6 %7)")
            .arg(QString::fromStdString(a.family))
            .arg(a.parameters / 1e6, 0, 'f', 1)
            .arg(a.gflops, 0, 'f', 2)
            .arg(a.imagenet_top1, 0, 'f', 1)
            .arg(a.default_size())
            .arg(a.eval.resize)
            .arg(QString::fromStdString(a.eval.interpolation));
    } catch (const std::exception&) {
        return {};
    }
}

ArchitecturePicker::ArchitecturePicker(const QString& current, QWidget* parent) : QDialog(parent) {
    setWindowTitle(tr("Choose an architecture"));
    setObjectName("architecturePicker");
    const auto speeds = models::read_speed_records();
    const auto& archs = models::all_architectures();
    table_ = new QTableWidget(static_cast<int>(archs.size()), ColumnCount);
    table_->setObjectName("architectureTable");
    table_->setHorizontalHeaderLabels({tr("Architecture"), tr("Family"), tr("Parameters"), tr("GFLOPs"),
                                       tr("ImageNet top-1"), tr("Size (eval)"), tr("Weights"), tr("Train img/s"),
                                       tr("Predict img/s")});
    table_->horizontalHeaderItem(Size)->setToolTip(tr("Default image size; in brackets the shorter side the weights "
                                                      "were evaluated at before the centre crop"));
    table_->horizontalHeaderItem(TrainSpeed)->setToolTip(
        tr("Measured on this machine by 'whisker-cli bench train --arch A' (size and batch in the tooltip)"));
    table_->horizontalHeaderItem(PredictSpeed)->setToolTip(
        tr("Measured on this machine by 'whisker-cli bench predict --arch A'"));
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setSelectionMode(QAbstractItemView::SingleSelection);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->verticalHeader()->setVisible(false);
    table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 8);
    bool any_speed = false;
    for (int r = 0; r < static_cast<int>(archs.size()); ++r) {
        const auto& a = archs[static_cast<std::size_t>(r)];
        table_->setItem(r, Name, new QTableWidgetItem(QString::fromStdString(a.name)));
        table_->setItem(r, Family, new QTableWidgetItem(QString::fromStdString(a.family)));
        table_->setItem(r, Params, sorted_number(a.parameters / 1e6, tr("%1 M").arg(a.parameters / 1e6, 0, 'f', 1)));
        table_->setItem(r, Gflops, sorted_number(a.gflops, QString::number(a.gflops, 'f', 2)));
        table_->setItem(r, Top1, sorted_number(a.imagenet_top1, tr("%1%").arg(a.imagenet_top1, 0, 'f', 1)));
        table_->setItem(r, Size, sorted_number(a.default_size(), tr("%1 (%2 %3)")
                                                                     .arg(a.default_size())
                                                                     .arg(a.eval.resize)
                                                                     .arg(QString::fromStdString(a.eval.interpolation))));
        const bool cached = models::weights_state(a.arch) == models::WeightsState::Cached;
        table_->setItem(r, Weights, new QTableWidgetItem(cached ? tr("cached") : tr("to download")));
        const auto it = speeds.find(a.name);
        for (const bool train : {true, false}) {
            const auto& rec = it == speeds.end() ? std::nullopt : (train ? it->second.train : it->second.predict);
            QTableWidgetItem* cell;
            if (rec) {
                any_speed = true;
                cell = sorted_number(rec->images_per_second, QString::number(rec->images_per_second, 'f', 1));
                cell->setToolTip(tr("%1 px, batch %2, %3, %4")
                                     .arg(rec->size)
                                     .arg(rec->batch_size)
                                     .arg(QString::fromStdString(rec->device), QString::fromStdString(rec->when)));
            } else {
                cell = sorted_number(-1, QStringLiteral("–"));
                cell->setToolTip(tr("Not measured here yet: whisker-cli bench %1 --arch %2")
                                     .arg(train ? "train" : "predict", QString::fromStdString(a.name)));
            }
            table_->setItem(r, train ? TrainSpeed : PredictSpeed, cell);
        }
        if (QString::fromStdString(a.name) == current) table_->selectRow(r);
    }
    // Sortable by any column, shown first in the zoo's order (families together).
    table_->horizontalHeader()->setSortIndicator(-1, Qt::AscendingOrder);
    table_->setSortingEnabled(true);
    if (const auto selected = table_->selectedItems(); !selected.isEmpty()) table_->scrollToItem(selected.first());
    table_->resizeColumnsToContents();
    table_->horizontalHeader()->setStretchLastSection(true);

    auto* note = new QLabel(
        any_speed ? tr("Speeds were measured on this machine (whisker-cli bench train|predict --arch A). Click a "
                       "column header to sort.")
                  : tr("No speed measured on this machine yet: run whisker-cli bench train --arch A and bench "
                       "predict --arch A to fill the last two columns. Click a column header to sort."));
    note->setWordWrap(true);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel);
    use_ = buttons->addButton(tr("Use this architecture"), QDialogButtonBox::AcceptRole);
    use_->setObjectName("useArchitectureButton");
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    connect(table_, &QTableWidget::cellDoubleClicked, this, [this] { accept(); });
    connect(table_, &QTableWidget::itemSelectionChanged, this, [this] { use_->setEnabled(!chosen().isEmpty()); });
    use_->setEnabled(!chosen().isEmpty());

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(table_, 1);
    layout->addWidget(note);
    layout->addWidget(buttons);
    int width = 40;
    for (int c = 0; c < ColumnCount; ++c) width += table_->columnWidth(c);
    resize(std::min(width, 1200), 640);
}

QString ArchitecturePicker::chosen() const {
    const auto rows = table_->selectionModel()->selectedRows(Name);
    if (rows.isEmpty()) return {};
    return table_->item(rows.first().row(), Name)->text();
}

}  // namespace whisker::ui
