// Learner checkpoints: PROJECT/models/<name>.safetensors (weights), <name>.optim (optimiser
// state, while a fit is in progress) and <name>.json (everything else), each written
// atomically, the JSON last: a checkpoint is complete when its JSON names the same id as its
// weights.
#include "whisker/train/learner.h"

#include "learner_state.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/http.h"
#include "whisker/common/local_time.h"
#include "whisker/models/checkpoint.h"
#include "whisker/train/distributed.h"
#include "whisker/train/training_options.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/utils.h>

#include <ctime>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace whisker::train {

namespace {

std::string base64_decode(const std::string& in) {
    std::string out(in.size() / 4 * 3 + 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(in.data()),
                                  static_cast<int>(in.size()));
    if (n < 0) throw UserError("damaged checkpoint (bad random state)");
    std::size_t pad = 0;
    if (!in.empty() && in.back() == '=') ++pad;
    if (in.size() > 1 && in[in.size() - 2] == '=') ++pad;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

json epoch_json(const EpochRecord& r) {
    json j{{"epoch", r.epoch}, {"trn_loss", r.trn_loss}, {"val_loss", r.val_loss}, {"accuracy", r.accuracy},
           {"log_loss", r.log_loss}, {"seconds", r.seconds}};
    if (r.has_ema) {
        j["ema_val_loss"] = r.ema_val_loss;
        j["ema_accuracy"] = r.ema_accuracy;
        j["ema_log_loss"] = r.ema_log_loss;
    }
    return j;
}
EpochRecord epoch_from(const json& j) {
    EpochRecord r;
    r.epoch = j.value("epoch", 0);
    r.trn_loss = j.value("trn_loss", 0.0);
    r.val_loss = j.value("val_loss", 0.0);
    r.accuracy = j.value("accuracy", 0.0);
    r.log_loss = j.value("log_loss", 0.0);
    r.seconds = j.value("seconds", 0.0);
    r.has_ema = j.contains("ema_val_loss");
    r.ema_val_loss = j.value("ema_val_loss", 0.0);
    r.ema_accuracy = j.value("ema_accuracy", 0.0);
    r.ema_log_loss = j.value("ema_log_loss", 0.0);
    return r;
}

json options_json(const FitOptions& o) {
    return {{"lrs", o.lrs}, {"n_cycle", o.n_cycle}, {"cycle_len", o.cycle_len}, {"cycle_mult", o.cycle_mult}, {"wds", o.wds},
            {"optimizer", o.optimizer == OptimizerKind::AdamW ? "adamw" : "sgd"}, {"momentum", o.momentum},
            {"one_cycle", o.one_cycle}, {"mixup_alpha", o.mixup_alpha}, {"cutmix_alpha", o.cutmix_alpha},
            {"mix_switch_prob", o.mix_switch_prob}, {"mix_prob", o.mix_prob}, {"ema_decay", o.ema_decay},
            {"label_smoothing", o.label_smoothing}, {"accumulate", o.accumulate}};
}
FitOptions options_from(const json& j) {
    FitOptions o;
    o.lrs = j.at("lrs").get<std::vector<double>>();
    o.n_cycle = j.at("n_cycle");
    o.cycle_len = j.at("cycle_len");
    o.cycle_mult = j.at("cycle_mult");
    o.wds = j.at("wds").get<std::vector<double>>();
    o.optimizer = j.at("optimizer") == "adamw" ? OptimizerKind::AdamW : OptimizerKind::SGD;
    o.momentum = j.at("momentum");
    o.one_cycle = j.at("one_cycle");
    // Checkpoints from before these options: off.
    o.mixup_alpha = j.value("mixup_alpha", o.mixup_alpha);
    o.cutmix_alpha = j.value("cutmix_alpha", o.cutmix_alpha);
    o.mix_switch_prob = j.value("mix_switch_prob", o.mix_switch_prob);
    o.mix_prob = j.value("mix_prob", o.mix_prob);
    o.ema_decay = j.value("ema_decay", o.ema_decay);
    o.label_smoothing = j.value("label_smoothing", o.label_smoothing);
    o.accumulate = j.value("accumulate", 1);
    return o;
}

fs::path models_dir(const fs::path& project) { return project / "models"; }

}  // namespace

EpochRecord epoch_record_from_json(const std::string& text) {
    try {
        return epoch_from(json::parse(text));
    } catch (const json::exception& e) {
        throw UserError(std::string("not an epoch record: ") + e.what());
    }
}

bool Learner::has_checkpoint(const std::string& name) const {
    return fs::exists(models_dir(project_) / (name + ".json"));
}

void Learner::save(const std::string& name) { save_with_fit_state(name, nullptr); }

void Learner::save_with_fit_state(const std::string& name, const FitState* st) {
    if (name.empty() || name.find('/') != std::string::npos) throw UserError("checkpoint names cannot be empty or contain '/'");
    // A fit stopped inside a gradient-accumulation group keeps the gradients of the group's
    // batches so far; in a group their average over the ranks (what the step would have
    // all-reduced), so that a resume on any number of ranks continues the same sum.
    models::StateDict accumulated;
    if (st && st->accumulated > 0 && st->group_has_gradients) {
        at::NoGradGuard no_grad;
        for (const auto& item : model_->named_parameters(true)) {
            const at::Tensor& p = item.value();
            if (!p.requires_grad()) continue;
            at::Tensor g = p.grad().defined() ? p.grad().detach().to(at::kFloat).clone() : at::zeros(p.sizes(), p.options().dtype(at::kFloat));
            if (auto* d = distributed()) {
                d->all_reduce_sum(g);
                g.div_(d->world_size());
            }
            accumulated.emplace_back(item.key(), g.to(at::kCPU).contiguous());
        }
    }
    // In a group rank 0 writes (every rank holds the same weights and optimiser state); the
    // others wait, so that nobody reads a checkpoint that is still being written.
    if (!is_main_process()) {
        distributed()->barrier();
        return;
    }
    const fs::path dir = models_dir(project_);
    std::random_device rd;
    const std::string id = std::to_string(rd()) + std::to_string(rd());
    json j;
    j["format"] = "whisker-checkpoint";
    j["version"] = 1;
    j["id"] = id;
    j["arch"] = config_.arch;
    j["size"] = config_.size;
    j["batch_size"] = config_.batch_size;
    j["classes"] = dataset_.classes;
    j["frozen_groups"] = frozen_groups_;
    j["bn_freeze"] = bn_freeze_;
    j["precompute"] = precompute_;
    j["epochs_trained"] = epochs_trained_;
    j["state"] = state_id_;
    j["pretrained"] = config_.pretrained;
    j["saved"] = local_time_text();
    const at::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();
    j["rng_state"] = base64_encode(std::string(static_cast<const char*>(rng.data_ptr()), static_cast<std::size_t>(rng.numel())));
    json history = json::array();
    for (const auto& e : epochs_) history.push_back(epoch_json(e));
    j["history"] = history;
    if (st) {
        // The optimiser's state (momentum buffers), for an exact resume.
        torch::serialize::OutputArchive archive;
        st->optimizer->save(archive);
        std::ostringstream os;
        archive.save_to(os);
        write_file_atomically(dir / (name + ".optim"), os.str());
        json f;
        f["options"] = options_json(st->options);
        f["precompute"] = st->precompute;
        f["total_epochs"] = st->total_epochs;
        f["batches_per_epoch"] = st->batches_per_epoch;
        f["epoch"] = st->epoch;
        f["batch"] = st->batch;
        f["iteration"] = st->iteration;
        f["step"] = st->step;
        f["accumulated"] = st->accumulated;
        f["group_batches"] = st->group_batches;
        f["group_has_gradients"] = st->group_has_gradients;
        f["loss_scale"] = st->loss_scale;
        f["good_steps"] = st->good_steps;
        f["avg_loss"] = st->avg_loss;
        f["batch_num"] = st->batch_num;
        f["loader_epoch_base"] = st->loader_epoch_base;
        f["seconds"] = st->seconds;
        f["size"] = st->size;
        f["precision"] = precision_name(precision_);   // fixed during a fit: the fit's own
        json done = json::array();
        for (const auto& e : st->done) done.push_back(epoch_json(e));
        f["done"] = done;
        j["fit"] = f;
    }
    models::write_safetensors(dir / (name + ".safetensors"), models::state_dict_of(*model_), {{"id", id}});
    // The weight EMA beside the raw weights, with the same id; none: an older average of this
    // name goes (the JSON, written last, says whether there is one).
    const fs::path ema_file = dir / (name + ".ema.safetensors");
    if (ema_) {
        models::write_safetensors(ema_file, ema_->state(), {{"id", id}});
        j["ema"] = {{"decay", ema_->decay()}, {"updates", ema_->updates()}};
    } else {
        std::error_code ec;
        fs::remove(ema_file, ec);
    }
    const fs::path grads_file = dir / (name + ".grads.safetensors");
    if (!accumulated.empty()) {
        models::write_safetensors(grads_file, accumulated, {{"id", id}});
        j["fit"]["gradients"] = true;
    } else {
        std::error_code ec;
        fs::remove(grads_file, ec);
    }
    write_file_atomically(dir / (name + ".json"), j.dump(1));
    if (distributed()) distributed()->barrier();
}

void Learner::load(const std::string& name) {
    const fs::path dir = models_dir(project_);
    const fs::path json_file = dir / (name + ".json");
    if (!fs::exists(json_file))
        throw UserError("no checkpoint '" + name + "' in " + dir.string(), "save one first, or check the name");
    json j;
    try {
        j = json::parse(read_file(json_file));
    } catch (const json::exception&) {
        throw UserError("checkpoint '" + json_file.string() + "' is damaged");
    }
    if (j.value("arch", "") != config_.arch)
        throw UserError("checkpoint '" + name + "' is a " + j.value("arch", std::string("?")) + ", this learner a " + config_.arch,
                        "create the learner with --arch " + j.value("arch", std::string("?")));
    if (j.value("classes", std::vector<std::string>{}) != dataset_.classes)
        throw UserError("checkpoint '" + name + "' was trained on other classes");
    std::map<std::string, std::string> meta;
    const auto weights = models::read_safetensors(dir / (name + ".safetensors"), &meta);
    if (meta["id"] != j.value("id", ""))
        throw UserError("checkpoint '" + name + "' is incomplete (its weights and its state do not belong together)",
                        "it was interrupted while being written; use another checkpoint");
    models::load_state_dict(*model_, weights, (dir / (name + ".safetensors")).string());
    ema_.reset();
    if (j.contains("ema")) {
        const fs::path ema_file = dir / (name + ".ema.safetensors");
        std::map<std::string, std::string> ema_meta;
        if (!fs::exists(ema_file))
            throw UserError("checkpoint '" + name + "' is incomplete (" + ema_file.string() + " is missing)",
                            "use another checkpoint");
        const auto ema_state = models::read_safetensors(ema_file, &ema_meta);
        if (ema_meta["id"] != j.value("id", ""))
            throw UserError("checkpoint '" + name + "' is incomplete (its EMA weights and its state do not belong together)",
                            "it was interrupted while being written; use another checkpoint");
        ema_ = std::make_unique<WeightEma>(*model_, ema_state, j["ema"].value("decay", 0.0), j["ema"].value("updates", 0L),
                                           ema_file.string());
    }
    freeze_to(j.value("frozen_groups", 2));
    bn_freeze_ = j.value("bn_freeze", false);
    precompute_ = j.value("precompute", false);
    epochs_trained_ = j.value("epochs_trained", 0L);
    state_id_ = j.value("state", j.value("id", new_state_id()));
    const std::string rng = base64_decode(j.value("rng_state", std::string()));
    if (!rng.empty()) {
        at::Tensor t = at::empty({static_cast<long>(rng.size())}, at::kByte);
        std::memcpy(t.data_ptr(), rng.data(), rng.size());
        at::Generator generator = at::detail::getDefaultCPUGenerator();
        generator.set_state(t);
    }
    epochs_.clear();
    for (const auto& e : j.value("history", json::array())) epochs_.push_back(epoch_from(e));
    pending_.reset();
    if (j.contains("fit")) {
        const json& f = j["fit"];
        auto st = std::make_unique<FitState>();
        st->options = options_from(f.at("options"));
        st->precompute = f.at("precompute");
        if (st->precompute) ensure_precomputed();
        plan_schedule(*st);
        if (st->total_epochs != f.at("total_epochs").get<int>() || st->batches_per_epoch != f.at("batches_per_epoch").get<long>())
            throw UserError("the data changed since checkpoint '" + name + "' was saved: its fit cannot be resumed");
        st->epoch = f.at("epoch");
        st->batch = f.at("batch");
        st->iteration = f.at("iteration");
        // Checkpoints from before gradient accumulation: a step per batch.
        st->step = f.value("step", st->iteration);
        st->accumulated = f.value("accumulated", 0);
        st->group_batches = f.value("group_batches", 0.0);
        st->group_has_gradients = f.value("group_has_gradients", false);
        st->loss_scale = f.value("loss_scale", st->loss_scale);
        st->good_steps = f.value("good_steps", 0);
        st->avg_loss = f.at("avg_loss");
        st->batch_num = f.at("batch_num");
        st->loader_epoch_base = f.at("loader_epoch_base");
        st->seconds = f.at("seconds");
        st->size = f.value("size", j.value("size", config_.size));
        if (f.contains("precision")) st->precision = parse_precision(f.at("precision").get<std::string>());
        for (const auto& e : f.at("done")) st->done.push_back(epoch_from(e));
        build_optimizer(*st);
        torch::serialize::InputArchive archive;
        std::istringstream is(read_file(dir / (name + ".optim")));
        archive.load_from(is);
        st->optimizer->load(archive);
        if (f.value("gradients", false)) {
            // The gradients of the interrupted accumulation group, back into .grad.
            const fs::path grads_file = dir / (name + ".grads.safetensors");
            if (!fs::exists(grads_file))
                throw UserError("checkpoint '" + name + "' is incomplete (" + grads_file.string() + " is missing)",
                                "start a new fit instead");
            std::map<std::string, std::string> grads_meta;
            const auto grads = models::read_safetensors(grads_file, &grads_meta);
            if (grads_meta["id"] != j.value("id", ""))
                throw UserError("checkpoint '" + name + "' is incomplete (its accumulated gradients and its state do not belong together)",
                                "it was interrupted while being written; start a new fit instead");
            std::map<std::string, at::Tensor> by_name(grads.begin(), grads.end());
            at::NoGradGuard no_grad;
            for (auto& item : model_->named_parameters(true)) {
                at::Tensor& p = item.value();
                const auto it = by_name.find(item.key());
                if (!p.requires_grad() || it == by_name.end()) continue;
                if (!it->second.sizes().equals(p.sizes()))
                    throw UserError("checkpoint '" + name + "': the accumulated gradient of " + item.key() + " has the wrong shape");
                p.mutable_grad() = it->second.to(p.device(), p.scalar_type()).clone();
            }
        }
        pending_ = std::move(st);
    }
}

FitResult Learner::resume(const std::string& name, const std::atomic<bool>* stop) {
    load(name);
    if (!pending_) throw UserError("checkpoint '" + name + "' has no fit in progress", "start a new fit instead");
    if (pending_->epoch >= pending_->total_epochs) throw UserError("the fit in checkpoint '" + name + "' had already finished");
    if (pending_->size != config_.size)
        throw UserError("the fit in checkpoint '" + name + "' ran at " + std::to_string(pending_->size) + " px, the learner is at " +
                            std::to_string(config_.size) + " px",
                        "resize the learner back to " + std::to_string(pending_->size) +
                            " px (whisker-cli resize-learner PROJECT --size " + std::to_string(pending_->size) + ") to resume it");
    if (pending_->options.ema_decay > 0 && !ema_)
        throw UserError("checkpoint '" + name + "' has no EMA weights for its fit with --ema", "start a new fit instead");
    // The fit continues in the precision it began in (bf16 steps after fp32 ones would not
    // continue it exactly), unless this device cannot run it (an fp16 fit from a GPU on a CPU).
    if (pending_->precision && *pending_->precision != precision_ &&
        (*pending_->precision != Precision::FP16 || device().is_cuda()))
        set_precision(*pending_->precision);
    auto st = std::move(pending_);
    return run_fit(*st, stop);
}

std::optional<Precision> Learner::interrupted_fit_precision(const std::string& name) const {
    try {
        const json j = json::parse(read_file(models_dir(project_) / (name + ".json")));
        if (!j.contains("fit") || !j["fit"].contains("precision")) return std::nullopt;
        const Precision p = parse_precision(j["fit"]["precision"].get<std::string>());
        if (p == Precision::FP16 && !device().is_cuda()) return std::nullopt;
        return p;
    } catch (const std::exception&) {
        return std::nullopt;   // no such checkpoint or a damaged one: resume() itself says so
    }
}

}  // namespace whisker::train
