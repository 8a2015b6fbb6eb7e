#include "whisker/project/session.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/common/local_time.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <chrono>
#include <ctime>
#include <map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::project {

namespace {

std::string file_time(const fs::path& p) {
    std::error_code ec;
    const auto ft = fs::last_write_time(p, ec);
    if (ec) return {};
    const auto sys = std::chrono::time_point_cast<std::chrono::system_clock::duration>(ft - fs::file_time_type::clock::now() +
                                                                                       std::chrono::system_clock::now());
    return local_time_text("%Y-%m-%d %H:%M:%S", std::chrono::system_clock::to_time_t(sys));
}

std::string plural(long n, const char* word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

}  // namespace

// ---- learner.json ----

std::optional<LearnerSpec> LearnerSpec::read(const fs::path& project) {
    const fs::path file = project / kFileName;
    if (!fs::exists(file)) return std::nullopt;
    auto damaged = [&file](const std::string& why) -> std::optional<LearnerSpec> {
        throw UserError(file.string() + " is damaged (" + why + ")",
                        "create a new learner (workbench: New learner…; whisker-cli: --new-learner)");
    };
    try {
        const json j = json::parse(read_file(file));
        LearnerSpec s;
        s.arch = j.value("arch", s.arch);
        s.size = j.value("size", s.size);
        s.batch_size = j.value("batch_size", s.batch_size);
        s.pretrained = j.value("pretrained", s.pretrained);
        s.seed = j.value("seed", s.seed);
        // Files from before the augmentation options: side-on, 1.1, flips (the defaults).
        const std::string augment = j.value("augment", std::string(data::augment_preset_name(s.augment)));
        const auto preset = data::parse_augment_preset(augment);
        if (!preset) return damaged("unknown augmentation '" + augment + "'");
        s.augment = *preset;
        s.max_zoom = j.value("max_zoom", s.max_zoom);
        if (!(s.max_zoom >= 1.0)) return damaged(fmt::format("max_zoom {} is below 1", s.max_zoom));
        s.no_flip = j.value("no_flip", s.no_flip);
        s.trivial_augment = j.value("trivial_augment", s.trivial_augment);
        s.random_erasing = j.value("random_erasing", s.random_erasing);
        if (!(s.random_erasing >= 0.0 && s.random_erasing <= 1.0))
            return damaged(fmt::format("random_erasing {} is not a probability", s.random_erasing));
        s.val_resize = j.value("val_resize", s.val_resize);
        if (!(s.val_resize == 0.0 || (s.val_resize >= 1.0 && s.val_resize <= 4.0)))
            return damaged(fmt::format("val_resize {} is not 0 or between 1 and 4", s.val_resize));
        return s;
    } catch (const json::exception& e) {
        return damaged(e.what());
    }
}

void LearnerSpec::write(const fs::path& project) const {
    write_file_atomically(project / kFileName,
                          json{{"arch", arch}, {"size", size}, {"batch_size", batch_size}, {"pretrained", pretrained},
                               {"seed", seed}, {"augment", data::augment_preset_name(augment)}, {"max_zoom", max_zoom},
                               {"no_flip", no_flip}, {"trivial_augment", trivial_augment},
                               {"random_erasing", random_erasing}, {"val_resize", val_resize}}
                              .dump(1));
}

// ---- checkpoints ----

std::vector<CheckpointInfo> list_checkpoints(const fs::path& project) {
    std::vector<CheckpointInfo> out;
    // "saved" counts whole seconds: checkpoints written within one second (an autosave, then
    // "current" at a fit's end) are ordered by their files' times, not by name.
    std::map<std::string, fs::file_time_type> written;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(project / "models", ec)) {
        const fs::path p = entry.path();
        if (p.extension() != ".json" || p.filename() == "training_log.json") continue;
        try {
            const json j = json::parse(read_file(p));
            if (j.value("format", "") != "whisker-checkpoint") continue;
            CheckpointInfo c;
            c.name = p.stem().string();
            c.saved = j.value("saved", file_time(p));
            c.arch = j.value("arch", "");
            c.size = j.value("size", 0);
            c.epochs = j.value("epochs_trained", 0L);
            c.state = j.value("state", j.value("id", ""));
            const auto& history = j.value("history", json::array());
            if (!history.empty()) c.last_epoch = train::epoch_record_from_json(history.back().dump());
            if (j.contains("fit")) {
                const json& f = j["fit"];
                c.fit_in_progress = f.value("epoch", 0) < f.value("total_epochs", 0);
            }
            std::error_code tec;
            written[c.name] = fs::last_write_time(p, tec);
            out.push_back(std::move(c));
        } catch (const std::exception&) {
            // not a checkpoint, or a damaged one: not offered
        }
    }
    std::sort(out.begin(), out.end(), [&written](const CheckpointInfo& a, const CheckpointInfo& b) {
        if (a.saved != b.saved) return a.saved > b.saved;
        const auto ta = written[a.name], tb = written[b.name];
        return ta != tb ? ta > tb : a.name < b.name;
    });
    return out;
}

