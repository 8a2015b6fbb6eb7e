#include "whisker/data/prepare.h"

#include "whisker/common/archive.h"
#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/random.h"
#include "whisker/data/image_decode.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace whisker::data {

namespace {

// A file that may become an image record once it has been decoded successfully.
struct Candidate {
    fs::path file;
    Split split = Split::Train;
    std::vector<std::string> label_names;
};

bool is_ignorable(const fs::path& p) {
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') return true;           // .DS_Store, ._foo, .part files
    if (name == "Thumbs.db" || name == "desktop.ini") return true;
    const std::string ext = p.extension().string();
    return ext == ".part" || ext == ".tmp";
}

std::vector<fs::path> files_under(const fs::path& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec) && !is_ignorable(it->path())) out.push_back(it->path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<fs::path> subdirectories(const fs::path& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_directory() && e.path().filename().string()[0] != '.') out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

bool has_subdirectories(const fs::path& dir) { return !subdirectories(dir).empty(); }

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

struct Collected {
    std::vector<Candidate> candidates;
    std::vector<SkippedFile> skipped;
    std::vector<std::string> warnings;
    std::string kind;
    fs::path sample_submission;
    bool has_valid = false;
    bool multi_label = false;
};

// ---- Kaggle archives ----

void extract_all(const fs::path& zip, const fs::path& dest, const PrepareOptions& o) {
    ExtractOptions eo;
    eo.progress = o.progress;
    eo.cancel = o.cancel;
    extract_archive(zip, dest, eo);
}

// Extracts the zips of a Kaggle download into PROJECT/data and returns that folder.
fs::path extract_kaggle_archives(const std::vector<fs::path>& zips, const PrepareOptions& o) {
    const fs::path data = o.project / "data";
    std::set<fs::path> done;
    std::vector<fs::path> pending = zips;
    // Competition zips hold train.zip/test.zip: extract until no new archive appears.
    for (int depth = 0; depth < 3 && !pending.empty(); ++depth) {
        for (const auto& z : pending) {
            extract_all(z, data, o);
            done.insert(fs::weakly_canonical(z));
        }
        pending.clear();
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(data, ec))
            if (e.is_regular_file() && lower(e.path().extension().string()) == ".zip" &&
                !done.count(fs::weakly_canonical(e.path())))
                pending.push_back(e.path());
        std::sort(pending.begin(), pending.end());
    }
    return data;
}

void collect_flat_kaggle(const fs::path& root, Collected& c) {
    c.kind = "kaggle-zip";
    for (const auto& f : files_under(root / "train")) {
        const std::string cls = class_from_kaggle_name(f.filename().string());
        if (cls.empty()) {
            c.skipped.push_back({f.string(), "cannot tell the class from the file name (expected <class>.<id>.<ext>, "
                                             "like cat.1.jpg)"});
            continue;
        }
        c.candidates.push_back({f, Split::Train, {cls}});
    }
    for (const auto& f : files_under(root / "test")) c.candidates.push_back({f, Split::Test, {}});
}

// ---- folder tree ----

void collect_tree_split(const fs::path& dir, Split split, Collected& c) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.is_regular_file() && !is_ignorable(e.path()))
            c.skipped.push_back({e.path().string(), "file directly in " + dir.filename().string() +
                                                        "/ has no class: put it in a class folder"});
    }
    for (const auto& cls_dir : subdirectories(dir)) {
        const auto files = files_under(cls_dir);
        const std::string cls = cls_dir.filename().string();
        if (files.empty()) {
            c.warnings.push_back("class folder '" + dir.filename().string() + "/" + cls + "' is empty");
            continue;
        }
        for (const auto& f : files) c.candidates.push_back({f, split, {cls}});
    }
}

