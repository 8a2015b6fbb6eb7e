#include "whisker/project/runs.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/common/local_time.h"
#include "whisker/data/transforms.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/train/precision.h"
#include "whisker/train/schedule.h"
#include "whisker/train/distributed.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <fcntl.h>
#include <limits>
#include <map>
#include <sys/file.h>
#include <unistd.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::project {

namespace {

constexpr std::size_t kMaxBatchPoints = 2000;

fs::path runs_dir(const fs::path& project) { return project / "runs"; }

std::string this_host() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return {};
    return name;
}

bool process_alive(long pid) {
    if (pid <= 0) return false;
    return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// NaN and infinities are not JSON: they travel as null.
json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double number_of(const json& j, const char* key) {
    if (!j.contains(key) || !j[key].is_number()) return std::numeric_limits<double>::quiet_NaN();
    return j[key].get<double>();
}

json epoch_json(const train::EpochRecord& r) {
    json j{{"epoch", r.epoch}, {"trn_loss", number(r.trn_loss)}, {"val_loss", number(r.val_loss)},
           {"accuracy", number(r.accuracy)}, {"log_loss", number(r.log_loss)}, {"seconds", r.seconds}};
    if (r.has_ema) {
        j["ema_val_loss"] = number(r.ema_val_loss);
        j["ema_accuracy"] = number(r.ema_accuracy);
        j["ema_log_loss"] = number(r.ema_log_loss);
    }
    return j;
}
train::EpochRecord epoch_of(const json& j) {
    train::EpochRecord r;
    r.epoch = j.value("epoch", 0);
    r.trn_loss = number_of(j, "trn_loss");
    r.val_loss = number_of(j, "val_loss");
    r.accuracy = number_of(j, "accuracy");
    r.log_loss = number_of(j, "log_loss");
    r.seconds = j.value("seconds", 0.0);
    r.has_ema = j.contains("ema_val_loss");
    if (r.has_ema) {
        r.ema_val_loss = number_of(j, "ema_val_loss");
        r.ema_accuracy = number_of(j, "ema_accuracy");
        r.ema_log_loss = number_of(j, "ema_log_loss");
    }
    return r;
}

// The same keys as a checkpoint's "fit.options", so that a resumed fit reads like a new one.
json options_json(const train::FitOptions& o) {
    return {{"lrs", o.lrs}, {"n_cycle", o.n_cycle}, {"cycle_len", o.cycle_len}, {"cycle_mult", o.cycle_mult}, {"wds", o.wds},
            {"optimizer", o.optimizer == train::OptimizerKind::AdamW ? "adamw" : "sgd"}, {"momentum", o.momentum},
            {"one_cycle", o.one_cycle}, {"mixup_alpha", o.mixup_alpha}, {"cutmix_alpha", o.cutmix_alpha},
            {"mix_switch_prob", o.mix_switch_prob}, {"mix_prob", o.mix_prob}, {"ema_decay", o.ema_decay},
            {"label_smoothing", o.label_smoothing}, {"accumulate", o.accumulate}};
}

std::string plural(double n, const char* word) { return fmt::format("{:g} {}{}", n, word, n == 1 ? "" : "s"); }

// The schedule in words, from FitOptions-style keys (n_cycle, cycle_len, cycle_mult, one_cycle)
// or a recipe step's (cycles, cycle_len, cycle_mult, one_cycle).
std::string schedule_words(const json& asked) {
    const int cycles = asked.value("n_cycle", asked.value("cycles", 1));
    const double len = asked.value("cycle_len", 0.0);
    const int mult = asked.value("cycle_mult", 1);
    if (asked.value("one_cycle", false)) return "one-cycle, " + plural(cycles, "epoch");
    if (len > 0) {
        std::string s = fmt::format("SGDR, {} of {}", plural(cycles, "cycle"), plural(len, "epoch"));
        if (mult > 1) s += fmt::format(", each x{}", mult);
        return s + fmt::format(" ({} epochs)", train::sgdr_epochs(len, mult, cycles));
    }
    return "constant, " + plural(cycles, "epoch");
}

// 0-based epochs (within the fit) that end an SGDR cycle: 1+2+4 -> {0, 2, 6}.
std::vector<int> cycle_end_epochs(const json& asked) {
    std::vector<int> out;
    const int cycles = asked.value("n_cycle", asked.value("cycles", 1));
    const double len = asked.value("cycle_len", 0.0);
    const int mult = std::max(1, asked.value("cycle_mult", 1));
    if (asked.value("one_cycle", false) || !(len > 0)) return out;
    double end = 0, this_len = len;
    for (int c = 0; c < cycles; ++c) {
        end += this_len;
        this_len *= mult;
        out.push_back(static_cast<int>(std::ceil(end - 1e-9)) - 1);
    }
    return out;
}

std::string join_numbers(const std::vector<double>& v, const char* format = "{:.2e}") {
    std::string out;
    for (double x : v) out += (out.empty() ? "" : ", ") + fmt::format(fmt::runtime(format), x);
    return out;
}

json to_json(const RunRecord& r) {
    json fits = json::array();
    for (const auto& f : r.fits) {
        json epochs = json::array();
        for (const auto& e : f.epochs) epochs.push_back(epoch_json(e));
        json batches = json::array();
        for (const auto& b : f.batches) batches.push_back({b.iteration, number(b.loss), number(b.smooth_loss), b.lr});
        json asked = json::object();
        if (!f.asked.empty()) {
            try {
                asked = json::parse(f.asked);
            } catch (const json::exception&) {
            }
        }
        fits.push_back({{"asked", asked}, {"schedule", f.schedule}, {"optimizer", f.optimizer}, {"lrs", f.lrs},
                        {"group_lrs", f.group_lrs}, {"wds", f.wds}, {"frozen_groups", f.frozen_groups},
                        {"precompute", f.precompute}, {"bn_freeze", f.bn_freeze}, {"resumed", f.resumed},
                        {"epochs_before", f.epochs_before}, {"epochs", epochs}, {"batches", batches},
                        {"stopped", f.stopped}, {"stop_reason", f.stop_reason}, {"snapshots", f.snapshots}});
    }
    json finds = json::array();
    for (const auto& l : r.lr_finds)
        finds.push_back({{"lrs", l.lrs}, {"losses", l.losses}, {"minimum", l.minimum}, {"steepest", l.steepest},
                         {"valley", l.valley}, {"suggestions_valid", l.suggestions_valid},
                         {"stopped_early", l.stopped_early}, {"chosen", l.chosen}});
    json preds = json::array();
    for (const auto& p : r.predictions)
        preds.push_back({{"split", p.split}, {"tta", p.tta}, {"mix", p.mix}, {"rows", p.rows},
                         {"accuracy", number(p.accuracy)}, {"log_loss", number(p.log_loss)}, {"file", p.file},
                         {"file_sha256", p.file_sha256}});
    json members = json::array();
    for (const auto& m : r.members)
        members.push_back({{"source", m.source}, {"checkpoint", m.checkpoint}, {"arch", m.arch}, {"size", m.size},
                           {"weight", m.weight}, {"accuracy", number(m.accuracy)}, {"log_loss", number(m.log_loss)}});
    json j{{"format", "whisker-run"}, {"version", 1}, {"number", r.number}, {"kind", run_kind_name(r.kind)},
           {"status", r.status}, {"error", r.error}, {"started", r.started}, {"ended", r.ended},
           {"wall_seconds", r.wall_seconds}, {"program", r.program}, {"command", r.command}, {"pid", r.pid},
           {"host", r.host}, {"device", r.device},
           {"learner", {{"arch", r.arch}, {"size", r.size}, {"batch_size", r.batch_size}, {"pretrained", r.pretrained},
                        {"seed", r.seed}, {"precision", r.precision}, {"augmentation", r.augmentation},
                        {"augment", r.augment_preset}, {"max_zoom", r.max_zoom}, {"no_flip", r.no_flip},
                        {"trivial_augment", r.trivial_augment}, {"random_erasing", r.random_erasing},
                        {"val_resize", r.val_resize}, {"accumulate", r.accumulate}, {"processes", r.processes}}},
           {"data", {{"sha256", r.data_sha256}, {"train", r.train_images}, {"valid", r.valid_images},
                     {"test", r.test_images}, {"marked", r.marked_images}, {"classes", r.classes}}},
           {"fits", fits}, {"lr_finds", finds}, {"predictions", preds}, {"members", members},
           {"ensemble_mix", r.ensemble_mix}, {"checkpoint", r.checkpoint}, {"submission", r.submission},
           {"submission_sha256", r.submission_sha256}, {"start_state", r.start_state}, {"end_state", r.end_state},
           {"parent", r.parent}, {"resumed", r.resumed}};
    if (r.folds > 0) {
        j["fold"] = r.fold;
        j["folds"] = r.folds;
        j["oof"] = r.oof;
    }
    if (r.kaggle)
        j["kaggle"] = {{"competition", r.kaggle->competition}, {"message", r.kaggle->message}, {"ref", r.kaggle->ref},
                       {"status", r.kaggle->status}, {"public_score", r.kaggle->public_score},
                       {"private_score", r.kaggle->private_score}, {"error", r.kaggle->error}};
    if (!r.recipe.empty()) {
        try {
            j["recipe"] = json::parse(r.recipe);
        } catch (const json::exception&) {
            j["recipe"] = r.recipe;
        }
    }
    return j;
}

RunRecord from_json(const json& j) {
    if (j.value("format", "") != "whisker-run") throw UserError("not a Whisker run record");
    RunRecord r;
    r.number = j.at("number").get<int>();
    const auto kind = parse_run_kind(j.value("kind", ""));
    if (!kind) throw UserError("unknown run kind " + j.value("kind", ""));
    r.kind = *kind;
    r.status = j.value("status", "");
    r.error = j.value("error", "");
    r.started = j.value("started", "");
    r.ended = j.value("ended", "");
    r.wall_seconds = j.value("wall_seconds", 0.0);
    r.program = j.value("program", "");
    r.command = j.value("command", "");
    r.pid = j.value("pid", 0L);
    r.host = j.value("host", "");
    r.device = j.value("device", "");
    const json l = j.value("learner", json::object());
    r.arch = l.value("arch", "");
    r.size = l.value("size", 0);
    r.batch_size = l.value("batch_size", 0);
    r.pretrained = l.value("pretrained", false);
    r.seed = l.value("seed", std::uint64_t{0});
    r.precision = l.value("precision", "");
    r.augmentation = l.value("augmentation", "");
    r.augment_preset = l.value("augment", "");
    r.max_zoom = l.value("max_zoom", 1.1);
    r.no_flip = l.value("no_flip", false);
    r.trivial_augment = l.value("trivial_augment", false);
    r.random_erasing = l.value("random_erasing", 0.0);
    r.val_resize = l.value("val_resize", 0.0);
    r.accumulate = l.value("accumulate", 1);
    r.processes = l.value("processes", 1);
    const json d = j.value("data", json::object());
    r.data_sha256 = d.value("sha256", "");
    r.train_images = d.value("train", std::size_t{0});
    r.valid_images = d.value("valid", std::size_t{0});
    r.test_images = d.value("test", std::size_t{0});
    r.marked_images = d.value("marked", std::size_t{0});
    r.classes = d.value("classes", std::vector<std::string>{});
    for (const auto& f : j.value("fits", json::array())) {
        RunFit fit;
        fit.asked = f.value("asked", json::object()).dump();
        fit.schedule = f.value("schedule", "");
        fit.optimizer = f.value("optimizer", "");
        fit.lrs = f.value("lrs", std::vector<double>{});
        fit.group_lrs = f.value("group_lrs", std::vector<double>{});
        fit.wds = f.value("wds", std::vector<double>{});
        fit.frozen_groups = f.value("frozen_groups", 0);
        fit.precompute = f.value("precompute", false);
        fit.bn_freeze = f.value("bn_freeze", false);
        fit.resumed = f.value("resumed", false);
        fit.epochs_before = f.value("epochs_before", 0L);
        for (const auto& e : f.value("epochs", json::array())) fit.epochs.push_back(epoch_of(e));
        for (const auto& b : f.value("batches", json::array())) {
            RunFit::Batch batch;
            batch.iteration = b.at(0).get<long>();
            batch.loss = b.at(1).is_number() ? b.at(1).get<double>() : std::nan("");
            batch.smooth_loss = b.at(2).is_number() ? b.at(2).get<double>() : std::nan("");
            batch.lr = b.at(3).get<double>();
            fit.batches.push_back(batch);
        }
        fit.stopped = f.value("stopped", false);
        fit.stop_reason = f.value("stop_reason", "");
        fit.snapshots = f.value("snapshots", std::vector<std::string>{});
        r.fits.push_back(std::move(fit));
    }
    for (const auto& f : j.value("lr_finds", json::array())) {
        RunLrFind l2;
        l2.lrs = f.value("lrs", std::vector<double>{});
        l2.losses = f.value("losses", std::vector<double>{});
        l2.minimum = f.value("minimum", 0.0);
        l2.steepest = f.value("steepest", 0.0);
        l2.valley = f.value("valley", 0.0);
        l2.suggestions_valid = f.value("suggestions_valid", false);
        l2.stopped_early = f.value("stopped_early", false);
        l2.chosen = f.value("chosen", 0.0);
        r.lr_finds.push_back(std::move(l2));
    }
    for (const auto& p : j.value("predictions", json::array())) {
        RunPrediction q;
        q.split = p.value("split", "");
        q.tta = p.value("tta", 0);
        q.mix = p.value("mix", "");
        q.rows = p.value("rows", std::size_t{0});
        q.accuracy = number_of(p, "accuracy");
        q.log_loss = number_of(p, "log_loss");
        q.file = p.value("file", "");
        q.file_sha256 = p.value("file_sha256", "");
        r.predictions.push_back(std::move(q));
    }
    for (const auto& m : j.value("members", json::array())) {
        RunMember x;
        x.source = m.value("source", "");
        x.checkpoint = m.value("checkpoint", "");
        x.arch = m.value("arch", "");
        x.size = m.value("size", 0);
        x.weight = m.value("weight", 1.0);
        x.accuracy = number_of(m, "accuracy");
        x.log_loss = number_of(m, "log_loss");
        r.members.push_back(std::move(x));
    }
    r.ensemble_mix = j.value("ensemble_mix", "");
    r.checkpoint = j.value("checkpoint", "");
    r.submission = j.value("submission", "");
    r.submission_sha256 = j.value("submission_sha256", "");
    if (j.contains("kaggle") && j["kaggle"].is_object()) {
        const json& k = j["kaggle"];
        r.kaggle = RunKaggle{k.value("competition", ""), k.value("message", ""), k.value("ref", ""), k.value("status", ""),
                             k.value("public_score", ""), k.value("private_score", ""), k.value("error", "")};
    }
    r.start_state = j.value("start_state", "");
    r.end_state = j.value("end_state", "");
    r.parent = j.value("parent", 0);
    r.resumed = j.value("resumed", false);
    r.fold = j.value("fold", -1);
    r.folds = j.value("folds", 0);
    r.oof = j.value("oof", "");
    if (j.contains("recipe")) r.recipe = j["recipe"].is_string() ? j["recipe"].get<std::string>() : j["recipe"].dump(1);
    return r;
}

// "0007-fit.json" -> 7; 0 for other names.
int number_of_file(const fs::path& file) {
    const std::string name = file.filename().string();
    if (file.extension() != ".json") return 0;
    const auto dash = name.find('-');
    if (dash == std::string::npos || dash == 0) return 0;
    int n = 0;
    for (std::size_t i = 0; i < dash; ++i) {
        if (name[i] < '0' || name[i] > '9' || n > INT_MAX / 10 - 10) return 0;
        n = n * 10 + (name[i] - '0');
    }
    return n;
}

// Makes checkpoint `to` the same files as checkpoint `from` (hard links: no copy, and a later
// atomic rewrite of `from` leaves them alone). Each file goes to a temporary name first and is
// renamed into place. Returns false when `from` has no checkpoint.
bool link_checkpoint(const fs::path& project, const std::string& from, const std::string& to) {
    const fs::path dir = project / "models";
    if (!fs::exists(dir / (from + ".json"))) return false;
    // The .json last: list_checkpoints sees the new checkpoint only once its weights are there.
    for (const char* ext : {".safetensors", ".optim", ".ema.safetensors", ".grads.safetensors", ".json"}) {
        const fs::path src = dir / (from + ext), dst = dir / (to + ext);
        std::error_code ec;
        if (!fs::exists(src, ec)) {
            fs::remove(dst, ec);
            continue;
        }
        const fs::path tmp = dir / fmt::format(".{}{}.link-{}", to, ext, ::getpid());
        fs::remove(tmp, ec);
        fs::create_hard_link(src, tmp, ec);
        if (ec) {
            ec.clear();
            fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
            if (ec) throw UserError("cannot keep checkpoint " + to + ": " + ec.message());
        }
        fs::rename(tmp, dst, ec);
        if (ec) throw UserError("cannot keep checkpoint " + to + ": " + ec.message());
    }
    return true;
}

// The state a checkpoint's weights are (its "state", or "id" in old files); "" when unknown.
std::string checkpoint_state(const fs::path& project, const std::string& name) {
    try {
        const json j = json::parse(read_file(project / "models" / (name + ".json")));
        return j.value("state", j.value("id", ""));
    } catch (const std::exception&) {
        return {};
    }
}

}  // namespace