// ---- the training log ----

TrainingLog TrainingLog::read(const fs::path& project) {
    TrainingLog log;
    try {
        const fs::path file = project / kFileName;
        if (!fs::exists(file)) return log;
        const json j = json::parse(read_file(file));
        log.learner = j.value("learner", "");
        for (const auto& b : j.value("batches", json::array()))
            log.batches.push_back({b.at(0).get<long>(), b.at(1).get<double>(), b.at(2).get<double>(), b.at(3).get<double>()});
        if (j.contains("lr_find")) {
            const json& f = j["lr_find"];
            train::LrFindResult r;
            r.lrs = f.value("lrs", std::vector<double>{});
            r.losses = f.value("losses", std::vector<double>{});
            r.plot_lrs = f.value("plot_lrs", std::vector<double>{});
            r.plot_losses = f.value("plot_losses", std::vector<double>{});
            r.suggestions.minimum = f.value("minimum", 0.0);
            r.suggestions.steepest = f.value("steepest", 0.0);
            r.suggestions.valley = f.value("valley", 0.0);
            r.suggestions.valid = f.value("valid", false);
            r.stopped_early = f.value("stopped_early", false);
            log.lr_find = r;
        }
    } catch (const std::exception&) {
        return TrainingLog{};   // a damaged log costs only the plots
    }
    return log;
}

void TrainingLog::write(const fs::path& project) const {
    json batches_json = json::array();
    for (const auto& b : batches) batches_json.push_back({b.x, b.loss, b.smooth_loss, b.lr});
    json j{{"learner", learner}, {"batches", batches_json}};
    if (lr_find) {
        const auto& r = *lr_find;
        j["lr_find"] = {{"lrs", r.lrs}, {"losses", r.losses}, {"plot_lrs", r.plot_lrs}, {"plot_losses", r.plot_losses},
                        {"minimum", r.suggestions.minimum}, {"steepest", r.suggestions.steepest},
                        {"valley", r.suggestions.valley}, {"valid", r.suggestions.valid}, {"stopped_early", r.stopped_early}};
    }
    write_file_atomically(project / kFileName, j.dump());
}

// ---- the session ----

// Records every training batch for the plot (not lr_find's sweep: it has its own curve).
class Session::Recorder : public train::Callback {
public:
    explicit Recorder(TrainingLog& log) : log_(log) {}
    void after_batch(train::Learner& l, const train::BatchRecord& b) override {
        const auto& h = l.batch_history();
        // lr_find leaves no batch history; only a fit's batches are recorded there.
        if (h.empty() || h.back().iteration != b.iteration || h.back().loss != b.loss) return;
        const long x = log_.batches.empty() ? 0 : log_.batches.back().x + 1;
        log_.batches.push_back({x, b.loss, b.smooth_loss, b.lr});
    }

private:
    TrainingLog& log_;
};

Session::Session(fs::path project, SessionOptions options) : project_(std::move(project)), options_(std::move(options)) {
    std::error_code ec;
    if (!fs::is_directory(project_, ec)) throw UserError("'" + project_.string() + "' is not a folder");
    reload();
}

Session::~Session() = default;