void collect_tree(const fs::path& root, Collected& c) {
    c.kind = "folder";
    collect_tree_split(root / "train", Split::Train, c);
    if (fs::is_directory(root / "valid")) {
        c.has_valid = true;
        collect_tree_split(root / "valid", Split::Valid, c);
    }
    for (const auto& f : files_under(root / "test")) c.candidates.push_back({f, Split::Test, {}});
}

// ---- labels CSV ----

std::vector<std::string> split_labels(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string tok;
    while (in >> tok) out.push_back(tok);
    return out;
}

void collect_csv(const fs::path& csv, const PrepareOptions& o, Collected& c) {
    c.kind = "csv";
    fs::path images = o.csv_images;
    if (images.empty()) images = fs::is_directory(csv.parent_path() / "train") ? csv.parent_path() / "train" : csv.parent_path();
    if (!fs::is_directory(images))
        throw UserError("images folder '" + images.string() + "' for '" + csv.string() + "' does not exist",
                        "give the folder with --images DIR");
    // Index the folder by name and by stem, so "abc" finds "abc.jpg" as fastai's suffix did.
    std::map<std::string, fs::path> by_name, by_stem;
    for (const auto& f : files_under(images)) {
        const std::string rel = f.lexically_relative(images).generic_string();
        by_name.emplace(rel, f);
        by_stem.emplace(fs::path(rel).replace_extension().generic_string(), f);
    }
    const auto rows = parse_csv(read_file(csv));
    if (rows.size() < 2) throw UserError("'" + csv.string() + "' has no data rows", "expected a header and rows 'file,labels'");
    for (std::size_t r = 1; r < rows.size(); ++r) {
        const auto& row = rows[r];
        if (row.size() < 2 || row[0].empty()) {
            c.skipped.push_back({csv.string() + ":" + std::to_string(r + 1), "row has no file name or no label"});
            continue;
        }
        const fs::path* found = nullptr;
        if (auto it = by_name.find(row[0]); it != by_name.end()) found = &it->second;
        else if (auto st = by_stem.find(row[0]); st != by_stem.end()) found = &st->second;
        if (!found) {
            c.skipped.push_back({(images / row[0]).string(), "listed in the CSV (line " + std::to_string(r + 1) +
                                                                 ") but not found in " + images.string()});
            continue;
        }
        auto labels = split_labels(row[1]);
        if (labels.empty()) {
            c.skipped.push_back({found->string(), "empty label in the CSV (line " + std::to_string(r + 1) + ")"});
            continue;
        }
        if (labels.size() > 1) c.multi_label = true;
        c.candidates.push_back({*found, Split::Train, std::move(labels)});
    }
    const fs::path test_dir = csv.parent_path() / "test";
    if (fs::is_directory(test_dir) && fs::weakly_canonical(test_dir) != fs::weakly_canonical(images))
        for (const auto& f : files_under(test_dir)) c.candidates.push_back({f, Split::Test, {}});
}

// ---- source detection ----

fs::path find_labels_csv(const fs::path& dir) {
    for (const char* name : {"labels.csv", "train.csv", "train_labels.csv", "trainLabels.csv"})
        if (fs::is_regular_file(dir / name)) return dir / name;
    return {};
}