const char* run_kind_name(RunKind kind) {
    switch (kind) {
    case RunKind::Fit: return "fit";
    case RunKind::LrFind: return "lr_find";
    case RunKind::Recipe: return "recipe";
    case RunKind::Predict: return "predict";
    case RunKind::Submission: return "submission";
    case RunKind::Ensemble: return "ensemble";
    }
    return "fit";
}

std::optional<RunKind> parse_run_kind(const std::string& name) {
    for (RunKind k : {RunKind::Fit, RunKind::LrFind, RunKind::Recipe, RunKind::Predict, RunKind::Submission, RunKind::Ensemble})
        if (name == run_kind_name(k)) return k;
    return std::nullopt;
}

std::string run_checkpoint_name(int number) { return fmt::format("run-{:04d}", number); }

std::optional<int> parse_run_reference(const std::string& text) {
    std::string digits = text;
    if (!digits.empty() && digits[0] == '#') digits = digits.substr(1);
    else if (digits.rfind("run-", 0) == 0) digits = digits.substr(4);
    if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    const int n = std::stoi(digits);
    if (n <= 0) return std::nullopt;
    return n;
}

// ---- RunRecord ----

std::vector<train::EpochRecord> RunRecord::all_epochs() const {
    std::vector<train::EpochRecord> out;
    for (const auto& f : fits) out.insert(out.end(), f.epochs.begin(), f.epochs.end());
    return out;
}

