#pragma once
// The Data page: where the project's images come from and what they are.
// Shows the dataset summary (images per class and split, sizes), warnings, and every skipped
// file with its reason. Reads the core's manifest; never touches the images itself.
// Its "Duplicates" tab finds exact and near copies within and across the splits
// (whisker/explain/duplicates.h) in the background, lists them as groups with what each means
// (inflates validation, labels differ, test leak), and acts on a group with marks that can be
// undone (keep it in one split, relabel, exclude).

#include "whisker/data/dataset.h"
#include "whisker/explain/duplicates.h"

#include <QWidget>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

class QGroupBox;
class QLabel;
class QTableWidget;
class QPlainTextEdit;
class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QTabWidget;
class QToolButton;
class QTreeWidget;

namespace whisker::ui {

class BackgroundJob;
class ImageBrowser;

// What "Prepare" asks for: the source and the split.
struct PrepareRequest {
    QString source;
    std::optional<int> valid_per_class;
    std::optional<double> valid_frac;
    std::uint64_t seed = 42;
};

class DataPage : public QWidget {
    Q_OBJECT
public:
    explicit DataPage(QWidget* parent = nullptr);
    // Shows `dataset` of the project at `project`; an empty dataset clears the page.
    void show_dataset(const std::filesystem::path& project, const data::Dataset& dataset);
    // A folder without a (readable) dataset: the page offers its Kaggle and local-data
    // controls. `problem`: why the manifest could not be read (empty: there is none yet).
    void show_no_dataset(const std::filesystem::path& project, const QString& problem = {});
    // The side of the project's learner, for "What the model sees" (0: read learner.json).
    void set_model_size(int px);

    QTableWidget* counts_table() const { return counts_; }
    ImageBrowser* browser() const { return browser_; }
    QTabWidget* tabs() const { return tabs_; }
    QLineEdit* competition_edit() const { return competition_; }
    QLineEdit* source_edit() const { return source_; }
    QPushButton* download_button() const { return download_; }
    QPushButton* prepare_button() const { return prepare_; }
    QGroupBox* get_data_box() const { return get_box_; }
    // No project open: the ways to one (File ▸ New project…, Open project…, Open sample
    // project…), hidden once a project is open.
    QPushButton* new_project_button() const { return new_project_; }
    QPushButton* open_project_button() const { return open_project_; }
    QPushButton* sample_project_button() const { return sample_project_; }
    void set_busy(bool busy);
    // The split settings on the page, applied to `source`.
    PrepareRequest request_for(const QString& source) const;

Q_SIGNALS:
    // The main window runs these in the background.
    void download_requested(const QString& competition);
    // The buttons shown while no project is open: the main window runs its File menu's actions.
    void new_project_requested();
    void open_project_requested();
    void sample_project_requested();
    void prepare_requested(const whisker::ui::PrepareRequest& request);
    void undo_marks_requested(const QString& path);
    // The page changed the manifest's marks itself (a duplicates action): the learner and the
    // Inspect page reread it.
    void marks_changed(const QString& what);

public:
    QTableWidget* skipped_table() const { return skipped_; }

    // ---- duplicates ----
    // Scans the project for copies in the background (false when a scan is running).
    bool find_duplicates();
    // Waits for a running scan (tests).
    void wait_for_duplicates();
    const explain::DuplicateReport& duplicates() const { return duplicates_; }
    // The actions on a group (by its number); each saves the manifest under the project's lock.
    bool keep_group_in_split(int group, data::Split split);
    bool relabel_group(int group, int label);
    bool exclude_group(int group);
    bool undo_group(int group);
    QTreeWidget* duplicates_tree() const { return dup_tree_; }
    QDoubleSpinBox* duplicates_threshold() const { return dup_threshold_; }
    QPushButton* find_duplicates_button() const { return dup_find_; }
    QLabel* duplicates_summary() const { return dup_summary_; }

private:
    void set_project(const std::filesystem::path& project);
    QWidget* build_duplicates_tab();
    void show_duplicates();
    int selected_group() const;
    bool act_on_group(int group, const QString& what,
                      const std::function<std::vector<std::string>(data::Dataset&, const explain::DuplicateGroup&)>& action);
    std::filesystem::path project_;
    QLabel* heading_;
    QToolButton* other_data_;   // shows the "Get data" box over a prepared dataset
    QGroupBox* get_box_;
    QLabel* details_;
    QWidget* no_project_row_;   // New project…, Open project…, Open sample project…
    QPushButton* new_project_;
    QPushButton* open_project_;
    QPushButton* sample_project_;
    QTableWidget* counts_;
    QTableWidget* skipped_;
    QPlainTextEdit* warnings_;
    QTabWidget* tabs_;
    ImageBrowser* browser_;
    QLineEdit* competition_;
    QPushButton* download_;
    QLineEdit* source_;
    QPushButton* prepare_;
    QComboBox* split_mode_;
    QDoubleSpinBox* valid_frac_;
    QSpinBox* valid_per_class_;
    QSpinBox* seed_;
    // duplicates
    std::shared_ptr<const data::Dataset> dataset_;
    explain::DuplicateReport duplicates_;
    std::shared_ptr<explain::DuplicateReport> dup_running_;   // filled by the scan in progress
    std::filesystem::path dup_running_project_;
    BackgroundJob* dup_job_;
    QDoubleSpinBox* dup_threshold_;
    QPushButton* dup_find_;
    QLabel* dup_summary_;
    QTreeWidget* dup_tree_;
    QPushButton* dup_keep_train_;
    QPushButton* dup_keep_valid_;
    QComboBox* dup_relabel_class_;
    QPushButton* dup_relabel_;
    QPushButton* dup_exclude_;
    QPushButton* dup_undo_;
};

}  // namespace whisker::ui

Q_DECLARE_METATYPE(whisker::ui::PrepareRequest)
