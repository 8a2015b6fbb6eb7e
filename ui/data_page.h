#pragma once
// The Data page: where the project's images come from and what they are.
// Shows the dataset summary (images per class and split, sizes), warnings, and every skipped
// file with its reason. Reads the core's manifest; never touches the images itself.

#include "whisker/data/dataset.h"

#include <QWidget>

#include <filesystem>

class QLabel;
class QTableWidget;
class QPlainTextEdit;

namespace whisker::ui {

class DataPage : public QWidget {
    Q_OBJECT
public:
    explicit DataPage(QWidget* parent = nullptr);
    // Shows `dataset` of the project at `project`; an empty dataset clears the page.
    void show_dataset(const std::filesystem::path& project, const data::Dataset& dataset);
    void show_no_dataset(const std::filesystem::path& project);

    QTableWidget* counts_table() const { return counts_; }
    QTableWidget* skipped_table() const { return skipped_; }

private:
    QLabel* heading_;
    QLabel* details_;
    QTableWidget* counts_;
    QTableWidget* skipped_;
    QPlainTextEdit* warnings_;
};

}  // namespace whisker::ui