void Session::reload() {
    learner_.reset();
    spec_.reset();
    learner_error_.clear();
    dataset_.reset();
    dataset_error_.clear();
    data_fingerprint_.clear();
    reload_dataset();
    log_ = TrainingLog::read(project_);
    if (options_.load_learner) open_learner();
    // Results of a state that is gone are not kept.
    if (valid_ && !is_current(*valid_)) valid_.reset();
    if (test_ && !is_current(*test_)) test_.reset();
    // A program opening the project finds the predictions the last one made of these weights.
    if (learner_ && dataset_) {
        if (!valid_) valid_ = read_kept_predictions(data::Split::Valid);
        if (!test_) test_ = read_kept_predictions(data::Split::Test);
    }
}

void Session::reload_dataset() {
    if (!data::Dataset::exists(project_)) {
        dataset_.reset();
        dataset_error_ = "this project has no dataset yet";
        return;
    }
    try {
        dataset_ = std::make_shared<const data::Dataset>(data::Dataset::load(project_));
        data_fingerprint_ = sha256_file(project_ / data::Dataset::kFileName);
        dataset_error_.clear();
    } catch (const UserError& e) {
        dataset_.reset();
        dataset_error_ = e.what();
        if (!e.hint().empty()) dataset_error_ += " (" + e.hint() + ")";
        return;
    }
    if (!learner_) return;
    try {
        learner_->set_dataset(*dataset_);
    } catch (const UserError& e) {
        // New classes: the learner's head no longer fits the data.
        learner_.reset();
        learner_error_ = std::string(e.what()) + " (" + e.hint() + ")";
    }
}

const data::Dataset& Session::dataset() const {
    if (!dataset_) {
        if (!data::Dataset::exists(project_))
            throw UserError("no dataset in " + project_.string(),
                            "prepare one first: whisker-cli data prepare " + project_.string() + " --from SOURCE, or the Data page");
        throw UserError(dataset_error_);
    }
    return *dataset_;
}

train::Learner& Session::learner() {
    if (!learner_) throw UserError(learner_error_.empty() ? "this project has no learner yet" : learner_error_,
                                   "create one (workbench: Train page; whisker-cli: fit/run with --arch)");
    return *learner_;
}

const train::Learner& Session::learner() const { return const_cast<Session*>(this)->learner(); }

void Session::set_precision(train::Precision precision) {
    if (learner_) learner_->set_precision(precision);   // throws during a fit, or fp16 on a CPU
    options_.base.precision = precision;
}

train::LearnerConfig LearnerSpec::config(const train::LearnerConfig& base) const {
    train::LearnerConfig c = base;
    c.arch = arch;
    c.size = size;
    c.batch_size = batch_size;
    c.pretrained = pretrained;
    c.seed = seed;
    c.augment = augment;
    c.max_zoom = max_zoom;
    c.no_flip = no_flip;
    c.trivial_augment = trivial_augment;
    c.random_erasing = random_erasing;
    c.val_resize = val_resize;
    return c;
}

train::LearnerConfig Session::config_of(const LearnerSpec& spec) const { return spec.config(options_.base); }

void Session::attach(std::unique_ptr<train::Learner> learner) {
    learner_ = std::move(learner);
    learner_->add_callback(std::make_shared<Recorder>(log_));
}

void Session::open_learner() {
    try {
        spec_ = LearnerSpec::read(project_);
    } catch (const UserError& e) {
        learner_error_ = e.what();
        return;
    }
    if (!spec_) return;
    if (!dataset_) {
        learner_error_ = "the project's learner (" + spec_->arch + ") needs its dataset: " + dataset_error_;
        return;
    }
    try {
        train::LearnerConfig c = config_of(*spec_);
        const bool has_current = fs::exists(project_ / "models" / "current.json");
        c.weights_from_checkpoint = has_current;
        auto l = std::make_unique<train::Learner>(project_, *dataset_, c, options_.progress);
        if (has_current) l->load("current");
        attach(std::move(l));
        // A log written for other weights (an older learner) would mislead.
        if (!log_.learner.empty() && log_.learner != learner_->state_id()) log_ = TrainingLog{};
    } catch (const UserError& e) {
        learner_.reset();
        learner_error_ = "cannot open the project's learner: " + std::string(e.what());
        if (!e.hint().empty()) learner_error_ += " (" + e.hint() + ")";
    } catch (const std::exception& e) {
        learner_.reset();
        learner_error_ = "cannot open the project's learner: " + std::string(e.what());
    }
}

