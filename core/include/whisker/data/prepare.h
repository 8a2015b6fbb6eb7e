#pragma once
// Turning downloaded data into a project's dataset manifest (`whisker-cli data prepare`).
//
// Accepted sources (detected automatically):
//   * Kaggle archives: a folder holding train.zip / test.zip (and sample_submission.csv), the
//     competition's own zip with those nested inside, or train.zip itself. Archives are
//     extracted into PROJECT/data/; labels come from names "<class>.<id>.<ext>".
//   * A folder tree: train/<class>/…, optional valid/<class>/…, optional test/….
//     The user's files are referenced where they are, never moved, copied or deleted.
//   * A labels CSV ("file,labels", labels space-separated, like fastai's from_csv), with
//     the images in `csv_images` (default: the folder "train" beside the CSV, else the CSV's
//     own folder); file names may omit their extension.
// Every candidate image is decoded once (at 1/8 scale for JPEGs, which still reads all the
// data) so broken files are found now and listed with their reasons, not during training.
// The validation split is stratified per class, seeded and reproducible.

#include "whisker/common/parallel.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"

#include <atomic>
#include <filesystem>
#include <optional>

namespace whisker::data {

struct PrepareOptions {
    std::filesystem::path project;
    std::filesystem::path source;
    std::optional<int> valid_per_class;    // e.g. 2000 (the seed's recipe)
    std::optional<double> valid_frac;      // e.g. 0.2 (the default when neither is given)
    std::uint64_t seed = 42;
    std::filesystem::path csv_images;      // images folder for a labels CSV
    // Cross-validation folds (data/folds.h), seeded by `seed`: K >= 2 assigns them, 0 removes
    // them; nothing keeps the K of the previous manifest (if it had folds: dealt again, so the
    // same data and seed give the same folds). `fold_groups` may name images that must share a
    // fold (near-duplicate groups).
    std::optional<int> folds;
    FoldGrouper fold_groups;
    int threads = 0;                       // 0 = all cores
    ProgressFn progress;
    const std::atomic<bool>* cancel = nullptr;
};

// Builds the manifest, saves it as PROJECT/dataset.json, and returns it. Exclusion marks of a
// previous manifest are kept for files that are still there. Throws UserError when the source
// cannot be used (naming what was expected) or the folds cannot be dealt (a class with fewer
// images than K; nothing is saved then), Cancelled when cancelled.
Dataset prepare_dataset(const PrepareOptions& options);

// Label of a Kaggle-style file name "<class>.<id>.<ext>" ("cat.12.jpg" -> "cat"); "" if the
// name does not have that shape.
std::string class_from_kaggle_name(const std::string& file_name);

// Writes fastai's folder layout (DEST/train/<class>/…, DEST/valid/<class>/…, DEST/test/…)
// with hard links where possible, else copies. Single-label datasets only. Returns the number
// of files linked or copied; files already present are left alone.
std::size_t materialize_layout(const Dataset& dataset, const std::filesystem::path& project,
                               const std::filesystem::path& dest);

}  // namespace whisker::data
