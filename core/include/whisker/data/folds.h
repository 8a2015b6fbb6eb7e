#pragma once
// Cross-validation folds: every labelled image of a project in one of K folds.
//
// What is folded: the labelled images of the train and valid splits together (the holdout
// valid split is folded in: K-fold cross-validation scores every labelled image once, as
// out-of-fold predictions). Test images have no fold. The manifest keeps its train/valid split
// as well, for the project's own learner; folds are an addition, stored per image
// (ImageRecord::fold) with K in SplitSettings::folds.
//
// How: stratified by class (multi-label images by their rarest label), so each fold's class
// shares are those of the whole within one image per class; seeded and reproducible. Images
// that must stay together (near-duplicate groups from explain/duplicates.h: a copy in the
// training folds would inflate the fold's score) are dealt as one unit, largest units first.
// Usable images are balanced first, excluded ones separately afterwards (an excluded image
// still gets a fold, so undoing the mark needs no new folds), so the usable images' balance
// is the one promised above.
//
// fold_view() turns fold i into an ordinary train/valid split (fold i -> valid, the other
// folds -> train), so loaders, the learner and prediction work on it unchanged.
// Plain functions on values; no thread affinity.

#include "whisker/data/dataset.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace whisker::data {

struct FoldOptions {
    int folds = 5;                  // K, at least 2
    std::uint64_t seed = 42;
    // Images that must share a fold, as Dataset::images indices (duplicate groups). Test
    // images and indices out of range are ignored; overlapping groups are merged.
    std::vector<std::vector<std::size_t>> groups;
    // How the groups were found, kept in the manifest ("near-duplicate groups (similarity >=
    // 0.98)"); "" when there are none.
    std::string grouping;
};

// Fills FoldOptions::groups and ::grouping for a dataset (the duplicates finder, when the
// program decides it is worth it); given to prepare_dataset, which knows the images only at its end.
using FoldGrouper = std::function<void(const Dataset& dataset, FoldOptions& options)>;

// Assigns ImageRecord::fold to every labelled train/valid image (excluded ones included) and
// records K, the seed and the grouping in dataset.split. Throws UserError, changing nothing,
// when K < 2, when there are fewer usable labelled images than K, or when a class has fewer
// usable images than K (each fold's validation part needs one of every class), naming the
// classes and what to do.
void assign_folds(Dataset& dataset, const FoldOptions& options);
// Takes the folds away (K = 0, every image's fold -1).
void clear_folds(Dataset& dataset);

// UserError unless the dataset has folds and 0 <= fold < K, saying what to do.
void check_fold(const Dataset& dataset, int fold);

// Fold `fold` as a train/valid split: the labelled images of that fold are Split::Valid, those
// of the other folds Split::Train; test images, marks and everything else stay. Images keep
// their index, so predictions of the view index the original manifest. check_fold first.
Dataset fold_view(const Dataset& dataset, int fold);

// Per fold, its usable (not excluded) images as Dataset::images indices in manifest order.
std::vector<std::vector<std::size_t>> fold_members(const Dataset& dataset);

// A fingerprint of fold `fold`'s split (its usable images and their labels, and the images it
// trains on), so that a fold's learner or predictions can tell they belong to the folds as
// they are now (hex SHA-256).
std::string fold_fingerprint(const Dataset& dataset, int fold);

// "5 folds of 79-80 images, stratified by class, near-duplicate groups kept in one fold";
// "no folds" without.
std::string describe_folds(const Dataset& dataset);

}  // namespace whisker::data
