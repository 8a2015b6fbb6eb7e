#include "whisker/data/dataset.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::data {

const char* split_name(Split split) {
    switch (split) {
        case Split::Train: return "train";
        case Split::Valid: return "valid";
        case Split::Test: return "test";
    }
    return "?";
}

std::optional<Split> parse_split(const std::string& name) {
    if (name == "train") return Split::Train;
    if (name == "valid") return Split::Valid;
    if (name == "test") return Split::Test;
    return std::nullopt;
}

std::string ImageRecord::id() const { return fs::path(path).stem().string(); }

std::vector<std::size_t> Dataset::indices(Split split) const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < images.size(); ++i)
        if (images[i].split == split && !images[i].excluded) out.push_back(i);
    return out;
}

std::string Dataset::to_json() const {
    json j;
    j["format"] = "whisker-dataset";
    j["version"] = kFormatVersion;
    j["classes"] = classes;
    j["multi_label"] = multi_label;
    j["source"] = source;
    j["source_kind"] = source_kind;
    if (!sample_submission.empty()) j["sample_submission"] = sample_submission;
    json sp;
    if (split.valid_per_class) sp["valid_per_class"] = *split.valid_per_class;
    if (split.valid_frac) sp["valid_frac"] = *split.valid_frac;
    sp["seed"] = split.seed;
    sp["from_source"] = split.from_source;
    if (split.folds > 0) {
        sp["folds"] = split.folds;
        sp["fold_seed"] = split.fold_seed;
        sp["fold_grouping"] = split.fold_grouping;
    }
    j["split"] = sp;
    json imgs = json::array();
    for (const auto& im : images) {
        json e{{"path", im.path}, {"split", split_name(im.split)}, {"labels", im.labels},
               {"width", im.width}, {"height", im.height}, {"format", im.format}};
        if (im.excluded) e["excluded"] = true;
        if (!im.original_labels.empty()) e["relabelled_from"] = im.original_labels;
        if (im.fold >= 0) e["fold"] = im.fold;
        imgs.push_back(std::move(e));
    }
    j["images"] = std::move(imgs);
    json sk = json::array();
    for (const auto& s : skipped) sk.push_back({{"path", s.path}, {"reason", s.reason}});
    j["skipped"] = std::move(sk);
    j["warnings"] = warnings;
    return j.dump(1);
}

Dataset Dataset::from_json(const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw UserError(std::string("the dataset manifest is not valid JSON: ") + e.what(),
                        "run 'whisker-cli data prepare' again to rebuild it");
    }
    if (j.value("format", "") != "whisker-dataset")
        throw UserError("the file is not a Whisker dataset manifest");
    if (j.value("version", 0) > kFormatVersion)
        throw UserError("the dataset manifest was written by a newer Whisker (version " +
                            std::to_string(j.value("version", 0)) + ")",
                        "update Whisker");
    Dataset d;
    try {
        d.classes = j.at("classes").get<std::vector<std::string>>();
        d.multi_label = j.value("multi_label", false);
        d.source = j.value("source", "");
        d.source_kind = j.value("source_kind", "");
        d.sample_submission = j.value("sample_submission", "");
        const json& sp = j.at("split");
        if (sp.contains("valid_per_class")) d.split.valid_per_class = sp["valid_per_class"].get<int>();
        if (sp.contains("valid_frac")) d.split.valid_frac = sp["valid_frac"].get<double>();
        d.split.seed = sp.value("seed", std::uint64_t{42});
        d.split.from_source = sp.value("from_source", false);
        d.split.folds = sp.value("folds", 0);
        d.split.fold_seed = sp.value("fold_seed", std::uint64_t{0});
        d.split.fold_grouping = sp.value("fold_grouping", "");
        if (d.split.folds < 0 || d.split.folds == 1)
            throw UserError("the dataset manifest has " + std::to_string(d.split.folds) + " folds",
                            "assign them again: whisker-cli data folds PROJECT --folds 5");
        for (const auto& e : j.at("images")) {
            ImageRecord im;
            im.path = e.at("path").get<std::string>();
            const auto s = parse_split(e.at("split").get<std::string>());
            if (!s) throw UserError("unknown split '" + e.at("split").get<std::string>() + "'");
            im.split = *s;
            im.labels = e.at("labels").get<std::vector<int>>();
            for (int l : im.labels)
                if (l < 0 || l >= static_cast<int>(d.classes.size()))
                    throw UserError("label index " + std::to_string(l) + " out of range for " + im.path);
            im.width = e.value("width", 0);
            im.height = e.value("height", 0);
            im.format = e.value("format", "");
            im.excluded = e.value("excluded", false);
            im.original_labels = e.value("relabelled_from", std::vector<int>{});
            im.fold = e.value("fold", -1);
            if (im.fold < -1 || im.fold >= std::max(d.split.folds, 0) || (im.fold >= 0 && im.split == Split::Test))
                throw UserError("fold " + std::to_string(im.fold) + " of " + im.path + " is not one of the manifest's " +
                                    std::to_string(d.split.folds) + " folds",
                                "assign the folds again: whisker-cli data folds PROJECT --folds K");
            d.images.push_back(std::move(im));
        }
        for (const auto& e : j.at("skipped")) d.skipped.push_back({e.at("path"), e.at("reason")});
        d.warnings = j.value("warnings", std::vector<std::string>{});
    } catch (const json::exception& e) {
        throw UserError(std::string("the dataset manifest is damaged: ") + e.what(),
                        "run 'whisker-cli data prepare' again to rebuild it");
    }
    return d;
}

