// torchvision.models.vision_transformer, module for module: vit_b_16. The position embedding
// keeps torchvision's 224-px shape [1, 197, 768]; other input sizes interpolate it on the fly
// as torchvision's interpolate_embeddings() does (bicubic, align_corners=True), differentiably.
#include "architectures.h"
#include "layers.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/version.h>

#include <cmath>
#include <stdexcept>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

LayerNormLastDim layer_norm(int64_t dim) { return LayerNormLastDim(dim, 1e-6); }

// torchvision's MLPBlock (ops.misc.MLP): Linear "0", GELU, Dropout, Linear "3", Dropout.
class MlpBlockImpl : public nn::Module {
public:
    MlpBlockImpl(int64_t dim, int64_t hidden) {
        fc1 = register_module("0", nn::Linear(dim, hidden));
        fc2 = register_module("3", nn::Linear(hidden, dim));
        for (auto* l : {fc1.get(), fc2.get()}) {
            nn::init::xavier_uniform_(l->weight);
            nn::init::normal_(l->bias, 0.0, 1e-6);
        }
    }
    at::Tensor forward(const at::Tensor& x) { return fc2(at::gelu(fc1(x))); }
    nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(MlpBlock);

// nn.MultiheadAttention(dim, heads, batch_first=True) as self-attention without weights:
// in_proj_weight, in_proj_bias, out_proj.
class SelfAttentionImpl : public nn::Module {
public:
    SelfAttentionImpl(int64_t dim, int64_t num_heads) : num_heads_(num_heads) {
        in_proj_weight = register_parameter("in_proj_weight", at::empty({3 * dim, dim}));
        in_proj_bias = register_parameter("in_proj_bias", at::zeros({3 * dim}));
        out_proj = register_module("out_proj", nn::Linear(dim, dim));
        nn::init::xavier_uniform_(in_proj_weight);
        nn::init::zeros_(out_proj->bias);
    }

    // x: [N, S, E] -> [N, S, E]
    at::Tensor forward(const at::Tensor& x) {
        const int64_t n = x.size(0), s = x.size(1), e = x.size(2), hd = e / num_heads_;
        // [N, S, 3, H, D] -> 3 x [N, H, S, D]
        at::Tensor qkv = at::linear(x, in_proj_weight, in_proj_bias).view({n, s, 3, num_heads_, hd}).permute({2, 0, 3, 1, 4});
        at::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
#if TORCH_VERSION_MAJOR >= 2
        at::Tensor out = at::scaled_dot_product_attention(q, k, v);  // scale 1/sqrt(D)
#else
        at::Tensor attn = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(hd))), k.transpose(-2, -1));
        at::Tensor out = at::matmul(at::softmax(attn, -1), v);
#endif
        return out_proj(out.transpose(1, 2).reshape({n, s, e}));
    }

    at::Tensor in_proj_weight, in_proj_bias;
    nn::Linear out_proj{nullptr};

private:
    int64_t num_heads_;
};
TORCH_MODULE(SelfAttention);

class EncoderBlockImpl : public nn::Module {
public:
    EncoderBlockImpl(int64_t num_heads, int64_t dim, int64_t mlp_dim) {
        ln_1 = register_module("ln_1", layer_norm(dim));
        self_attention = register_module("self_attention", SelfAttention(dim, num_heads));
        ln_2 = register_module("ln_2", layer_norm(dim));
        mlp = register_module("mlp", MlpBlock(dim, mlp_dim));
    }
    at::Tensor forward(const at::Tensor& input) {
        at::Tensor x = self_attention(ln_1(input)) + input;
        return x + mlp(ln_2(x));
    }
    LayerNormLastDim ln_1{nullptr}, ln_2{nullptr};
    SelfAttention self_attention{nullptr};
    MlpBlock mlp{nullptr};
};
TORCH_MODULE(EncoderBlock);

class EncoderImpl : public nn::Module {
public:
    EncoderImpl(int64_t seq_length, int64_t num_layers, int64_t num_heads, int64_t dim, int64_t mlp_dim) {
        pos_embedding = register_parameter("pos_embedding", at::empty({1, seq_length, dim}).normal_(0.0, 0.02));
        layers = register_module("layers", nn::Sequential());
        for (int64_t i = 0; i < num_layers; ++i) {
            blocks.push_back(EncoderBlock(num_heads, dim, mlp_dim));
            layers->push_back("encoder_layer_" + std::to_string(i), blocks.back());
        }
        ln = register_module("ln", layer_norm(dim));
    }

    // x: [N, 1 + grid_h * grid_w, E]
    at::Tensor forward(const at::Tensor& input, int64_t grid_h, int64_t grid_w) {
        at::Tensor x = input + position_embedding(grid_h, grid_w);
        for (auto& b : blocks) x = b(x);
        return ln(x);
    }

