// torchvision.models.swin_transformer (0.14, Swin V1), module for module: swin_t and swin_s.
// PatchMerging, ShiftedWindowAttention (relative position bias table and index), the shifted
// window attention exactly as torchvision's shifted_window_attention(), MLP, stochastic depth.
#include "architectures.h"
#include "layers.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <array>
#include <cmath>
#include <stdexcept>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

LayerNormLastDim layer_norm(int64_t dim) { return LayerNormLastDim(dim, 1e-5); }

// torchvision.ops.misc.MLP(dim, [hidden, dim], activation_layer=GELU, dropout=0): Linear "0",
// GELU "1", Dropout "2", Linear "3", Dropout "4" (only the Linears have keys).
class MlpImpl : public nn::Module {
public:
    MlpImpl(int64_t dim, int64_t hidden) {
        fc1 = register_module("0", nn::Linear(dim, hidden));
        fc2 = register_module("3", nn::Linear(hidden, dim));
    }
    at::Tensor forward(const at::Tensor& x) { return fc2(at::gelu(fc1(x))); }
    nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

// torchvision's ShiftedWindowAttention: qkv, proj, relative_position_bias_table (parameter),
// relative_position_index (buffer).
class ShiftedWindowAttentionImpl : public nn::Module {
public:
    ShiftedWindowAttentionImpl(int64_t dim, int64_t window, int64_t shift, int64_t num_heads)
        : window_(window), shift_(shift), num_heads_(num_heads) {
        qkv = register_module("qkv", nn::Linear(dim, dim * 3));
        proj = register_module("proj", nn::Linear(dim, dim));
        table = register_parameter("relative_position_bias_table",
                                   at::zeros({(2 * window - 1) * (2 * window - 1), num_heads}));
        trunc_normal_(table, 0.02);
        // Pair-wise relative position index of the tokens inside a window (row-major, ij).
        const int64_t n = window * window;
        at::Tensor index = at::empty({n * n}, at::kLong);
        auto* p = index.data_ptr<int64_t>();
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) {
                const int64_t dh = i / window - j / window + window - 1;
                const int64_t dw = i % window - j % window + window - 1;
                p[i * n + j] = dh * (2 * window - 1) + dw;
            }
        index_ = register_buffer("relative_position_index", index);
    }

    // x: [B, H, W, C] -> [B, H, W, C]; torchvision's shifted_window_attention().
    at::Tensor forward(const at::Tensor& input) {
        const int64_t B = input.size(0), H = input.size(1), W = input.size(2), C = input.size(3);
        const int64_t ws = window_, N = ws * ws;
        // Pad the feature map to multiples of the window size.
        const int64_t pad_r = (ws - W % ws) % ws, pad_b = (ws - H % ws) % ws;
        at::Tensor x = (pad_r || pad_b) ? at::constant_pad_nd(input, {0, 0, 0, pad_r, 0, pad_b}, 0) : input;
        const int64_t pH = H + pad_b, pW = W + pad_r;
        // No shift along a side that the window covers entirely.
        const int64_t shift_h = ws >= pH ? 0 : shift_, shift_w = ws >= pW ? 0 : shift_;
        const bool shifted = shift_h + shift_w > 0;
        if (shifted) x = at::roll(x, {-shift_h, -shift_w}, {1, 2});

        // Partition windows: [B*nW, N, C].
        const int64_t nWh = pH / ws, nWw = pW / ws, nW = nWh * nWw;
        x = x.view({B, nWh, ws, nWw, ws, C}).permute({0, 1, 3, 2, 4, 5}).reshape({B * nW, N, C});

        // Multi-head attention with the relative position bias (and the shift's mask).
        const int64_t hd = C / num_heads_;
        at::Tensor qkv_out = qkv(x).reshape({B * nW, N, 3, num_heads_, hd}).permute({2, 0, 3, 1, 4});
        at::Tensor q = qkv_out[0] * std::pow(static_cast<double>(hd), -0.5);
        at::Tensor k = qkv_out[1], v = qkv_out[2];
        at::Tensor attn = q.matmul(k.transpose(-2, -1));  // [B*nW, nH, N, N]
        at::Tensor bias = table.index_select(0, index_).view({N, N, num_heads_}).permute({2, 0, 1}).unsqueeze(0);
        if (shifted) {
            // bias [1, nH, N, N] + mask [nW, 1, N, N]: one addend per window.
            at::Tensor bias_mask = bias + attention_mask(pH, pW, shift_h, shift_w, x).unsqueeze(1);
            attn = (attn.view({B, nW, num_heads_, N, N}) + bias_mask.unsqueeze(0)).view({B * nW, num_heads_, N, N});
        } else {
            attn = attn + bias;
        }
        attn = at::softmax(attn, -1);
        x = attn.matmul(v).transpose(1, 2).reshape({B * nW, N, C});
        x = proj(x);

        // Reverse the windows, the shift and the padding.
        x = x.view({B, nWh, nWw, ws, ws, C}).permute({0, 1, 3, 2, 4, 5}).reshape({B, pH, pW, C});
        if (shifted) x = at::roll(x, {shift_h, shift_w}, {1, 2});
        if (pad_r || pad_b) x = x.slice(1, 0, H).slice(2, 0, W).contiguous();
        return x;
    }