std::optional<train::EpochRecord> RunRecord::best_epoch() const {
    std::optional<train::EpochRecord> best;
    for (const auto& e : all_epochs())
        if (std::isfinite(e.log_loss) && (!best || e.log_loss < best->log_loss)) best = e;
    return best;
}

long RunRecord::epochs() const {
    long n = 0;
    for (const auto& f : fits) n += static_cast<long>(f.epochs.size());
    return n;
}

std::optional<RunRecord::Score> RunRecord::validation() const {
    for (auto it = predictions.rbegin(); it != predictions.rend(); ++it)
        if (it->split == "valid" && std::isfinite(it->log_loss))
            return Score{it->accuracy, it->log_loss,
                         it->tta > 0 ? fmt::format("valid prediction, TTA x{}", it->tta) : std::string("valid prediction")};
    for (auto f = fits.rbegin(); f != fits.rend(); ++f)
        if (!f->epochs.empty()) {
            const auto& e = f->epochs.back();
            return Score{e.accuracy, e.log_loss, fmt::format("epoch {}", f->epochs_before + e.epoch + 1)};
        }
    return std::nullopt;
}

RunRecord parse_run(const std::string& text) {
    try {
        RunRecord r = from_json(json::parse(text));
        r.json = text;
        return r;
    } catch (const json::exception& e) {
        throw UserError(std::string("damaged run record: ") + e.what());
    }
}