std::string Session::describe_learner() const {
    if (!learner_ || !spec_) return {};
    const auto& l = *learner_;
    std::string s = fmt::format("{} at {} px, {}", spec_->arch, spec_->size, spec_->pretrained ? "pretrained" : "from scratch");
    const LearnerSpec defaults;
    if (spec_->augment != defaults.augment || spec_->max_zoom != defaults.max_zoom || spec_->no_flip != defaults.no_flip ||
        spec_->trivial_augment || spec_->random_erasing > 0.0)
        s += ", " + data::describe_augmentation(spec_->augment, spec_->max_zoom, spec_->no_flip, spec_->trivial_augment,
                                                spec_->random_erasing);
    s += ", " + plural(l.epochs_trained(), "epoch");
    if (l.frozen_groups() >= l.num_groups() - 1) s += ", body frozen";
    else if (l.frozen_groups() == 0) s += ", body unfrozen";
    else s += fmt::format(", first {} of the body frozen", plural(l.frozen_groups(), "layer group"));
    if (l.precompute()) s += ", precompute on";
    return s;
}

std::string Session::model_words() const {
    const auto& l = *learner_;
    return fmt::format("{} at {} px, {}{}", l.config().arch, l.config().size, plural(l.epochs_trained(), "epoch"),
                       l.ema_weights_in_use() ? ", EMA weights" : "");
}

void Session::resize_learner(int size) {
    train::Learner& l = learner();
    l.set_size(size);
    // Predictions at the old size no longer say what the learner predicts.
    valid_.reset();
    test_.reset();
    persist();
}

void Session::set_batch_size(int batch_size) {
    learner().set_batch_size(batch_size);
    persist();
}

bool Session::learner_is_trained() const {
    if (!learner_) return false;
    return learner_->epochs_trained() > 0 || !log_.batches.empty();
}

std::string Session::new_learner(const LearnerSpec& spec) {
    const data::Dataset& d = dataset();
    // A name no checkpoint has yet (two new learners within one second keep both).
    const std::string stamp = "before-new-" + local_time_text("%Y%m%d-%H%M%S");
    std::string base = stamp;
    for (int i = 2; fs::exists(project_ / "models" / (base + ".json")) ||
                    fs::exists(project_ / "models" / (base + "-autosave.json"));
         ++i)
        base = stamp + "-" + std::to_string(i);
    std::string kept;
    if (learner_is_trained()) {
        kept = base;
        learner_->save(kept);
    }
    // The old model goes first: two big networks at once may not fit on a GPU.
    learner_.reset();
    valid_.reset();
    test_.reset();
    spec_ = spec;
    train::LearnerConfig c = config_of(spec);
    try {
        attach(std::make_unique<train::Learner>(project_, d, c, options_.progress));
    } catch (...) {
        // No new learner (an unknown arch, pretrained weights that cannot be had): the old one
        // stays the project's, as it was.
        learner_.reset();
        spec_.reset();
        open_learner();
        if (learner_ && !kept.empty()) {
            try {
                learner_->load(kept);
            } catch (const std::exception&) {
            }
        }
        throw;
    }
    log_ = TrainingLog{};
    learner_error_.clear();
    // The old learner's interrupted fit is not the new one's to resume: its autosave is kept
    // under another name (resume() continues "autosave").
    if (learner_->is_main_process()) {
        for (const auto& c : list_checkpoints(project_)) {
            if (c.name != "autosave" || !c.fit_in_progress) continue;
            for (const char* ext : {".json", ".safetensors", ".optim", ".ema.safetensors"}) {
                std::error_code ec;
                const fs::path from = project_ / "models" / (std::string("autosave") + ext);
                if (fs::exists(from, ec)) fs::rename(from, project_ / "models" / (base + "-autosave" + ext), ec);
            }
        }
    }
    persist();
    return kept;
}

LearnerState Session::state() const {
    LearnerState s;
    if (learner_) s.weights = learner_->state_id();
    s.data = data_fingerprint_;
    return s;
}

train::LrFindResult Session::lr_find(double start, double end, bool linear, const std::atomic<bool>* stop) {
    auto r = learner().lr_find(start, end, linear, stop);
    log_.lr_find = r;
    return r;
}