    nn::Linear qkv{nullptr}, proj{nullptr};
    at::Tensor table;

private:
    // torchvision's attention mask of the shifted windows, [nW, N, N] (0 within a region,
    // -100 across regions); cached per padded size, shift and device.
    at::Tensor attention_mask(int64_t pH, int64_t pW, int64_t shift_h, int64_t shift_w, const at::Tensor& like) {
        if (mask_.defined() && mask_key_ == std::array<int64_t, 4>{pH, pW, shift_h, shift_w} &&
            mask_.device() == like.device() && mask_.scalar_type() == like.scalar_type())
            return mask_;
        const int64_t ws = window_;
        // Python's slices (0, -ws), (-ws, -shift), (-shift, None), applied in order.
        auto slices = [ws](int64_t len, int64_t shift) {
            auto idx = [len](int64_t v) { return v < 0 ? v + len : v; };
            return std::array<std::pair<int64_t, int64_t>, 3>{
                std::pair<int64_t, int64_t>{0, idx(-ws)}, {idx(-ws), idx(-shift)}, {idx(-shift), len}};
        };
        std::vector<float> region(static_cast<std::size_t>(pH * pW), 0.0f);
        int count = 0;
        for (const auto& h : slices(pH, shift_h))
            for (const auto& w : slices(pW, shift_w)) {
                for (int64_t i = h.first; i < h.second; ++i)
                    for (int64_t j = w.first; j < w.second; ++j) region[static_cast<std::size_t>(i * pW + j)] = count;
                ++count;
            }
        at::Tensor m = at::from_blob(region.data(), {pH / ws, ws, pW / ws, ws}, at::kFloat)
                           .permute({0, 2, 1, 3})
                           .reshape({(pH / ws) * (pW / ws), ws * ws});
        m = m.unsqueeze(1) - m.unsqueeze(2);
        m = at::zeros_like(m).masked_fill_(m != 0, -100.0);
        mask_ = m.to(like.options());
        mask_key_ = {pH, pW, shift_h, shift_w};
        return mask_;
    }

    int64_t window_, shift_, num_heads_;
    at::Tensor index_;
    at::Tensor mask_;
    std::array<int64_t, 4> mask_key_{};
};
TORCH_MODULE(ShiftedWindowAttention);

class SwinBlockImpl : public nn::Module {
public:
    SwinBlockImpl(int64_t dim, int64_t num_heads, int64_t window, int64_t shift, double sd_prob) : sd_prob_(sd_prob) {
        norm1 = register_module("norm1", layer_norm(dim));
        attn = register_module("attn", ShiftedWindowAttention(dim, window, shift, num_heads));
        norm2 = register_module("norm2", layer_norm(dim));
        mlp = register_module("mlp", Mlp(dim, dim * 4));
        // torchvision's block init (overwritten below by SwinTransformer's trunc_normal_, as there).
        for (auto* l : {mlp->fc1.get(), mlp->fc2.get()}) {
            nn::init::xavier_uniform_(l->weight);
            nn::init::normal_(l->bias, 0.0, 1e-6);
        }
    }
    at::Tensor forward(const at::Tensor& x) {
        at::Tensor y = x + stochastic_depth(attn(norm1(x)), sd_prob_, is_training());
        return y + stochastic_depth(mlp(norm2(y)), sd_prob_, is_training());
    }
    LayerNormLastDim norm1{nullptr}, norm2{nullptr};
    ShiftedWindowAttention attn{nullptr};
    Mlp mlp{nullptr};

private:
    double sd_prob_;
};
TORCH_MODULE(SwinBlock);

// A stage: Sequential of blocks "0", "1", ….
class SwinStageImpl : public nn::Module {
public:
    void add(SwinBlock block) { blocks_.push_back(register_module(std::to_string(blocks_.size()), block)); }
    at::Tensor forward(const at::Tensor& input) {
        at::Tensor x = input;
        for (auto& b : blocks_) x = b(x);
        return x;
    }

private:
    std::vector<SwinBlock> blocks_;
};
TORCH_MODULE(SwinStage);

