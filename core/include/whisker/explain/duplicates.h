#pragma once
// Duplicates and leaks: the same picture more than once in a dataset.
//
// Two kinds of copy are found, within and across train, valid and test:
//   exact  the same decoded pixels (SHA-256 of the upright 8-bit RGB image and its size), so
//          a PNG and a lossless re-save of it, or one file under two names, are one picture;
//   near   the same picture resized or recompressed: the cosine similarity of two images'
//          thumbnail descriptors (8 x 8 RGB, area-averaged, mean-centred, unit length) is at
//          least a threshold (default kDefaultNearThreshold). The descriptor needs no network,
//          so it works on a project without pretrained weights or training, and it does not
//          change when the learner does.
// Copies are joined into groups (transitively: A~B and B~C is one group), and each group says
// what it means for training:
//   inflates validation  members in train and in valid: the model is scored on images it
//                        trained on, so the validation score is too good. Fix: keep the group
//                        in one split (keep_group_in_split).
//   labels differ        labelled members with different labels: at least one is wrong.
//                        Fix: relabel or exclude them with the existing marks.
//   test leak            members in test and in train/valid: the test image's label can be
//                        read off the training copy. Worth knowing; nothing to fix.
//   repeated             copies within one split only: the image counts twice in training.
// Excluded images are scanned too (so a group keeps its number after the user acts on it),
// but the kinds above consider only the images still in use: a group whose copies outside one
// split were excluded is "resolved".
//
// Nothing is moved or deleted here: the actions below change the manifest's marks (excluded,
// relabelled — data/dataset.h), which undo_group() or Dataset::clear_marks take back, and the
// image files are never touched.
//
// The per-file fingerprints are cached in PROJECT/cache/duplicates/fingerprints.bin (keyed by
// path, size and modification time; written atomically), so a second scan only decodes new or
// changed files. Threading: find_duplicates runs on the calling thread plus `threads` workers;
// everything else is plain functions on values.

#include "whisker/common/parallel.h"
#include "whisker/data/dataset.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace whisker::explain {

// Side of the thumbnail the near-duplicate descriptor is made of, and the descriptor's size.
constexpr int kThumbnailSide = 8;
constexpr int kDescriptorSize = kThumbnailSide * kThumbnailSide * 3;
// The default near-duplicate threshold (cosine similarity of descriptors). Measured on the
// sample competition (2,500 distinct images: highest similarity of two different images
// 0.946) and on copies of 200 of them halved + JPEG q60, quartered, upscaled 1.7x, JPEG q30
// and squeezed to 80% height (lowest similarity of a copy to its original 0.9975); see
// docs/data-health.md. Crops and flips are not copies to this descriptor.
constexpr double kDefaultNearThreshold = 0.98;

// What the scan learns from one image file.
struct ImageFingerprint {
    std::string pixels;                           // hex SHA-256 of size + pixels; "" when unreadable
    std::array<float, kDescriptorSize> descriptor{};   // zeros for a flat (single-colour) image
    std::string error;                            // why the file could not be read
    bool readable() const { return !pixels.empty(); }
    // A flat image has no shape to compare: only exact copies of it are found.
    bool flat() const;
};

// Fingerprints one decoded image: 8-bit RGB, row-major, `width * height * 3` bytes.
ImageFingerprint fingerprint_pixels(const unsigned char* rgb, int width, int height);
// Decodes a file (any format Whisker reads, EXIF orientation applied) and fingerprints it; an
// unreadable file gives a fingerprint with `error` set, never an exception.
ImageFingerprint fingerprint_file(const std::filesystem::path& file);
// Cosine similarity of two descriptors (0 when either image is flat).
double descriptor_similarity(const ImageFingerprint& a, const ImageFingerprint& b);

struct DuplicateGroup {
    int id = 0;                          // 1, 2, … in manifest order of the groups' first images
    std::vector<std::size_t> records;    // Dataset::images indices: train, valid, test, then path
    bool exact = false;                  // all members have the same pixels
    double min_similarity = 1.0;         // lowest descriptor similarity of a member to the first
    // The meaning (see the top of this file), from the members still in use.
    bool inflates_validation = false;
    bool labels_differ = false;
    bool test_leak = false;
    bool repeated = false;               // copies within one split only
    bool resolved() const { return !inflates_validation && !labels_differ && !test_leak && !repeated; }
    // "inflates validation, labels differ"; "resolved" when nothing is left to act on.
    std::string kinds() const;
};

struct DuplicateOptions {
    double threshold = kDefaultNearThreshold;   // near copies: similarity >= threshold; > 1: exact only
    int threads = 0;                            // decode threads (0 = all cores)
    bool use_cache = true;                      // read and write PROJECT/cache/duplicates
    ProgressFn progress;
    const std::atomic<bool>* cancel = nullptr;  // Cancelled is thrown when it becomes true
};

struct DuplicateReport {
    double threshold = kDefaultNearThreshold;
    std::size_t images = 0;                     // images scanned (excluded ones included)
    std::vector<DuplicateGroup> groups;
    std::vector<data::SkippedFile> unreadable;  // files that could not be decoded now
    std::size_t count_inflating() const;
    std::size_t count_label_conflicts() const;
    std::size_t count_test_leaks() const;
    std::size_t count_unresolved() const;
    const DuplicateGroup* group(int id) const;  // nullptr when there is no such group
};

// Scans every image of the dataset (fingerprints from the cache where current).
DuplicateReport find_duplicates(const std::filesystem::path& project, const data::Dataset& dataset,
                                const DuplicateOptions& options = {});
// The grouping alone, on fingerprints already made (one per Dataset::images entry).
std::vector<DuplicateGroup> group_duplicates(const data::Dataset& dataset, const std::vector<ImageFingerprint>& prints,
                                             double threshold);
// Recomputes each group's kinds from the dataset's current marks and labels (after an action).
void update_kinds(const data::Dataset& dataset, std::vector<DuplicateGroup>& groups);

// ---- actions (change marks only; each returns the paths it changed) ----
// Excludes the group's labelled members outside `split` (train or valid), so the group lives
// in one split; test members are left alone. Members inside `split` that were excluded before
// are not included again.
std::vector<std::string> keep_group_in_split(data::Dataset& dataset, const DuplicateGroup& group, data::Split split);
// Gives every labelled member the label `label` (a relabel mark; test members are left alone).
std::vector<std::string> relabel_group(data::Dataset& dataset, const DuplicateGroup& group, int label);
// Excludes the group's labelled members; with `keep_one`, all but the first one in use (in
// the group's order), so one copy stays.
std::vector<std::string> exclude_group(data::Dataset& dataset, const DuplicateGroup& group, bool keep_one);
// Takes back every mark of the group's members.
std::vector<std::string> undo_group(data::Dataset& dataset, const DuplicateGroup& group);

// ---- output ----
// The report for a terminal: a summary line, then each unresolved group (resolved ones with
// `all`) with its members (split, label, mark, path) and what to do.
std::string format_duplicates(const data::Dataset& dataset, const DuplicateReport& report, bool all = false);
// One row per member: group, kinds, exact, similarity, split, label, marked, path (absolute).
void write_duplicates_csv(const std::filesystem::path& file, const std::filesystem::path& project,
                          const data::Dataset& dataset, const DuplicateReport& report);
// The report as JSON (groups with their members), for scripts.
std::string duplicates_json(const data::Dataset& dataset, const DuplicateReport& report);

}  // namespace whisker::explain
