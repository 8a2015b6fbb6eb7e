#pragma once
// The architecture picker: every architecture of the zoo in one sortable table — family,
// parameters, GFLOPs, ImageNet top-1 of its weights, default image size and evaluation
// resize, whether the weights are cached, and the training and prediction speed measured on
// this machine by `whisker-cli bench train|predict --arch A` (the user's cache). Double click
// or "Use this architecture" chooses one.

#include <QDialog>
#include <QString>

class QTableWidget;
class QPushButton;

namespace whisker::ui {

class ArchitecturePicker : public QDialog {
    Q_OBJECT
public:
    explicit ArchitecturePicker(const QString& current, QWidget* parent = nullptr);
    QString chosen() const;   // the selected architecture's name ("" when none is selected)
    QTableWidget* table() const { return table_; }

    // One line about an architecture, for tooltips: "ConvNeXt · 28.6 M parameters · …".
    static QString summary(const QString& arch);

private:
    QTableWidget* table_;
    QPushButton* use_;
};

}  // namespace whisker::ui
