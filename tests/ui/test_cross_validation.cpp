// Cross-validation without the terminal: the Runs page's "Cross-validation…" dialog deals the
// folds (a K that a class cannot fill is refused at once, with core's numbers), trains every
// fold with a short recipe on the Train page's worker, is stopped inside a fold's fit and
// continues it from the autosave, shows the out-of-fold score (and the note when the folds'
// runs are of different models), ensembles the folds into the Submit page, and refuses
// everything while another job runs. Dealing the folds again makes their runs stale.
// Tiny on purpose: 18 sample images, resnet18 / mobilenet_v3_small from scratch at 32 px, K = 3.
#include "ui_test_support.h"

#include "cross_validation_dialog.h"
#include "main_window.h"
#include "runs_page.h"
#include "submit_page.h"
#include "train_page.h"
#include "training_worker.h"
#include "whisker/common/files.h"
#include "whisker/data/dataset.h"
#include "whisker/project/folds.h"
#include "whisker/project/runs.h"

#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QListWidget>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>

#include <cmath>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::ui;

namespace {

using State = CrossValidationDialog::FoldState;


QString state_text(CrossValidationDialog* d, int fold) { return d->table()->item(fold, CrossValidationDialog::State)->text(); }

// Waits for the dialog's job to end (the worker idle again).
bool wait_for_job(TrainPage* train, CrossValidationDialog* d, int timeout_ms) {
    QElapsedTimer t;
    t.start();
    while ((d->running() || train->busy()) && t.elapsed() < timeout_ms) QTest::qWait(20);
    return !d->running() && !train->busy();
}

}  // namespace

class CrossValidationTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void folds_train_stop_resume_score_and_submit() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 18, 6);   // 9 labelled images per class, 6 test images
        const fs::path project = root / "project";
        // A short recipe: 10 epochs (time to stop inside fold 1's fit), then the valid split.
        const fs::path recipe = root / "short-recipe.json";
        write_file_atomically(recipe, R"([{"step": "fit", "lr": 0.01, "cycles": 10},
                                          {"step": "predict", "split": "valid"}])");

        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, project));
        TrainPage* train = w.train_page();
        TrainingWorker* worker = train->worker();
        QSignalSpy failed(worker, &TrainingWorker::failed);

        // The project's learner, whose setup every fold copies: resnet18 at 32 px from scratch.
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        choose_small_learner(train);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(train->wait_until_idle(60000));
        QVERIFY(train->has_learner());

        RunsPage* page = w.runs_page();
        w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
        QVERIFY(page->cross_validation_button()->isEnabled());
        QTest::mouseClick(page->cross_validation_button(), Qt::LeftButton);
        CrossValidationDialog* dialog = page->cross_validation_dialog();
        QVERIFY(dialog && dialog->isVisible());

        // No folds yet: K 5 by default, nothing to train or ensemble, and why.
        QCOMPARE(dialog->folds(), 0);
        QCOMPARE(dialog->folds_box()->value(), 5);
        QCOMPARE(dialog->make_button()->text().remove('&'), QString("Make folds"));
        QVERIFY(dialog->folds_label()->text().contains("No folds yet"));
        QCOMPARE(dialog->table()->rowCount(), 0);
        QVERIFY(!dialog->train_button()->isEnabled());
        QVERIFY(dialog->train_button()->toolTip().contains("Make the folds first"));
        QVERIFY(!dialog->ensemble_button()->isEnabled());
        QVERIFY(!dialog->group_box()->isChecked());   // no fingerprints yet: grouping would decode every image
        QVERIFY(save_dialog_screenshot(w, dialog, "cross_validation_no_folds.png"));

        // K = 10 with 9 images of a class: refused at once, with core's numbers, nothing started.
        dialog->folds_box()->setValue(10);
        QVERIFY(!dialog->make_folds());
        QVERIFY(!train->busy());
        const QString refusal = dialog->status_label()->text();
        QVERIFY2(refusal.contains("10 folds need at least 10 images of every class") && refusal.contains("set K to 9 or fewer"),
                 qPrintable(refusal));
        QCOMPARE(data::Dataset::load(project).folds(), 0);

        // K = 3, seed 7, near-duplicates grouped (the fingerprints are made, and kept).
        dialog->folds_box()->setValue(3);
        dialog->seed_box()->setValue(7);
        dialog->group_box()->setChecked(true);
        QTest::mouseClick(dialog->make_button(), Qt::LeftButton);
        QVERIFY(dialog->running());
        QVERIFY(wait_for_job(train, dialog, 60000));
        QCOMPARE(failed.count(), 0);
        const auto dealt = data::Dataset::load(project);
        QCOMPARE(dealt.folds(), 3);
        QCOMPARE(dealt.split.fold_seed, 7u);
        QVERIFY(project::has_duplicate_fingerprints(project));
        QCOMPARE(dialog->folds(), 3);
        QVERIFY2(dialog->status_label()->text().contains("3 folds of 6 images") &&
                     dialog->status_label()->text().contains("0 groups of near-duplicates (0 labelled images) kept in one fold each"),
                 qPrintable(dialog->status_label()->text()));
        QVERIFY(dialog->folds_label()->text().contains("3 folds of 6 images, stratified by class"));
        QCOMPARE(dialog->make_button()->text().remove('&'), QString("Make new folds…"));
        QCOMPARE(dialog->table()->rowCount(), 3);
        for (int f = 0; f < 3; ++f) {
            QCOMPARE(dialog->fold_state(f), State::NotStarted);
            QCOMPARE(state_text(dialog, f), QString("not started"));
            QCOMPARE(dialog->table()->item(f, CrossValidationDialog::Images)->text(), QString("6"));
        }
        QVERIFY(dialog->train_button()->isEnabled());
        QCOMPARE(dialog->folds_to_train(), (std::vector<int>{0, 1, 2}));
        QVERIFY(dialog->recipe_label()->text().contains("Train page's"));
        QVERIFY(dialog->score_label()->text().contains("not yet"));

        // Making new folds asks first and says what happens to the runs; "no" changes nothing.
        QString asked;
        dialog->set_confirmation([&asked](const QString& q) {
            asked = q;
            return false;
        });
        QVERIFY(!dialog->make_folds());
        QVERIFY(asked.contains("stale"));
        QCOMPARE(data::Dataset::load(project).split.fold_seed, 7u);

        // While another job runs on the worker everything that starts one is refused, and why.
        QVERIFY(train->run_on_worker("another job", [](TrainingWorker* wk) {
            QThread::msleep(1500);
            Q_EMIT wk->job_finished("another job", false, {});
        }));
        QTRY_VERIFY(!dialog->train_button()->isEnabled());
        QVERIFY(!dialog->make_button()->isEnabled());
        QVERIFY(dialog->train_button()->toolTip().contains("busy"));
        QVERIFY(dialog->status_label()->text().contains("busy with another job"));
        QVERIFY(!dialog->train_folds());
        QVERIFY(!dialog->running());
        QVERIFY(train->wait_until_idle(10000));
        QTRY_VERIFY(dialog->train_button()->isEnabled());

        // A recipe file: a bad one is refused (the one before stays), the short one is taken.
        const fs::path bad = root / "bad.json";
        write_file_atomically(bad, R"([{"step": "dance"}])");
        QVERIFY(!dialog->set_recipe_file(QString::fromStdString(bad.string())));
        QVERIFY(dialog->status_label()->text().contains("not a recipe"));
        QVERIFY(dialog->set_recipe_file(QString::fromStdString(recipe.string())));
        QVERIFY(dialog->recipe_label()->text().contains("short-recipe.json (2 steps)"));

        // Train all folds; Stop inside fold 1's fit, after its first epoch (its autosave).
        QStringList stages;
        connect(worker, &TrainingWorker::progress, dialog, [&stages](const QString& s) { stages << s; });
        QTest::mouseClick(dialog->train_button(), Qt::LeftButton);
        QVERIFY(dialog->running() && train->busy());
        QVERIFY(dialog->stop_button()->isEnabled());
        QVERIFY(!dialog->make_button()->isEnabled() && !dialog->ensemble_button()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(dialog->fold_state(0) == State::Finished, 120000);   // the table follows each fold
        QVERIFY(dialog->running());
        QTRY_VERIFY_WITH_TIMEOUT(dialog->status_label()->text().contains("Fold 1 (folds 0–2) · step 1 of 2: fit") &&
                                     dialog->status_label()->text().contains("epoch ") &&
                                     !dialog->status_label()->text().contains("epoch 1/"),
                                 120000);
        QCOMPARE(dialog->fold_state(1), State::Training);
        QCOMPARE(state_text(dialog, 1), QString("training…"));
        QVERIFY(dialog->progress_bar()->isVisible());
        QVERIFY(save_dialog_screenshot(w, dialog, "cross_validation_training.png"));
        QTest::mouseClick(dialog->stop_button(), Qt::LeftButton);
        QVERIFY(wait_for_job(train, dialog, 60000));
        QCOMPARE(failed.count(), 0);
        QVERIFY2(dialog->status_label()->text().startsWith("Stopped in fold 1: stopped by the user. Train continues"), qPrintable(dialog->status_label()->text()));
        QCOMPARE(dialog->fold_state(0), State::Finished);
        QCOMPARE(dialog->fold_state(1), State::CutOff);
        QVERIFY2(state_text(dialog, 1).contains("cut off midway (resumable): inside step 1 of 2 (a fit)"),
                 qPrintable(state_text(dialog, 1)));
        QCOMPARE(dialog->fold_state(2), State::NotStarted);
        QCOMPARE(dialog->folds_to_train(), (std::vector<int>{1, 2}));
        QVERIFY(dialog->score_label()->text().contains("not yet"));
        QVERIFY(!dialog->ensemble_button()->isEnabled());
        bool saw_batches = false;
        for (const auto& s : stages) saw_batches |= s.startsWith("Fold 0 (folds 0–2) · step 1 of 2: fit") && s.contains("epoch 3/10");
        QVERIFY(saw_batches);
        QVERIFY(save_dialog_screenshot(w, dialog, "cross_validation_cut_off.png"));

        // The runs so far: fold 0's finished, fold 1's stopped (cut off).
        const auto summary = project::cross_validation_summary(project, data::Dataset::load(project));
        const int fold0_run = summary.per_fold[0].run;
        QVERIFY(fold0_run > 0);
        QCOMPARE(dialog->table()->item(0, CrossValidationDialog::Run)->text(), QString("#%1").arg(fold0_run));
        QCOMPARE(dialog->table()->item(0, CrossValidationDialog::Model)->text(), QString("resnet18 32px"));
        QCOMPARE(dialog->table()->item(0, CrossValidationDialog::LogLoss)->text(),
                 QString::number(summary.per_fold[0].log_loss, 'f', 4));
        const int cut_run = project::fold_recipe_state(project, data::Dataset::load(project), *project::LearnerSpec::read(project),
                                                       read_file(recipe), 1)
                                .run;
        const auto cut = project::read_run(project, cut_run);
        QVERIFY(cut);
        QCOMPARE(QString::fromStdString(cut->status), QString("stopped"));
        QCOMPARE(cut->fold, 1);

        // Train again: fold 0 is left alone, fold 1 continues its fit from the autosave, fold 2 starts.
        QSignalSpy started(worker, &TrainingWorker::fold_started);
        QVERIFY(dialog->train_folds());
        QVERIFY(wait_for_job(train, dialog, 180000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(started.count(), 2);
        QCOMPARE(started[0][0].toInt(), 1);
        QVERIFY2(started[0][2].toString().contains("continuing its interrupted fit"), qPrintable(started[0][2].toString()));
        QCOMPARE(started[1][0].toInt(), 2);
        for (int f = 0; f < 3; ++f) QCOMPARE(dialog->fold_state(f), State::Finished);
        const auto done = project::cross_validation_summary(project, data::Dataset::load(project));
        QVERIFY(done.complete());
        QCOMPARE(done.per_fold[0].run, fold0_run);
        const auto resumed = project::read_run(project, done.per_fold[1].run);
        QVERIFY(resumed);
        QVERIFY(resumed->resumed);
        QCOMPARE(resumed->parent, cut_run);
        QCOMPARE(resumed->fold, 1);

        // The out-of-fold score: every labelled image once, as whisker-cli cv has it.
        QVERIFY(dialog->out_of_fold_complete());
        QCOMPARE(dialog->out_of_fold_log_loss(), done.oof->log_loss());
        QCOMPARE(dialog->out_of_fold_accuracy(), done.oof->accuracy());
        QVERIFY2(dialog->score_label()->text().contains(
                     QString("Out of fold: 18 images, accuracy %1, log loss %2").arg(done.oof->accuracy(), 0, 'f', 4).arg(done.oof->log_loss(), 0, 'f', 4)),
                 qPrintable(dialog->score_label()->text()));
        QVERIFY(!dialog->models_note()->isVisible());
        QVERIFY(!dialog->train_button()->isEnabled());   // nothing left to train
        QVERIFY(dialog->ensemble_button()->isEnabled());
        // The Runs page lists the fold runs with their fold.
        page->refresh();
        bool listed = false;
        for (int row = 0; row < page->proxy()->rowCount(); ++row)
            listed |= page->proxy()->index(row, RunsPage::Kind).data().toString() == "recipe · fold 1/3";
        QVERIFY(listed);

        // Another model for fold 0: a new project learner (mobilenet), fold 0 selected and trained
        // again; the folds' runs are now of two models, and the dialog says so.
        dialog->hide();
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        train->arch_box()->setCurrentText("mobilenet_v3_small");
        train->size_box()->setValue(32);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(train->wait_until_idle(60000));
        QCOMPARE(QString::fromStdString(project::LearnerSpec::read(project)->arch), QString("mobilenet_v3_small"));
        w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
        QCOMPARE(page->open_cross_validation_dialog(), dialog);   // the same dialog, refreshed
        QVERIFY(dialog->learner_label()->text().contains("mobilenet_v3_small"));
        dialog->table()->selectRow(0);
        QCOMPARE(dialog->folds_to_train(), (std::vector<int>{0}));
        QVERIFY(dialog->train_button()->text().contains("selected"));
        QVERIFY(dialog->train_folds());
        QVERIFY(wait_for_job(train, dialog, 120000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(dialog->table()->item(0, CrossValidationDialog::Model)->text(), QString("mobilenet_v3_small 32px"));
        QVERIFY(dialog->models_note()->isVisible());
        QVERIFY2(dialog->models_note()->text().contains("different models (mobilenet_v3_small 32px, resnet18 32px)"),
                 qPrintable(dialog->models_note()->text()));
        dialog->table()->clearSelection();
        QVERIFY(save_dialog_screenshot(w, dialog, "cross_validation_scored.png"));

        // Ensemble the folds → Submit: the three fold models predict the test set; the Submit
        // page gets the ensemble, whose recorded validation score is the out-of-fold one.
        const auto scored = project::cross_validation_summary(project, data::Dataset::load(project));
        QTest::mouseClick(dialog->ensemble_button(), Qt::LeftButton);
        QVERIFY(dialog->running());
        QTRY_VERIFY_WITH_TIMEOUT(!dialog->isVisible(), 120000);   // sent, and closed
        QCOMPARE(failed.count(), 0);
        QVERIFY(train->wait_until_idle(10000));
        QCOMPARE(w.navigation()->currentRow(), static_cast<int>(MainWindow::SubmitPageIndex));
        SubmitPage* submit = w.submit_page();
        QVERIFY(submit->predictions().is_ensemble());
        QCOMPARE(submit->predictions().predictions->records.size(), std::size_t{6});
        QCOMPARE(submit->predictions().members.size(), 3);
        QVERIFY(submit->predictions().model.contains("of the 3 cross-validation folds' models, scored out of fold"));
        const auto run = project::read_run(project, submit->predictions().run);
        QVERIFY(run);
        QCOMPARE(run->kind, project::RunKind::Ensemble);
        QCOMPARE(static_cast<int>(run->members.size()), 3);
        for (int f = 0; f < 3; ++f)
            QCOMPARE(QString::fromStdString(run->members[static_cast<std::size_t>(f)].source), QString("#%1").arg(scored.per_fold[static_cast<std::size_t>(f)].run));
        QVERIFY(run->validation());
        QCOMPARE(run->validation()->log_loss, scored.oof->log_loss());   // the mean of the members' out-of-fold rows
        const auto valid = std::find_if(run->predictions.begin(), run->predictions.end(), [](const auto& p) { return p.split == "valid"; });
        QVERIFY(valid != run->predictions.end());
        QCOMPARE(valid->rows, std::size_t{18});
        QVERIFY(submit->members_label()->text().contains(QString::number(scored.oof->log_loss(), 'f', 4)));
        QVERIFY2(submit->members_label()->text().contains(QString("fold 0: #%1 mobilenet_v3_small at 32 px").arg(scored.per_fold[0].run)),
                 qPrintable(submit->members_label()->text()));
        QVERIFY2(submit->check_passed(), qPrintable(submit->check_label()->text()));
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/submit_cross_validation.png"));

        // New folds (another seed), confirmed: the fold runs are stale, the score starts over.
        w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
        QCOMPARE(page->open_cross_validation_dialog(), dialog);
        dialog->set_confirmation([](const QString&) { return true; });
        dialog->group_box()->setChecked(false);
        dialog->seed_box()->setValue(1234);
        QVERIFY(dialog->make_folds());
        QVERIFY(wait_for_job(train, dialog, 60000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(data::Dataset::load(project).split.fold_seed, 1234u);
        int stale = 0;
        for (int f = 0; f < 3; ++f) stale += dialog->fold_state(f) == State::Stale;
        QVERIFY(stale > 0);
        for (int f = 0; f < 3; ++f)
            if (dialog->fold_state(f) == State::Stale) QVERIFY(state_text(dialog, f).startsWith("stale: run #"));
        QVERIFY(!dialog->out_of_fold_complete());
        QVERIFY(!dialog->ensemble_button()->isEnabled());
        QVERIFY(save_dialog_screenshot(w, dialog, "cross_validation_stale.png"));
    }
};

int run_cross_validation_tests(int argc, char** argv) {
    CrossValidationTest t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_cross_validation.moc"