Collected collect(const PrepareOptions& o) {
    const fs::path& src = o.source;
    std::error_code ec;
    if (!fs::exists(src, ec)) throw UserError("source '" + src.string() + "' does not exist");
    Collected c;
    auto take_sample_submission = [&](const fs::path& dir) {
        if (fs::is_regular_file(dir / "sample_submission.csv")) c.sample_submission = dir / "sample_submission.csv";
    };

    if (fs::is_regular_file(src)) {
        const std::string ext = lower(src.extension().string());
        if (ext == ".csv") {
            collect_csv(src, o, c);
            take_sample_submission(src.parent_path());
            return c;
        }
        if (ext == ".zip") {
            const fs::path data = extract_kaggle_archives({src}, o);
            take_sample_submission(src.parent_path());
            take_sample_submission(data);
            if (fs::is_directory(data / "train") && has_subdirectories(data / "train")) collect_tree(data, c);
            else collect_flat_kaggle(data, c);
            if (c.kind == "folder") c.kind = "zip-folder";
            return c;
        }
        throw UserError("cannot use '" + src.string() + "' as a data source",
                        "give a Kaggle zip, a labels CSV, or a folder with train/<class>/ inside");
    }

    // A folder.
    std::vector<fs::path> zips;
    for (const auto& e : fs::directory_iterator(src, ec))
        if (e.is_regular_file() && lower(e.path().extension().string()) == ".zip") zips.push_back(e.path());
    std::sort(zips.begin(), zips.end());
    const bool has_train_dir = fs::is_directory(src / "train");
    take_sample_submission(src);
    if (has_train_dir && has_subdirectories(src / "train")) {
        collect_tree(src, c);
    } else if (!zips.empty() && !has_train_dir) {
        const fs::path data = extract_kaggle_archives(zips, o);
        take_sample_submission(data);
        if (fs::is_directory(data / "train") && has_subdirectories(data / "train")) collect_tree(data, c);
        else collect_flat_kaggle(data, c);
    } else if (const fs::path csv = find_labels_csv(src); !csv.empty()) {
        collect_csv(csv, o, c);
    } else if (has_train_dir) {
        collect_flat_kaggle(src, c);   // train/cat.1.jpg … already extracted
        c.kind = "kaggle-folder";
    } else {
        throw UserError("'" + src.string() + "' holds no data Whisker recognises",
                        "expected train.zip/test.zip from Kaggle, a train/<class>/ folder tree, or a labels CSV");
    }
    return c;
}

// Decodes every candidate once, in parallel, keeping the good ones.
struct Checked {
    Candidate candidate;
    ImageHeader header;
    bool ok = false;
    std::string reason;
};

std::vector<Checked> check_images(const std::vector<Candidate>& candidates, const PrepareOptions& o) {
    std::vector<Checked> out(candidates.size());
    std::atomic<std::uint64_t> done{0};
    DecodeOptions decode;
    decode.min_shorter_side = 1;  // JPEG at 1/8 scale: reads all the data, decodes few pixels
    parallel_for(candidates.size(), o.threads, [&](std::size_t i) {
        Checked& ch = out[i];
        ch.candidate = candidates[i];
        try {
            const std::string bytes = read_file(ch.candidate.file);
            const DecodedImage img = decode_image(bytes, decode);
            ch.header = {sniff_image_format(bytes), img.source_width, img.source_height};
            ch.ok = true;
        } catch (const ImageError& e) {
            ch.reason = e.what();
        } catch (const UserError& e) {
            ch.reason = std::string("cannot read the file: ") + e.what();
        } catch (const std::exception& e) {
            ch.reason = std::string("cannot decode: ") + e.what();
        }
        const auto n = ++done;
        if (o.progress && (n % 64 == 0 || n == candidates.size())) o.progress({"checking images", n, candidates.size()});
    }, o.cancel);
    return out;
}