train::FitResult Session::fit(const train::FitOptions& options, const std::atomic<bool>* stop) {
    return learner().fit(options, stop);
}

train::FitResult Session::resume(const std::atomic<bool>* stop) { return learner().resume("autosave", stop); }

train::RecipeResult Session::run_recipe(const std::string& recipe_json, const train::RecipeEvents& events,
                                        const std::atomic<bool>* stop) {
    train::RecipeEvents ev = events;
    ev.lr_found = [this, &events](const train::LrFindResult& r, double lr, bool chosen) {
        log_.lr_find = r;
        if (events.lr_found) events.lr_found(r, lr, chosen);
    };
    ev.predicted = [this, &events](const train::Predictions& p, data::Split split, const fs::path& written) {
        SplitPredictions sp;
        sp.predictions = std::make_shared<const train::Predictions>(p);
        sp.dataset = std::make_shared<const data::Dataset>(learner_->dataset());
        sp.split = split;
        sp.tta = p.passes > 0 ? p.passes - 1 : 0;
        sp.origin = state();
        sp.model = model_words();
        remember(std::move(sp));
        if (events.predicted) events.predicted(p, split, written);
    };
    return train::run_recipe(learner(), recipe_json, ev, stop);
}

void Session::remember(SplitPredictions p) {
    keep_predictions(p);
    if (p.split == data::Split::Test) test_ = std::move(p);
    else valid_ = std::move(p);
}

// ---- predictions kept on disk: PROJECT/cache/predictions/<split>.bin ----
// One file per split, written atomically: an 8-byte little-endian length, a JSON header (origin,
// TTA, mix, model, rows, classes, records, predicted, actual, losses), then the probabilities as
// float32 [rows x classes]. Read back only when the origin is the learner's current state.

namespace {
constexpr int kKeptPredictionsVersion = 1;
}

fs::path Session::kept_predictions_path(data::Split split) const {
    return project_ / "cache" / "predictions" / (std::string(data::split_name(split)) + ".bin");
}

void Session::keep_predictions(const SplitPredictions& sp) const {
    const train::Predictions& p = *sp.predictions;
    const at::Tensor probs = p.probs.to(at::kFloat).contiguous();
    nlohmann::json h;
    h["version"] = kKeptPredictionsVersion;
    h["weights"] = sp.origin.weights;
    h["data"] = sp.origin.data;
    h["tta"] = sp.tta;
    h["mix"] = sp.mix == train::TtaMix::Beta ? "beta" : "mean";
    h["model"] = sp.model;
    h["passes"] = p.passes;
    h["rows"] = p.records.size();
    h["classes"] = probs.dim() == 2 ? probs.size(1) : 0;
    h["records"] = p.records;
    h["predicted"] = p.predicted;
    h["actual"] = p.actual;
    nlohmann::json losses = nlohmann::json::array();   // NaN (unlabelled) as null
    for (double l : p.losses) losses.push_back(std::isnan(l) ? nlohmann::json(nullptr) : nlohmann::json(l));
    h["losses"] = std::move(losses);
    const std::string header = h.dump();
    std::string bytes(8, '\0');
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    bytes += header;
    bytes.append(static_cast<const char*>(probs.data_ptr()), static_cast<std::size_t>(probs.numel()) * sizeof(float));
    try {
        write_file_atomically(kept_predictions_path(sp.split), bytes);
    } catch (const std::exception&) {
        // Keeping them is a convenience for the next program: the predictions in hand stay valid.
    }
}

