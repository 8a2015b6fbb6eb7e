#pragma once
// The project's dataset manifest: which images exist, their labels, and which split each is in.
//
// A project is a folder. `whisker-cli data prepare` (or the GUI's Data page) writes
// PROJECT/dataset.json; everything later (loaders, training, prediction) reads it. Paths are
// stored relative to the project folder when the image lives inside it (archives extracted
// by Whisker), else absolute (a folder tree the user pointed at, never moved or copied).
// The manifest also lists every file that was skipped, with the reason, so nothing is
// dropped silently. Plain value types: copy freely, no thread affinity.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace whisker::data {

enum class Split { Train, Valid, Test };
const char* split_name(Split split);                // "train", "valid", "test"
std::optional<Split> parse_split(const std::string& name);

struct ImageRecord {
    std::string path;              // relative to the project folder, or absolute
    Split split = Split::Train;
    std::vector<int> labels;       // class indices; empty for test images; >1 for multi-label
    int width = 0;                 // upright size in pixels (0 when unknown)
    int height = 0;
    std::string format;            // "jpeg", "png", ...
    bool excluded = false;         // marked by the user as not to be used (kept for undo)
    // Set when the user corrected a wrong label (Inspect page): the labels the source gave,
    // kept for undo. Empty = never relabelled. Training uses `labels`.
    std::vector<int> original_labels;
    // The cross-validation fold of a labelled image (data/folds.h): 0..K-1, or -1 when the
    // dataset has no folds (and always for test images). Key "fold"; absent in manifests
    // written before folds existed.
    int fold = -1;

    bool relabelled() const { return !original_labels.empty(); }

    // Kaggle's id for a test image: the file name without its extension.
    std::string id() const;
};

struct SkippedFile {
    std::string path;
    std::string reason;
};

struct SplitSettings {
    // Exactly one of these is used: a fixed number per class, or a fraction of each class.
    std::optional<int> valid_per_class;
    std::optional<double> valid_frac;
    std::uint64_t seed = 42;
    bool from_source = false;      // the source had its own valid/ folder; no random split
    // Cross-validation folds (data/folds.h): K, 0 when the dataset has none. Key "folds" with
    // "fold_seed" and "fold_grouping" (how images that must share a fold were found: "" when
    // every image was dealt on its own).
    int folds = 0;
    std::uint64_t fold_seed = 0;
    std::string fold_grouping;
};

struct Dataset {
    static constexpr int kFormatVersion = 1;
    static constexpr const char* kFileName = "dataset.json";

    std::vector<std::string> classes;       // sorted class names; label i = classes[i]
    bool multi_label = false;
    std::vector<ImageRecord> images;
    std::vector<SkippedFile> skipped;
    std::vector<std::string> warnings;      // e.g. "class 'x' has no validation images"
    SplitSettings split;
    std::string source;                     // what prepare was given
    std::string source_kind;                // "kaggle-zip", "folder", "csv"
    std::string sample_submission;          // path of sample_submission.csv, if any

    // Indices into `images` of the usable (not excluded) images of one split, in manifest order.
    std::vector<std::size_t> indices(Split split) const;
    std::size_t count(Split split) const { return indices(split).size(); }
    // K of the cross-validation folds; 0 when none were assigned (data prepare --folds K).
    int folds() const { return split.folds; }

    // JSON round trip; save() writes atomically. load() throws UserError with a hint when
    // the project has no manifest or it is unreadable.
    std::string to_json() const;
    static Dataset from_json(const std::string& text);
    void save(const std::filesystem::path& project) const;
    static Dataset load(const std::filesystem::path& project);
    static bool exists(const std::filesystem::path& project);

    // The user's marks (the image files are never touched). Each returns false when `path` is
    // not in the manifest. relabel() keeps the first original labels, so undo always restores
    // what the source said; clear_marks() undoes both kinds of mark.
    bool set_excluded(const std::string& path, bool excluded);
    bool relabel(const std::string& path, std::vector<int> labels);
    bool clear_marks(const std::string& path);
    // Copies the marks of `earlier` (matched by path) onto this manifest (prepare does this
    // when the dataset is rebuilt, so marks survive a new split or a re-download).
    void keep_marks_of(const Dataset& earlier);
    std::size_t marked_count() const;

    // Absolute path of an image of this dataset.
    std::filesystem::path resolve(const std::filesystem::path& project, const ImageRecord& image) const;
};

}  // namespace whisker::data