    at::Tensor position_embedding(int64_t grid_h, int64_t grid_w) { return vit_position_embedding(pos_embedding, grid_h, grid_w); }

    at::Tensor pos_embedding;
    nn::Sequential layers{nullptr};
    std::vector<EncoderBlock> blocks;
    LayerNormLastDim ln{nullptr};
};
TORCH_MODULE(Encoder);

}  // namespace

// torchvision's interpolate_embeddings(): the class token's embedding kept, the 14x14 grid
// resized bicubic (align_corners=True) to the input's patch grid.
at::Tensor vit_position_embedding(const at::Tensor& pos_embedding, int64_t grid_h, int64_t grid_w) {
    const int64_t seq = pos_embedding.size(1) - 1, dim = pos_embedding.size(2);
    const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(seq))));
    TORCH_CHECK(side * side == seq, "the position embedding's grid is not square");
    if (grid_h == side && grid_w == side) return pos_embedding;
    at::Tensor token = pos_embedding.narrow(1, 0, 1);
    at::Tensor grid = pos_embedding.narrow(1, 1, seq).permute({0, 2, 1}).reshape({1, dim, side, side});
    grid = nn::functional::interpolate(grid, nn::functional::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{grid_h, grid_w})
                                                 .mode(torch::kBicubic)
                                                 .align_corners(true));
    grid = grid.reshape({1, dim, grid_h * grid_w}).permute({0, 2, 1});
    return at::cat({token, grid}, 1);
}

namespace {

class VisionTransformer : public ImageNetModel {
public:
    VisionTransformer(Arch arch, int64_t image_size, int64_t patch, int64_t num_layers, int64_t num_heads, int64_t dim,
                      int64_t mlp_dim, bool with_classifier, int num_classes)
        : ImageNetModel(arch, with_classifier), patch_(patch), dim_(dim) {
        conv_proj_ = register_module("conv_proj", nn::Conv2d(nn::Conv2dOptions(3, dim, patch).stride(patch)));
        const int64_t seq_length = (image_size / patch) * (image_size / patch) + 1;
        class_token_ = register_parameter("class_token", at::zeros({1, 1, dim}));
        encoder_ = register_module("encoder", Encoder(seq_length, num_layers, num_heads, dim, mlp_dim));
        if (with_classifier) {
            heads_ = register_module("heads", nn::Sequential());
            head_ = nn::Linear(dim, num_classes);
            heads_->push_back("head", head_);
            nn::init::zeros_(head_->weight);
            nn::init::zeros_(head_->bias);
        }
        // The patchify stem: trunc_normal_(std sqrt(1 / fan_in)), zero bias.
        trunc_normal_(conv_proj_->weight, std::sqrt(1.0 / static_cast<double>(3 * patch * patch)));
        nn::init::zeros_(conv_proj_->bias);
    }

    // The class token after encoder.ln: [N, 768].
    at::Tensor features(const at::Tensor& images) override {
        const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
        TORCH_CHECK(h % patch_ == 0 && w % patch_ == 0, "ViT's input sides must be multiples of ", patch_, ", got ", h,
                    "x", w);
        const int64_t gh = h / patch_, gw = w / patch_;
        at::Tensor x = conv_proj_(images).reshape({n, dim_, gh * gw}).permute({0, 2, 1});
        x = at::cat({class_token_.expand({n, -1, -1}), x}, 1);
        return encoder_->forward(x, gh, gw).select(1, 0);
    }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return head_(features(x));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        std::vector<std::vector<std::shared_ptr<nn::Module>>> groups(2);
        groups[0].push_back(conv_proj_.ptr());
        const std::size_t half = encoder_->blocks.size() / 2;
        for (std::size_t i = 0; i < encoder_->blocks.size(); ++i) groups[i < half ? 0 : 1].push_back(encoder_->blocks[i].ptr());
        groups[1].push_back(encoder_->ln.ptr());
        return groups;
    }

    std::vector<std::vector<at::Tensor>> body_group_loose_parameters() override {
        return {{class_token_, encoder_->pos_embedding}, {}};
    }

private:
    int64_t patch_, dim_;
    nn::Conv2d conv_proj_{nullptr};
    at::Tensor class_token_;
    Encoder encoder_{nullptr};
    nn::Sequential heads_{nullptr};
    nn::Linear head_{nullptr};
};

}  // namespace

std::shared_ptr<ImageNetModel> make_vit(Arch arch, bool with_classifier, int num_classes) {
    switch (arch) {
        case Arch::ViT_B_16: return std::make_shared<VisionTransformer>(arch, 224, 16, 12, 12, 768, 3072, with_classifier, num_classes);
        default: throw std::invalid_argument("not a Vision Transformer");
    }
}

}  // namespace whisker::models::detail