std::optional<SplitPredictions> Session::read_kept_predictions(data::Split split) const {
    const fs::path file = kept_predictions_path(split);
    std::error_code ec;
    if (!fs::exists(file, ec)) return std::nullopt;
    try {
        const std::string bytes = read_file(file);
        if (bytes.size() < 8) return std::nullopt;
        std::uint64_t n = 0;
        for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)])) << (8 * i);
        if (n > bytes.size() - 8) return std::nullopt;
        const auto h = nlohmann::json::parse(bytes.substr(8, n));
        if (h.value("version", 0) != kKeptPredictionsVersion) return std::nullopt;
        SplitPredictions sp;
        sp.origin.weights = h.at("weights").get<std::string>();
        sp.origin.data = h.at("data").get<std::string>();
        if (sp.origin != state()) return std::nullopt;   // of other weights or other data
        const auto rows = h.at("rows").get<std::size_t>();
        const auto classes = h.at("classes").get<std::int64_t>();
        if (bytes.size() - 8 - n != rows * static_cast<std::size_t>(classes) * sizeof(float)) return std::nullopt;
        auto p = std::make_shared<train::Predictions>();
        p->records = h.at("records").get<std::vector<std::size_t>>();
        p->predicted = h.at("predicted").get<std::vector<int>>();
        p->actual = h.at("actual").get<std::vector<int>>();
        for (const auto& l : h.at("losses")) p->losses.push_back(l.is_null() ? std::nan("") : l.get<double>());
        p->passes = h.value("passes", 1);
        if (p->records.size() != rows || p->predicted.size() != rows || p->actual.size() != rows || p->losses.size() != rows)
            return std::nullopt;
        for (std::size_t r : p->records)
            if (r >= dataset_->images.size()) return std::nullopt;
        p->probs = at::empty({static_cast<std::int64_t>(rows), classes}, at::kFloat);
        std::memcpy(p->probs.data_ptr(), bytes.data() + 8 + n, rows * static_cast<std::size_t>(classes) * sizeof(float));
        sp.predictions = std::move(p);
        sp.dataset = dataset_;
        sp.split = split;
        sp.tta = h.value("tta", 0);
        sp.mix = h.value("mix", "mean") == "beta" ? train::TtaMix::Beta : train::TtaMix::Mean;
        sp.model = h.value("model", "");
        return sp;
    } catch (const std::exception&) {
        return std::nullopt;   // damaged: predict again
    }
}

const SplitPredictions& Session::predict(data::Split split, int tta, train::TtaMix mix, const std::atomic<bool>* stop) {
    train::Learner& l = learner();
    if (split == data::Split::Train) throw UserError("predictions are made for the valid or test split");
    if (l.dataset().count(split) == 0) throw UserError(std::string("the dataset has no ") + data::split_name(split) + " images");
    SplitPredictions sp;
    sp.predictions = std::make_shared<const train::Predictions>(l.predict(split, tta, mix, stop));
    sp.dataset = std::make_shared<const data::Dataset>(l.dataset());
    sp.split = split;
    sp.tta = tta;
    sp.mix = mix;
    sp.origin = state();
    sp.model = model_words();
    remember(std::move(sp));
    return *predictions(split);
}

const std::optional<SplitPredictions>& Session::predictions(data::Split split) const {
    return split == data::Split::Test ? test_ : valid_;
}

void Session::write_submission(const fs::path& path, double clip, bool labels) const {
    if (!test_) throw UserError("no test predictions yet", "predict the test set first");
    if (!is_current(*test_))
        throw UserError("the test predictions came from another state of the learner (it was trained, loaded or replaced since, "
                        "or the data changed)",
                        "predict the test set again");
    train::write_submission(path, *test_->dataset, *test_->predictions, clip, labels);
}

void Session::save_checkpoint(const std::string& name) {
    learner().save(name);
    // "current" is what the next program opens; saving it is persisting.
    if (name == "current") persist();
}

void Session::load_checkpoint(const std::string& name) {
    learner().load(name);
    persist();
}

std::optional<CheckpointInfo> Session::interrupted_fit() const {
    if (!learner_) return std::nullopt;
    for (auto& c : list_checkpoints(project_))
        if (c.name == "autosave" && c.fit_in_progress && c.arch == learner_->config().arch && c.size == learner_->config().size)
            return c;
    return std::nullopt;
}

void Session::persist() {
    train::Learner& l = learner();
    // The size follows the learner (a recipe's "size" step changes it).
    if (spec_) spec_->size = l.config().size;
    if (spec_) spec_->batch_size = l.config().batch_size;   // changed by set_batch_size
    if (l.is_main_process() && spec_) spec_->write(project_);
    l.save("current");
    if (!l.is_main_process()) return;
    log_.learner = l.state_id();
    log_.write(project_);
}

}  // namespace whisker::project