// features[0]: Conv2d "0", Permute "1" (no keys), LayerNorm "2".
class PatchEmbedImpl : public nn::Module {
public:
    PatchEmbedImpl(int64_t patch, int64_t dim) {
        conv = register_module("0", nn::Conv2d(nn::Conv2dOptions(3, dim, patch).stride(patch)));
        norm = register_module("2", layer_norm(dim));
    }
    at::Tensor forward(const at::Tensor& x) { return norm(conv(x).permute({0, 2, 3, 1})); }
    nn::Conv2d conv{nullptr};
    LayerNormLastDim norm{nullptr};
};
TORCH_MODULE(PatchEmbed);

// PatchMerging: [B, H, W, C] -> [B, H/2, W/2, 2C] (2x2 neighbours concatenated, norm, reduction).
class PatchMergingImpl : public nn::Module {
public:
    explicit PatchMergingImpl(int64_t dim) {
        reduction = register_module("reduction", nn::Linear(nn::LinearOptions(4 * dim, 2 * dim).bias(false)));
        norm = register_module("norm", layer_norm(4 * dim));
    }
    at::Tensor forward(const at::Tensor& input) {
        at::Tensor x = input;
        const int64_t H = x.size(-3), W = x.size(-2);
        if (H % 2 || W % 2) x = at::constant_pad_nd(x, {0, 0, 0, W % 2, 0, H % 2}, 0);
        const int64_t B = x.size(0), H2 = x.size(1) / 2, W2 = x.size(2) / 2, C = x.size(3);
        // torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1): the
        // concatenated index is w_offset * 2 + h_offset.
        x = x.view({B, H2, 2, W2, 2, C}).permute({0, 1, 3, 4, 2, 5}).reshape({B, H2, W2, 4 * C});
        return reduction(norm(x));
    }
    nn::Linear reduction{nullptr};
    LayerNormLastDim norm{nullptr};
};
TORCH_MODULE(PatchMerging);

class SwinTransformer : public ImageNetModel {
public:
    SwinTransformer(Arch arch, int64_t embed_dim, std::vector<int64_t> depths, std::vector<int64_t> heads,
                    int64_t window, double stochastic_depth_prob, bool with_classifier, int num_classes)
        : ImageNetModel(arch, with_classifier) {
        features_ = register_module("features", nn::Sequential());
        features_->push_back(PatchEmbed(4, embed_dim));
        int64_t total = 0;
        for (auto d : depths) total += d;
        int64_t block_id = 0;
        for (std::size_t s = 0; s < depths.size(); ++s) {
            const int64_t dim = embed_dim << s;
            SwinStage stage;
            for (int64_t i = 0; i < depths[s]; ++i) {
                const double sd = stochastic_depth_prob * static_cast<double>(block_id) / static_cast<double>(total - 1);
                stage->add(SwinBlock(dim, heads[s], window, i % 2 == 0 ? 0 : window / 2, sd));
                ++block_id;
            }
            features_->push_back(stage);
            if (s + 1 < depths.size()) features_->push_back(PatchMerging(dim));
        }
        const int64_t num_features = embed_dim << (depths.size() - 1);
        norm_ = register_module("norm", layer_norm(num_features));
        if (with_classifier) head_ = register_module("head", nn::Linear(num_features, num_classes));
        // torchvision: every Linear trunc_normal_(std 0.02) with zero bias.
        for (auto& m : modules(false)) {
            if (auto* l = m->as<nn::Linear>()) {
                trunc_normal_(l->weight, 0.02);
                if (l->bias.defined()) nn::init::zeros_(l->bias);
            }
        }
    }

    // The final norm's feature map, NCHW: [N, 768, h, w].
    at::Tensor features(const at::Tensor& x) override { return norm_(features_->forward(x)).permute({0, 3, 1, 2}); }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return head_(norm_(features_->forward(x)).mean({1, 2}));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        std::vector<std::vector<std::shared_ptr<nn::Module>>> groups(2);
        for (std::size_t i = 0; i < features_->size(); ++i) groups[i < 4 ? 0 : 1].push_back(features_->ptr(i));
        groups[1].push_back(norm_.ptr());
        return groups;
    }

private:
    nn::Sequential features_{nullptr};
    LayerNormLastDim norm_{nullptr};
    nn::Linear head_{nullptr};
};

}  // namespace

std::shared_ptr<ImageNetModel> make_swin(Arch arch, bool with_classifier, int num_classes) {
    switch (arch) {
        case Arch::Swin_T:
            return std::make_shared<SwinTransformer>(arch, 96, std::vector<int64_t>{2, 2, 6, 2},
                                                     std::vector<int64_t>{3, 6, 12, 24}, 7, 0.2, with_classifier, num_classes);
        case Arch::Swin_S:
            return std::make_shared<SwinTransformer>(arch, 96, std::vector<int64_t>{2, 2, 18, 2},
                                                     std::vector<int64_t>{3, 6, 12, 24}, 7, 0.3, with_classifier, num_classes);
        default: throw std::invalid_argument("not a Swin Transformer");
    }
}

}  // namespace whisker::models::detail