namespace {

// A run left "running" by a process that is gone reads as interrupted.
void settle_status(RunRecord& r) {
    if (r.status == "running" && r.host == this_host() && !process_alive(r.pid)) r.status = "interrupted";
}

std::vector<std::pair<int, fs::path>> run_files(const fs::path& project) {
    std::vector<std::pair<int, fs::path>> out;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(runs_dir(project), ec)) {
        const int n = number_of_file(entry.path());
        if (n > 0) out.emplace_back(n, entry.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

std::optional<RunRecord> read_run(const fs::path& project, int number) {
    for (const auto& [n, file] : run_files(project)) {
        if (n != number) continue;
        try {
            RunRecord r = parse_run(read_file(file));
            settle_status(r);
            return r;
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }
    return std::nullopt;
}

std::vector<RunRecord> list_runs(const fs::path& project) {
    std::vector<RunRecord> out;
    for (const auto& [n, file] : run_files(project)) {
        try {
            RunRecord r = parse_run(read_file(file));
            settle_status(r);
            out.push_back(std::move(r));
        } catch (const std::exception&) {
            // a damaged record is left out; the others still read
        }
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> run_settings(const RunRecord& r) {
    std::vector<std::pair<std::string, std::string>> s;
    auto add = [&s](std::string key, std::string value) { s.emplace_back(std::move(key), std::move(value)); };
    add("kind", run_kind_name(r.kind));
    if (!r.arch.empty()) {
        add("arch", r.arch);
        add("size", std::to_string(r.size));
        add("batch", std::to_string(r.batch_size));
        add("pretrained", r.pretrained ? "yes" : "no");
        add("seed", std::to_string(r.seed));
        add("precision", r.precision);
        add("augmentation", r.augmentation);
        if (r.val_resize > 0) add("val_resize", fmt::format("{:g}", r.val_resize));
        add("accumulate", std::to_string(r.accumulate));
        add("processes", std::to_string(r.processes));
    }
    add("device", r.device);
    add("data", fmt::format("{} (train {}, valid {}, test {}, {} marked)", r.data_sha256.substr(0, 12), r.train_images,
                            r.valid_images, r.test_images, r.marked_images));
    add("parent", r.parent ? fmt::format("#{}{}", r.parent, r.resumed ? " (resumed)" : "") : "-");
    if (r.folds > 0) add("fold", fmt::format("{} of {} (folds 0-{})", r.fold, r.folds, r.folds - 1));
    for (std::size_t i = 0; i < r.fits.size(); ++i) {
        const auto& f = r.fits[i];
        const std::string p = r.fits.size() == 1 ? "fit: " : fmt::format("fit {}: ", i + 1);
        add(p + "lr", f.lrs.empty() ? "-" : join_numbers(f.lrs));
        add(p + "group lrs", f.group_lrs.empty() ? "-" : join_numbers(f.group_lrs));
        add(p + "schedule", f.schedule.empty() ? "-" : f.schedule);
        add(p + "optimizer", f.optimizer.empty() ? "-" : f.optimizer);
        add(p + "wd", f.wds.empty() ? "0" : join_numbers(f.wds, "{:g}"));
        add(p + "frozen groups", std::to_string(f.frozen_groups));
        add(p + "precompute", f.precompute ? "on" : "off");
        add(p + "bn_freeze", f.bn_freeze ? "on" : "off");
        json asked = json::object();
        try {
            asked = json::parse(f.asked.empty() ? "{}" : f.asked);
        } catch (const json::exception&) {
        }
        std::string extra;
        for (const char* key : {"mixup_alpha", "mixup", "cutmix_alpha", "cutmix", "ema_decay", "ema", "label_smoothing"})
            if (asked.contains(key) && asked[key].is_number() && asked[key].get<double>() > 0)
                extra += (extra.empty() ? "" : ", ") + fmt::format("{} {:g}", key, asked[key].get<double>());
        if (asked.contains("accumulate") && asked["accumulate"].is_number_integer() && asked["accumulate"].get<int>() > 1)
            extra += (extra.empty() ? "" : ", ") + fmt::format("accumulate {}", asked["accumulate"].get<int>());
        add(p + "extras", extra.empty() ? "-" : extra);
        add(p + "epochs", fmt::format("{}{}", f.epochs.size(), f.resumed ? " (resumed)" : ""));
        if (!f.snapshots.empty()) add(p + "snapshots", std::to_string(f.snapshots.size()));
    }
    for (std::size_t i = 0; i < r.predictions.size(); ++i) {
        const auto& q = r.predictions[i];
        add(r.predictions.size() == 1 ? "predict" : fmt::format("predict {}", i + 1),
            fmt::format("{}{}", q.split, q.tta ? fmt::format(", TTA x{} ({})", q.tta, q.mix) : ""));
    }
    if (!r.members.empty()) {
        std::string m;
        for (const auto& x : r.members) m += (m.empty() ? "" : " + ") + fmt::format("{} ({}, w {:g})", x.source, x.arch, x.weight);
        add("members", m);
        add("mix", r.ensemble_mix);
    }
    if (r.kaggle) {
        add("sent to", r.kaggle->competition + ": " + r.kaggle->message);
        add("kaggle", r.kaggle->status + (r.kaggle->public_score.empty() ? "" : ", public " + r.kaggle->public_score) +
                          (r.kaggle->error.empty() ? "" : ": " + r.kaggle->error));
    }
    return s;
}

// ---- RunRecorder ----

struct RunRecorder::Open {
    RunRecord rec;
    fs::path file;
    std::chrono::steady_clock::time_point t0;
    // What the next fit was asked.
    std::optional<json> next_asked;
    bool next_snapshots = false;
    bool next_resumed = false;
    // The fit in progress.
    bool in_fit = false, sweep = false;
    std::vector<int> cycle_ends;
    bool snapshots = false;
    long batch_stride = 1;
    std::string last_state;
    // Recipes.
    json recipe_steps = json::array();
    double found_lr = 0;
    // The checkpoint (relative to PROJECT/models) the learner autosaves to: a fold's learner
    // keeps its own (set_fold).
    std::string autosave = "autosave";
};

RunRecorder::RunRecorder(fs::path project, std::string program) : project_(std::move(project)), program_(std::move(program)) {}

RunRecorder::~RunRecorder() {
    if (!open_) return;
    try {
        // Unwinding: the job ended by an error its program reports; otherwise it never ended.
        open_->rec.status = std::uncaught_exceptions() > 0 ? "failed" : "interrupted";
        open_->rec.ended = local_time_text();
        write();
    } catch (const std::exception&) {
    }
}

int RunRecorder::number() const { return open_ ? open_->rec.number : 0; }
const RunRecord* RunRecorder::current() const { return open_ ? &open_->rec : nullptr; }

void RunRecorder::fill_data(RunRecord& r, const data::Dataset& d) const {
    std::error_code ec;
    if (fs::exists(project_ / data::Dataset::kFileName, ec)) r.data_sha256 = sha256_file(project_ / data::Dataset::kFileName);
    r.train_images = d.count(data::Split::Train);
    r.valid_images = d.count(data::Split::Valid);
    r.test_images = d.count(data::Split::Test);
    r.marked_images = d.marked_count();
    r.classes = d.classes;
}

int RunRecorder::parent_of(const std::string& state) const {
    if (state.empty()) return 0;
    // The run whose weights these are: the newest that trained into this state.
    const auto runs = list_runs(project_);
    for (auto it = runs.rbegin(); it != runs.rend(); ++it)
        if ((it->kind == RunKind::Fit || it->kind == RunKind::Recipe) && it->end_state == state && it->number != number())
            return it->number;
    return 0;
}

int RunRecorder::begin(RunKind kind, const train::Learner& learner, const std::string& command) {
    if (open_) end("a new run began before this one ended");
    if (!learner.is_main_process()) return 0;
    auto o = std::make_unique<Open>();
    RunRecord& r = o->rec;
    r.kind = kind;
    r.command = command;
    r.device = detect_compute_device().describe();
    const auto& c = learner.config();
    r.arch = c.arch;
    r.size = c.size;
    r.batch_size = c.batch_size;
    r.pretrained = c.pretrained;
    r.seed = c.seed;
    r.precision = train::precision_name(learner.precision());
    r.augmentation = data::describe_augmentation(c.augment, c.max_zoom, c.no_flip, c.trivial_augment, c.random_erasing);
    r.augment_preset = data::augment_preset_name(c.augment);
    r.max_zoom = c.max_zoom;
    r.no_flip = c.no_flip;
    r.trivial_augment = c.trivial_augment;
    r.random_erasing = c.random_erasing;
    r.val_resize = c.val_resize;
    r.accumulate = learner.accumulate();
    r.processes = learner.distributed() ? learner.distributed()->world_size() : 1;
    fill_data(r, learner.dataset());
    r.start_state = r.end_state = learner.state_id();
    o->last_state = learner.state_id();
    r.parent = parent_of(r.start_state);
    return claim(std::move(o), kind);
}

int RunRecorder::begin(RunKind kind, const data::Dataset& dataset, const std::string& command) {
    if (open_) end("a new run began before this one ended");
    auto o = std::make_unique<Open>();
    o->rec.kind = kind;
    o->rec.command = command;
    fill_data(o->rec, dataset);   // no device: the caller's set_device names the one it uses
    return claim(std::move(o), kind);
}

int RunRecorder::claim(std::unique_ptr<Open> o, RunKind kind) {
    RunRecord& r = o->rec;
    r.status = "running";
    r.started = local_time_text();
    r.program = program_;
    r.pid = static_cast<long>(::getpid());
    r.host = this_host();
    o->t0 = std::chrono::steady_clock::now();
    // The number: claimed under runs/.lock, with the file written before the lock goes, so
    // that the next claimant sees it.
    const fs::path dir = runs_dir(project_);
    std::error_code ec;
    fs::create_directories(dir, ec);
    const int fd = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) throw UserError("cannot write the run records in " + dir.string(), "check the folder's permissions");
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    try {
        int highest = 0;
        for (const auto& [n, file] : run_files(project_)) highest = std::max(highest, n);
        r.number = highest + 1;
        o->file = dir / fmt::format("{:04d}-{}.json", r.number, run_kind_name(kind));
        open_ = std::move(o);
        write();
    } catch (...) {
        ::close(fd);
        open_.reset();
        throw;
    }
    ::close(fd);   // releases the flock
    return open_->rec.number;
}

void RunRecorder::write() {
    if (!open_) return;
    auto& o = *open_;
    o.rec.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - o.t0).count();
    write_file_atomically(o.file, to_json(o.rec).dump(1));
}

void RunRecorder::end(const std::string& error) {
    if (!open_) return;
    RunRecord& r = open_->rec;
    if (!error.empty()) {
        r.status = "failed";
        r.error = error;
    } else if (!r.fits.empty() && r.fits.back().stopped) {
        const std::string& why = r.fits.back().stop_reason;
        r.status = why.find("NaN") != std::string::npos ? "failed"
                   : why.rfind("early stopping", 0) == 0 ? "finished"
                                                         : "stopped";
        if (r.status == "failed") r.error = why;
    } else {
        r.status = "finished";
    }
    r.ended = local_time_text();
    write();
    open_.reset();
}

void RunRecorder::end_stopped(const std::string& reason) {
    if (!open_) return;
    RunRecord& r = open_->rec;
    const bool nan = reason.find("NaN") != std::string::npos;
    r.status = nan ? "failed" : "stopped";
    r.error = reason;
    r.ended = local_time_text();
    write();
    open_.reset();
}

void RunRecorder::expect_fit(const train::FitOptions& options, bool snapshots) {
    if (!open_) return;
    open_->next_asked = options_json(options);
    open_->next_snapshots = snapshots;
    open_->next_resumed = false;
}

void RunRecorder::expect_resume(const std::string& checkpoint) {
    if (!open_) return;
    json asked = json::object();
    try {
        const json j = json::parse(read_file(project_ / "models" / (checkpoint + ".json")));
        asked = j.at("fit").at("options");
    } catch (const std::exception&) {
    }
    open_->next_asked = asked;
    open_->next_snapshots = false;
    open_->next_resumed = true;
    open_->rec.resumed = true;
    // The fit goes on from the checkpoint's weights, whatever the learner held before.
    if (const std::string state = checkpoint_state(project_, checkpoint); !state.empty()) {
        open_->rec.start_state = state;
        open_->rec.parent = parent_of(state);
    }
    write();
}

train::RecipeEvents RunRecorder::recipe_events(const std::string& recipe_json, train::RecipeEvents events) {
    if (open_) {
        open_->rec.recipe = recipe_json;
        try {
            open_->recipe_steps = json::parse(recipe_json);
        } catch (const json::exception&) {
            open_->recipe_steps = json::array();   // run_recipe says what is wrong with it
        }
        write();
    }
    train::RecipeEvents ev = events;
    ev.step_started = [this, events](int number, int total, const std::string& description) {
        if (open_ && open_->recipe_steps.is_array() && number >= 1 && number <= static_cast<int>(open_->recipe_steps.size())) {
            const json& step = open_->recipe_steps[static_cast<std::size_t>(number - 1)];
            if (step.is_object() && step.value("step", "") == "fit") {
                json asked = step;
                asked["description"] = description;
                // "found" resolved: the rates the fit is given.
                std::vector<double> lrs;
                const json lr = step.value("lr", json("found"));
                auto rate = [this](const json& v) {
                    if (v.is_number()) return v.get<double>();
                    const std::string t = v.is_string() ? v.get<std::string>() : "";
                    if (t == "found") return open_->found_lr;
                    if (t.rfind("found/", 0) == 0) {
                        try {
                            return open_->found_lr / std::stod(t.substr(6));
                        } catch (const std::exception&) {
                        }
                    }
                    return std::nan("");
                };
                if (lr.is_array())
                    for (const auto& v : lr) lrs.push_back(rate(v));
                else
                    lrs.push_back(rate(lr));
                asked["lrs"] = lrs;
                open_->next_asked = asked;
                open_->next_snapshots = step.value("snapshots", false);
                open_->next_resumed = false;
            }
        }
        if (events.step_started) events.step_started(number, total, description);
    };
    ev.lr_found = [this, events](const train::LrFindResult& result, double chosen_lr, bool chosen) {
        if (open_ && chosen) open_->found_lr = chosen_lr;
        add_lr_find(result, chosen ? chosen_lr : 0);
        if (events.lr_found) events.lr_found(result, chosen_lr, chosen);
    };
    ev.predicted = [this, events](const train::Predictions& p, data::Split split, const fs::path& written) {
        // A recipe's predict step: its TTA is the passes beyond the plain one.
        add_prediction(p, split, p.passes > 0 ? p.passes - 1 : 0, train::TtaMix::Mean, written);
        if (split == data::Split::Test && !written.empty()) set_submission(written);
        if (events.predicted) events.predicted(p, split, written);
    };
    return ev;
}

void RunRecorder::add_lr_find(const train::LrFindResult& result, double chosen) {
    if (!open_) return;
    RunLrFind l;
    l.lrs = result.lrs;
    l.losses = result.losses;
    l.minimum = result.suggestions.minimum;
    l.steepest = result.suggestions.steepest;
    l.valley = result.suggestions.valley;
    l.suggestions_valid = result.suggestions.valid;
    l.stopped_early = result.stopped_early;
    l.chosen = chosen;
    open_->rec.lr_finds.push_back(std::move(l));
    write();
}

void RunRecorder::add_prediction(const train::Predictions& p, data::Split split, int tta, train::TtaMix mix,
                                 const fs::path& written) {
    if (!open_) return;
    RunPrediction q;
    q.split = data::split_name(split);
    q.tta = tta;
    q.mix = mix == train::TtaMix::Beta ? "beta" : "mean";
    q.rows = p.records.size();
    const bool labelled = std::any_of(p.actual.begin(), p.actual.end(), [](int a) { return a >= 0; });
    q.accuracy = labelled ? p.accuracy() : std::nan("");
    q.log_loss = labelled ? p.log_loss() : std::nan("");
    std::error_code ec;
    if (!written.empty() && fs::exists(written, ec)) {
        q.file = relative_or_absolute(written, project_);
        q.file_sha256 = sha256_file(written);
    }
    open_->rec.predictions.push_back(std::move(q));
    write();
}

void RunRecorder::set_submission(const fs::path& file) {
    if (!open_) return;
    open_->rec.submission = relative_or_absolute(file, project_);
    std::error_code ec;
    if (fs::exists(file, ec)) open_->rec.submission_sha256 = sha256_file(file);
    if (!open_->rec.predictions.empty() && open_->rec.predictions.back().split == "test" && open_->rec.predictions.back().file.empty()) {
        open_->rec.predictions.back().file = open_->rec.submission;
        open_->rec.predictions.back().file_sha256 = open_->rec.submission_sha256;
    }
    write();
}

void RunRecorder::set_kaggle(const RunKaggle& kaggle) {
    if (!open_) return;
    open_->rec.kaggle = kaggle;
    write();
}

void RunRecorder::set_parent(int run) {
    if (!open_) return;
    open_->rec.parent = run;
    write();
}

void RunRecorder::set_fold(int fold, int folds, const std::string& autosave) {
    if (!open_) return;
    open_->rec.fold = fold;
    open_->rec.folds = folds;
    open_->autosave = autosave;
    std::error_code ec;
    fs::create_directories(project_ / "models", ec);   // the links go there (and "models/.." must exist)
    write();
}

void RunRecorder::set_oof(const fs::path& file) {
    if (!open_) return;
    open_->rec.oof = relative_or_absolute(file, project_);
    write();
}

void RunRecorder::set_device(const std::string& device) {
    if (!open_) return;
    open_->rec.device = device;
    write();
}

void RunRecorder::set_members(const std::vector<RunMember>& members, const std::string& mix) {
    if (!open_) return;
    open_->rec.members = members;
    open_->rec.ensemble_mix = mix;
    write();
}

void RunRecorder::before_fit(train::Learner& learner) {
    if (!open_) return;
    Open& o = *open_;
    // An lr_find sweep runs through the same loop but leaves the weights (and their state id)
    // as they were; a fit names new weights before its first batch.
    o.sweep = !o.next_resumed && learner.state_id() == o.last_state;
    o.in_fit = true;
    if (o.sweep) return;
    RunFit f;
    const json asked = o.next_asked.value_or(json::object());
    f.asked = asked.dump();
    f.schedule = o.next_asked ? schedule_words(asked) : "";
    f.optimizer = asked.value("optimizer", "");
    f.lrs = asked.value("lrs", std::vector<double>{});
    f.wds = asked.contains("wds") && asked["wds"].is_array() ? asked["wds"].get<std::vector<double>>()
            : asked.contains("wd") && asked["wd"].is_number() ? std::vector<double>{asked["wd"].get<double>()}
                                                             : std::vector<double>{};
    f.group_lrs = learner.current_learning_rates();
    f.frozen_groups = learner.frozen_groups();
    f.precompute = learner.precompute();
    f.bn_freeze = learner.bn_frozen();
    f.resumed = o.next_resumed;
    f.epochs_before = learner.epochs_trained();
    o.cycle_ends = cycle_end_epochs(asked);
    o.snapshots = o.next_snapshots;
    o.batch_stride = 1;
    o.next_asked.reset();
    o.next_snapshots = o.next_resumed = false;
    o.rec.fits.push_back(std::move(f));
    o.rec.end_state = learner.state_id();
    o.rec.precision = train::precision_name(learner.precision());
    write();
}

void RunRecorder::after_batch(train::Learner&, const train::BatchRecord& b) {
    if (!open_ || !open_->in_fit || open_->sweep || open_->rec.fits.empty()) return;
    Open& o = *open_;
    auto& batches = o.rec.fits.back().batches;
    if (b.iteration % o.batch_stride != 0) return;
    batches.push_back({b.iteration, b.loss, b.smooth_loss, b.lr});
    // Thinned as it grows: every other point goes and the stride doubles.
    if (batches.size() >= kMaxBatchPoints) {
        std::vector<RunFit::Batch> kept;
        o.batch_stride *= 2;
        for (const auto& x : batches)
            if (x.iteration % o.batch_stride == 0) kept.push_back(x);
        batches = std::move(kept);
    }
}

void RunRecorder::after_epoch(train::Learner& learner, const train::EpochRecord& r) {
    if (!open_ || !open_->in_fit || open_->sweep || open_->rec.fits.empty()) return;
    Open& o = *open_;
    RunFit& f = o.rec.fits.back();
    f.epochs.push_back(r);
    // A snapshot at the end of each SGDR cycle: the autosave the learner has just written.
    if (o.snapshots) {
        const auto it = std::find(o.cycle_ends.begin(), o.cycle_ends.end(), r.epoch);
        if (it != o.cycle_ends.end() && learner.autosave) {
            const std::string name = fmt::format("snapshot-{:04d}-{}", o.rec.number, (it - o.cycle_ends.begin()) + 1);
            if (link_checkpoint(project_, o.autosave, name)) f.snapshots.push_back(name);
        }
    }
    write();
}

void RunRecorder::after_fit(train::Learner& learner, const train::FitResult& result) {
    if (!open_ || !open_->in_fit) return;
    Open& o = *open_;
    o.in_fit = false;
    if (o.sweep) return;
    if (!o.rec.fits.empty()) {
        o.rec.fits.back().stopped = result.stopped;
        o.rec.fits.back().stop_reason = result.stop_reason;
    }
    o.rec.end_state = learner.state_id();
    o.last_state = learner.state_id();
    // The run's checkpoint: the weights it ended with, as the autosave holds them.
    const std::string name = run_checkpoint_name(o.rec.number);
    if (learner.autosave && checkpoint_state(project_, o.autosave) == learner.state_id() &&
        link_checkpoint(project_, o.autosave, name))
        o.rec.checkpoint = name;
    write();
}

}  // namespace whisker::project

namespace whisker::project {

std::vector<SubmissionScore> submission_scores(const fs::path& project) {
    std::vector<SubmissionScore> out;
    kaggle::SubmissionHistory history;
    try {
        history = kaggle::SubmissionHistory::load(project);
    } catch (const std::exception&) {
        return out;
    }
    if (history.submissions.empty()) return out;
    const auto runs = list_runs(project);
    std::map<std::string, const RunRecord*> by_hash;
    for (const auto& r : runs) {
        if (r.kaggle) continue;   // a run that sent the file, not the one that made it
        if (!r.submission_sha256.empty()) by_hash[r.submission_sha256] = &r;
        for (const auto& p : r.predictions)
            if (!p.file_sha256.empty() && !by_hash.count(p.file_sha256)) by_hash[p.file_sha256] = &r;
    }
    auto by_number = [&runs](int n) -> const RunRecord* {
        for (const auto& r : runs)
            if (r.number == n) return &r;
        return nullptr;
    };
    for (const auto& s : history.submissions) {
        const fs::path file = resolve_path(s.file, project);
        std::string hash;
        try {
            hash = sha256_file(file);
        } catch (const std::exception&) {
            continue;   // the kept copy is gone
        }
        // The run the history names as the predictions' source (the workbench's submissions,
        // whose file is written from predictions no run wrote to a file), else the file's maker.
        const RunRecord* source = s.source_run > 0 ? by_number(s.source_run) : nullptr;
        if (!source) {
            const auto it = by_hash.find(hash);
            if (it == by_hash.end()) continue;
            source = it->second;
        }
        SubmissionScore sc;
        sc.run = source->number;
        sc.file = s.file;
        sc.date = s.date;
        sc.message = s.message;
        sc.status = s.status;
        sc.validation = source->validation();
        for (const RunRecord* r = source; !sc.validation && r && r->parent; ) {
            r = by_number(r->parent);
            if (r) sc.validation = r->validation();
        }
        sc.public_score = s.public_score;
        try {
            if (!s.public_score.empty()) sc.public_value = std::stod(s.public_score);
        } catch (const std::exception&) {
        }
        out.push_back(std::move(sc));
    }
    return out;
}

int run_that_wrote(const fs::path& project, const std::string& sha256) {
    if (sha256.empty()) return 0;
    const auto runs = list_runs(project);
    for (auto r = runs.rbegin(); r != runs.rend(); ++r) {
        if (r->kaggle) continue;
        if (r->submission_sha256 == sha256) return r->number;
        for (const auto& p : r->predictions)
            if (p.file_sha256 == sha256) return r->number;
    }
    return 0;
}

bool update_submission_run(const fs::path& project, int number, const RunKaggle& kaggle) {
    for (const auto& [n, file] : run_files(project)) {
        if (n != number) continue;
        try {
            json j = json::parse(read_file(file));
            RunRecord r = from_json(j);
            settle_status(r);
            if (r.status == "running") return false;   // its own process writes it
            j["kaggle"] = {{"competition", kaggle.competition}, {"message", kaggle.message}, {"ref", kaggle.ref},
                           {"status", kaggle.status}, {"public_score", kaggle.public_score},
                           {"private_score", kaggle.private_score}, {"error", kaggle.error}};
            write_file_atomically(file, j.dump(1));
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }
    return false;
}

void record_submission_verdicts(const fs::path& project) {
    kaggle::SubmissionHistory history;
    try {
        history = kaggle::SubmissionHistory::load(project);
    } catch (const std::exception&) {
        return;
    }
    for (const auto& s : history.submissions) {
        if (s.run <= 0) continue;
        const auto run = read_run(project, s.run);
        if (!run || run->kind != RunKind::Submission) continue;
        RunKaggle k = run->kaggle.value_or(RunKaggle{history.competition, s.message, {}, {}, {}, {}, {}});
        if (k.ref == s.ref && k.status == s.status && k.public_score == s.public_score && k.private_score == s.private_score &&
            k.error == s.error)
            continue;
        k.ref = s.ref;
        k.status = s.status;
        k.public_score = s.public_score;
        k.private_score = s.private_score;
        k.error = s.error;
        update_submission_run(project, s.run, k);
    }
}

}  // namespace whisker::project