namespace {
ImageRecord* find_image(std::vector<ImageRecord>& images, const std::string& path) {
    for (auto& im : images)
        if (im.path == path) return &im;
    return nullptr;
}
}  // namespace

bool Dataset::set_excluded(const std::string& path, bool excluded) {
    ImageRecord* im = find_image(images, path);
    if (!im) return false;
    im->excluded = excluded;
    return true;
}

bool Dataset::relabel(const std::string& path, std::vector<int> new_labels) {
    ImageRecord* im = find_image(images, path);
    if (!im) return false;
    for (int l : new_labels)
        if (l < 0 || l >= static_cast<int>(classes.size()))
            throw UserError("label index " + std::to_string(l) + " out of range");
    if (im->split == Split::Test) throw UserError("test images have no labels to correct");
    if (im->original_labels.empty()) im->original_labels = im->labels;
    im->labels = std::move(new_labels);
    if (im->labels == im->original_labels) im->original_labels.clear();
    return true;
}

bool Dataset::clear_marks(const std::string& path) {
    ImageRecord* im = find_image(images, path);
    if (!im) return false;
    im->excluded = false;
    if (!im->original_labels.empty()) {
        im->labels = im->original_labels;
        im->original_labels.clear();
    }
    return true;
}

void Dataset::keep_marks_of(const Dataset& earlier) {
    std::map<std::string, const ImageRecord*> marked;
    for (const auto& im : earlier.images)
        if (im.excluded || im.relabelled()) marked[im.path] = &im;
    if (marked.empty()) return;
    for (auto& im : images) {
        const auto it = marked.find(im.path);
        if (it == marked.end()) continue;
        im.excluded = it->second->excluded;
        // A correction only carries over when the source still says what it said then, and
        // the classes are the same.
        if (it->second->relabelled() && it->second->original_labels == im.labels && classes == earlier.classes) {
            im.original_labels = it->second->original_labels;
            im.labels = it->second->labels;
        }
    }
}

std::size_t Dataset::marked_count() const {
    std::size_t n = 0;
    for (const auto& im : images) n += im.excluded || im.relabelled();
    return n;
}

void Dataset::save(const fs::path& project) const { write_file_atomically(project / kFileName, to_json()); }

bool Dataset::exists(const fs::path& project) { return fs::exists(project / kFileName); }

Dataset Dataset::load(const fs::path& project) {
    const fs::path file = project / kFileName;
    if (!fs::exists(file))
        throw UserError("'" + project.string() + "' has no dataset yet (no " + kFileName + ")",
                        "run: whisker-cli data prepare " + project.string() + " --from <data>");
    return from_json(read_file(file));
}

fs::path Dataset::resolve(const fs::path& project, const ImageRecord& image) const {
    return resolve_path(image.path, project);
}

}  // namespace whisker::data
