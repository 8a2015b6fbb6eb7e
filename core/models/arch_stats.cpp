#include "whisker/models/arch_stats.h"

#include "whisker/common/environment.h"
#include "whisker/common/files.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include <cstring>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace whisker::models {

namespace {

// The count of the forward pass running on this thread (observers are thread-local).
thread_local double t_macs = 0;

std::vector<int64_t> sizes_of(const c10::IValue& v) {
    if (!v.isTensor()) return {};
    const at::Tensor& t = v.toTensor();
    return t.defined() ? t.sizes().vec() : std::vector<int64_t>{};
}

int64_t product(const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

// Counted at the op's end, where its output shape is known. Only leaf products are counted
// (mm, addmm, bmm, baddbmm, convolution): linear and matmul dispatch to them, so counting
// those too would count twice.
void on_op_end(const at::RecordFunction& fn, at::ObserverContext*) {
    const char* name = fn.name();
    const auto inputs = fn.inputs();
    if (std::strcmp(name, "aten::convolution") == 0) {
        if (inputs.size() < 2 || fn.outputs().empty()) return;
        const auto weight = sizes_of(inputs[1]);
        const auto out = sizes_of(fn.outputs()[0]);
        if (weight.empty() || out.empty() || weight[0] == 0) return;
        // Each output element: Cin/groups x kh x kw multiply-accumulates.
        t_macs += static_cast<double>(product(out)) * static_cast<double>(product(weight) / weight[0]);
    } else if (std::strcmp(name, "aten::mm") == 0 || std::strcmp(name, "aten::addmm") == 0) {
        const std::size_t a = std::strcmp(name, "aten::mm") == 0 ? 0 : 1;
        if (inputs.size() < a + 2) return;
        const auto x = sizes_of(inputs[a]), w = sizes_of(inputs[a + 1]);
        if (x.size() == 2 && w.size() == 2) t_macs += static_cast<double>(x[0]) * x[1] * w[1];
    } else if (std::strcmp(name, "aten::bmm") == 0 || std::strcmp(name, "aten::baddbmm") == 0) {
        const std::size_t a = std::strcmp(name, "aten::bmm") == 0 ? 0 : 1;
        if (inputs.size() < a + 2) return;
        const auto x = sizes_of(inputs[a]), w = sizes_of(inputs[a + 1]);
        if (x.size() == 3 && w.size() == 3) t_macs += static_cast<double>(x[0]) * x[1] * x[2] * w[2];
    }
}

fs::path whisker_cache_dir() {
    fs::path cache = environment_variable("XDG_CACHE_HOME");
    if (cache.empty()) cache = fs::path(environment_variable("HOME")) / ".cache";
    return cache / "whisker";
}

json to_json(const SpeedRecord& r) {
    return {{"images_per_second", r.images_per_second}, {"size", r.size}, {"batch_size", r.batch_size},
            {"device", r.device}, {"when", r.when}};
}

std::optional<SpeedRecord> from_json(const json& j, const char* kind) {
    if (!j.contains(kind) || !j[kind].is_object()) return std::nullopt;
    const json& k = j[kind];
    SpeedRecord r;
    r.images_per_second = k.value("images_per_second", 0.0);
    r.size = k.value("size", 0);
    r.batch_size = k.value("batch_size", 0);
    r.device = k.value("device", std::string());
    r.when = k.value("when", std::string());
    if (!(r.images_per_second > 0)) return std::nullopt;
    return r;
}

}  // namespace

double count_gmacs(const std::function<void()>& forward) {
    t_macs = 0;
    at::RecordFunctionCallback cb(nullptr, &on_op_end);
    cb.needsInputs(true).needsOutputs(true);
    const auto handle = at::addThreadLocalCallback(cb);
    struct Remove {
        at::CallbackHandle h;
        ~Remove() { at::removeCallback(h); }
    } remove{handle};
    forward();
    return t_macs / 1e9;
}

double architecture_gflops(Arch arch, int size) {
    auto model = create_imagenet_model(arch);
    model->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = at::zeros({1, 3, size, size});
    return count_gmacs([&] { model->forward(x); });
}

fs::path speed_records_file() { return whisker_cache_dir() / "speed.json"; }

std::map<std::string, ArchSpeed> read_speed_records() {
    std::map<std::string, ArchSpeed> out;
    std::error_code ec;
    if (!fs::is_regular_file(speed_records_file(), ec)) return out;
    try {
        const json j = json::parse(read_file(speed_records_file()));
        for (const auto& [arch, v] : j.items()) {
            if (!v.is_object()) continue;
            ArchSpeed s{from_json(v, "train"), from_json(v, "predict")};
            if (s.train || s.predict) out[arch] = s;
        }
    } catch (const std::exception&) {
        return {};   // damaged: as if nothing was measured
    }
    return out;
}

void record_speed(const std::string& arch, const std::string& kind, const SpeedRecord& record) {
    json j = json::object();
    for (const auto& [name, s] : read_speed_records()) {
        if (s.train) j[name]["train"] = to_json(*s.train);
        if (s.predict) j[name]["predict"] = to_json(*s.predict);
    }
    j[arch][kind] = to_json(record);
    std::error_code ec;
    fs::create_directories(speed_records_file().parent_path(), ec);
    write_file_atomically(speed_records_file(), j.dump(1) + "\n");
}

}  // namespace whisker::models