void assign_validation(Dataset& d, const PrepareOptions& o) {
    const auto train = d.indices(Split::Train);
    Rng rng(derive_seed(o.seed, 0x5b1170));
    if (d.multi_label) {
        // No per-class strata for multi-label rows: a seeded random fraction, as fastai's
        // get_cv_idxs(n, val_pct, seed).
        const double frac = d.split.valid_frac.value_or(0.2);
        std::vector<std::size_t> order = train;
        shuffle_in_place(order, rng);
        const auto n_valid = static_cast<std::size_t>(std::llround(frac * static_cast<double>(order.size())));
        for (std::size_t k = 0; k < n_valid && k < order.size(); ++k) d.images[order[k]].split = Split::Valid;
        return;
    }
    std::vector<std::vector<std::size_t>> per_class(d.classes.size());
    for (std::size_t i : train) per_class[static_cast<std::size_t>(d.images[i].labels.at(0))].push_back(i);
    for (std::size_t c = 0; c < per_class.size(); ++c) {
        auto& members = per_class[c];
        Rng class_rng(derive_seed(o.seed, c + 1));
        shuffle_in_place(members, class_rng);
        std::size_t want = 0;
        if (d.split.valid_per_class) want = static_cast<std::size_t>(std::max(0, *d.split.valid_per_class));
        else want = static_cast<std::size_t>(std::llround(d.split.valid_frac.value_or(0.2) * static_cast<double>(members.size())));
        const std::size_t cap = members.size() > 1 ? members.size() - 1 : 0;  // keep one to train on
        if (want > cap) {
            d.warnings.push_back("class '" + d.classes[c] + "' has only " + std::to_string(members.size()) +
                                 " training images; " + std::to_string(cap) + " moved to validation instead of " +
                                 std::to_string(want));
            want = cap;
        }
        for (std::size_t k = 0; k < want; ++k) d.images[members[k]].split = Split::Valid;
    }
}

}  // namespace

std::string class_from_kaggle_name(const std::string& name) {
    const auto first = name.find('.');
    const auto last = name.rfind('.');
    if (first == std::string::npos || first == 0 || first == last) return "";
    return name.substr(0, first);
}

Dataset prepare_dataset(const PrepareOptions& o) {
    if (o.project.empty()) throw UserError("no project folder given");
    if (o.valid_per_class && o.valid_frac)
        throw UserError("give either --valid-per-class or --valid-frac, not both");
    if (o.valid_frac && (*o.valid_frac < 0.0 || *o.valid_frac >= 1.0))
        throw UserError("--valid-frac must be in [0, 1), got " + std::to_string(*o.valid_frac));
    if (o.valid_per_class && *o.valid_per_class < 0)
        throw UserError("--valid-per-class must be >= 0");
    if (o.folds && (*o.folds == 1 || *o.folds < 0))
        throw UserError(fmt::format("--folds {}: cross-validation needs at least 2 folds (0: none)", *o.folds), "use e.g. --folds 5");
    std::error_code ec;
    fs::create_directories(o.project, ec);
    if (ec) throw UserError("cannot create project folder '" + o.project.string() + "': " + ec.message());

    Collected c = collect(o);
    if (c.candidates.empty())
        throw UserError("no image files found in '" + o.source.string() + "'",
                        "expected train.zip/test.zip from Kaggle, a train/<class>/ folder tree, or a labels CSV");
    const auto checked = check_images(c.candidates, o);

    Dataset d;
    d.source = fs::absolute(o.source).lexically_normal().string();
    d.source_kind = c.kind;
    d.multi_label = c.multi_label;
    d.split.seed = o.seed;
    d.split.from_source = c.has_valid;
    if (!c.has_valid) {
        d.split.valid_per_class = o.valid_per_class;
        d.split.valid_frac = o.valid_per_class ? std::nullopt : std::optional<double>(o.valid_frac.value_or(0.2));
    } else if (o.valid_per_class || o.valid_frac) {
        d.warnings.push_back("the source has its own valid/ folder: it is used as is and the split options are ignored");
    }
    d.skipped = c.skipped;
    d.warnings.insert(d.warnings.end(), c.warnings.begin(), c.warnings.end());

    // Classes: those with at least one usable training image.
    std::map<std::string, std::size_t> train_counts;
    std::set<std::string> seen_in_valid;
    for (const auto& ch : checked) {
        if (!ch.ok) continue;
        for (const auto& l : ch.candidate.label_names) {
            if (ch.candidate.split == Split::Train) ++train_counts[l];
            else if (ch.candidate.split == Split::Valid) seen_in_valid.insert(l);
        }
    }
    for (const auto& [cls, n] : train_counts) d.classes.push_back(cls);
    std::map<std::string, int> class_index;
    for (std::size_t i = 0; i < d.classes.size(); ++i) class_index[d.classes[i]] = static_cast<int>(i);
    if (c.has_valid)
        for (const auto& cls : d.classes)
            if (!seen_in_valid.count(cls)) d.warnings.push_back("class '" + cls + "' has no validation images");

    for (const auto& ch : checked) {
        const std::string stored = relative_or_absolute(ch.candidate.file, o.project);
        if (!ch.ok) {
            d.skipped.push_back({stored, ch.reason});
            continue;
        }
        ImageRecord rec;
        rec.path = stored;
        rec.split = ch.candidate.split;
        rec.width = ch.header.width;
        rec.height = ch.header.height;
        rec.format = ch.header.format;
        bool unknown = false;
        for (const auto& l : ch.candidate.label_names) {
            auto it = class_index.find(l);
            if (it == class_index.end()) { unknown = true; break; }
            rec.labels.push_back(it->second);
        }
        if (unknown) {
            d.skipped.push_back({stored, "its class is not among the training classes"});
            continue;
        }
        std::sort(rec.labels.begin(), rec.labels.end());
        d.images.push_back(std::move(rec));
    }
    if (d.classes.empty()) throw UserError("no usable training images in '" + o.source.string() + "'",
                                           "see the skipped files: whisker-cli data report " + o.project.string());
    if (d.classes.size() < 2)
        d.warnings.push_back("only one class ('" + d.classes[0] + "'): a classifier needs at least two");
    if (!c.has_valid) assign_validation(d, o);

    if (!c.sample_submission.empty()) {
        const fs::path dest = o.project / "sample_submission.csv";
        if (fs::weakly_canonical(c.sample_submission) != fs::weakly_canonical(dest))
            write_file_atomically(dest, read_file(c.sample_submission));
        d.sample_submission = "sample_submission.csv";
    }

    // Keep the user's marks (exclusions, corrected labels) from an earlier manifest, and its folds' K.
    std::optional<Dataset> earlier;
    if (Dataset::exists(o.project)) {
        try {
            earlier = Dataset::load(o.project);
            d.keep_marks_of(*earlier);
        } catch (const UserError&) {
            // A damaged old manifest is simply replaced.
        }
    }
    const int folds = o.folds ? *o.folds : earlier ? earlier->folds() : 0;
    if (folds != 0) {
        FoldOptions fo;
        fo.folds = folds;
        fo.seed = o.seed;
        if (o.fold_groups) o.fold_groups(d, fo);
        assign_folds(d, fo);
    }
    std::sort(d.skipped.begin(), d.skipped.end(), [](const SkippedFile& a, const SkippedFile& b) { return a.path < b.path; });
    d.save(o.project);
    return d;
}

std::size_t materialize_layout(const Dataset& d, const fs::path& project, const fs::path& dest) {
    if (d.multi_label) throw UserError("a folder layout cannot express multi-label data", "use the labels CSV instead");
    std::size_t made = 0;
    std::set<fs::path> used;
    for (const auto& im : d.images) {
        fs::path dir = dest / split_name(im.split);
        if (im.split != Split::Test) dir /= d.classes.at(static_cast<std::size_t>(im.labels.at(0)));
        const fs::path src = d.resolve(project, im);
        fs::path target = dir / src.filename();
        for (int k = 2; used.count(target); ++k)
            target = dir / (src.stem().string() + "-" + std::to_string(k) + src.extension().string());
        used.insert(target);
        std::error_code ec;
        if (fs::exists(target, ec)) continue;
        fs::create_directories(dir, ec);
        fs::create_hard_link(src, target, ec);
        if (ec) {
            ec.clear();
            fs::copy_file(src, target, ec);
            if (ec) throw UserError("cannot copy '" + src.string() + "' to '" + target.string() + "': " + ec.message());
        }
        ++made;
    }
    return made;
}

}  // namespace whisker::data
