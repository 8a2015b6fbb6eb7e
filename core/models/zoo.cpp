#include "whisker/models/zoo.h"

#include "architectures.h"
#include "whisker/common/errors.h"

#include <algorithm>

namespace whisker::models {

std::string ArchInfo::sha256_prefix() const {
    const auto dash = weights_file.rfind('-');
    const auto dot = weights_file.rfind('.');
    return weights_file.substr(dash + 1, dot - dash - 1);
}

const std::vector<ArchInfo>& all_architectures() {
    // Generated from Debian's python3-torchvision 0.14 (ArchTable.MatchesTorchvision checks it;
    // GFLOPs are torchvision's published figures from 0.15 on, which 0.14 lacks, and
    // ArchTable.GflopsAsCounted checks them by counting):
    // the weight set is IMAGENET1K_V1 for the 2017 architectures (what fastai 0.7 used) and
    // torchvision's DEFAULT (its best) for the others.
    static const std::vector<ArchInfo> archs{
        {Arch::ResNet18, "resnet18", "ResNet", "resnet18-f37072fd.pth", "IMAGENET1K_V1", 512, "fc.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 11689512, 69.758, 1.81, 1, 32},
        {Arch::ResNet34, "resnet34", "ResNet", "resnet34-b627a593.pth", "IMAGENET1K_V1", 512, "fc.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 21797672, 73.314, 3.66, 1, 32},
        {Arch::ResNet50, "resnet50", "ResNet", "resnet50-0676ba61.pth", "IMAGENET1K_V1", 2048, "fc.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 25557032, 76.13, 4.09, 1, 32},
        {Arch::ResNet101, "resnet101", "ResNet", "resnet101-63fe2227.pth", "IMAGENET1K_V1", 2048, "fc.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 44549160, 77.374, 7.8, 1, 32},
        {Arch::ResNet152, "resnet152", "ResNet", "resnet152-394f9c45.pth", "IMAGENET1K_V1", 2048, "fc.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 60192808, 78.312, 11.51, 1, 32},
        {Arch::ResNeXt50_32x4d, "resnext50_32x4d", "ResNeXt", "resnext50_32x4d-7cdf4587.pth", "IMAGENET1K_V1", 2048, "fc.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 25028904, 77.618, 4.23, 1, 32},
        {Arch::VGG16, "vgg16", "VGG", "vgg16-397923af.pth", "IMAGENET1K_V1", 512, "classifier.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 138357544, 71.592, 15.47, 1, 32},
        {Arch::VGG16_BN, "vgg16_bn", "VGG", "vgg16_bn-6c64b313.pth", "IMAGENET1K_V1", 512, "classifier.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 138365992, 73.36, 15.47, 1, 32},
        {Arch::DenseNet121, "densenet121", "DenseNet", "densenet121-a639ec97.pth", "IMAGENET1K_V1", 1024, "classifier.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 7978856, 74.434, 2.83, 1, 32},
        {Arch::ConvNeXt_Tiny, "convnext_tiny", "ConvNeXt", "convnext_tiny-983f1562.pth", "IMAGENET1K_V1", 768, "classifier.", BodyOutput::FeatureMap,
         {236, 224, "bilinear"}, 28589128, 82.52, 4.46, 1, 32},
        {Arch::ConvNeXt_Small, "convnext_small", "ConvNeXt", "convnext_small-0c510722.pth", "IMAGENET1K_V1", 768, "classifier.", BodyOutput::FeatureMap,
         {230, 224, "bilinear"}, 50223688, 83.616, 8.68, 1, 32},
        {Arch::ConvNeXt_Base, "convnext_base", "ConvNeXt", "convnext_base-6075fbad.pth", "IMAGENET1K_V1", 1024, "classifier.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 88591464, 84.062, 15.36, 1, 32},
        {Arch::EfficientNet_B0, "efficientnet_b0", "EfficientNet", "efficientnet_b0_rwightman-3dd342df.pth", "IMAGENET1K_V1", 1280, "classifier.", BodyOutput::FeatureMap,
         {256, 224, "bicubic"}, 5288548, 77.692, 0.39, 1, 32},
        {Arch::EfficientNet_B1, "efficientnet_b1", "EfficientNet", "efficientnet_b1-c27df63c.pth", "IMAGENET1K_V2", 1280, "classifier.", BodyOutput::FeatureMap,
         {255, 240, "bilinear"}, 7794184, 79.838, 0.69, 1, 32},
        {Arch::EfficientNet_B2, "efficientnet_b2", "EfficientNet", "efficientnet_b2_rwightman-bcdf34b7.pth", "IMAGENET1K_V1", 1408, "classifier.", BodyOutput::FeatureMap,
         {288, 288, "bicubic"}, 9109994, 80.608, 1.09, 1, 32},
        {Arch::EfficientNet_B3, "efficientnet_b3", "EfficientNet", "efficientnet_b3_rwightman-cf984f9c.pth", "IMAGENET1K_V1", 1536, "classifier.", BodyOutput::FeatureMap,
         {320, 300, "bicubic"}, 12233232, 82.008, 1.83, 1, 32},
        {Arch::EfficientNet_B4, "efficientnet_b4", "EfficientNet", "efficientnet_b4_rwightman-7eb33cd5.pth", "IMAGENET1K_V1", 1792, "classifier.", BodyOutput::FeatureMap,
         {384, 380, "bicubic"}, 19341616, 83.384, 4.39, 1, 32},
        {Arch::EfficientNet_V2_S, "efficientnet_v2_s", "EfficientNetV2", "efficientnet_v2_s-dd5fe13b.pth", "IMAGENET1K_V1", 1280, "classifier.", BodyOutput::FeatureMap,
         {384, 384, "bilinear"}, 21458488, 84.228, 8.37, 1, 32},
        {Arch::EfficientNet_V2_M, "efficientnet_v2_m", "EfficientNetV2", "efficientnet_v2_m-dc08266a.pth", "IMAGENET1K_V1", 1280, "classifier.", BodyOutput::FeatureMap,
         {480, 480, "bilinear"}, 54139356, 85.112, 24.58, 1, 32},
        {Arch::RegNet_Y_400MF, "regnet_y_400mf", "RegNet", "regnet_y_400mf-e6988f5f.pth", "IMAGENET1K_V2", 440, "fc.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 4344144, 75.804, 0.4, 1, 32},
        {Arch::RegNet_Y_800MF, "regnet_y_800mf", "RegNet", "regnet_y_800mf-58fc7688.pth", "IMAGENET1K_V2", 784, "fc.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 6432512, 78.828, 0.83, 1, 32},
        {Arch::RegNet_Y_1_6GF, "regnet_y_1_6gf", "RegNet", "regnet_y_1_6gf-0d7bc02a.pth", "IMAGENET1K_V2", 888, "fc.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 11202430, 80.876, 1.61, 1, 32},
        {Arch::RegNet_Y_3_2GF, "regnet_y_3_2gf", "RegNet", "regnet_y_3_2gf-9180c971.pth", "IMAGENET1K_V2", 1512, "fc.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 19436338, 81.982, 3.18, 1, 32},
        {Arch::RegNet_Y_8GF, "regnet_y_8gf", "RegNet", "regnet_y_8gf-dc2b1b54.pth", "IMAGENET1K_V2", 2016, "fc.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 39381472, 82.828, 8.47, 1, 32},
        {Arch::RegNet_Y_16GF, "regnet_y_16gf", "RegNet", "regnet_y_16gf-3e4a00f9.pth", "IMAGENET1K_V2", 3024, "fc.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 83590140, 82.886, 15.91, 1, 32},
        {Arch::MobileNet_V3_Large, "mobilenet_v3_large", "MobileNetV3", "mobilenet_v3_large-5c1a4163.pth", "IMAGENET1K_V2", 960, "classifier.", BodyOutput::FeatureMap,
         {232, 224, "bilinear"}, 5483032, 75.274, 0.22, 1, 32},
        {Arch::MobileNet_V3_Small, "mobilenet_v3_small", "MobileNetV3", "mobilenet_v3_small-047dcff4.pth", "IMAGENET1K_V1", 576, "classifier.", BodyOutput::FeatureMap,
         {256, 224, "bilinear"}, 2542856, 67.668, 0.06, 1, 32},
        {Arch::Swin_T, "swin_t", "Swin", "swin_t-704ceda3.pth", "IMAGENET1K_V1", 768, "head.", BodyOutput::FeatureMap,
         {232, 224, "bicubic"}, 28288354, 81.474, 4.49, 32, 32},
        {Arch::Swin_S, "swin_s", "Swin", "swin_s-5e29d889.pth", "IMAGENET1K_V1", 768, "head.", BodyOutput::FeatureMap,
         {246, 224, "bicubic"}, 49606258, 83.196, 8.74, 32, 32},
        {Arch::ViT_B_16, "vit_b_16", "ViT", "vit_b_16-c867db91.pth", "IMAGENET1K_V1", 768, "heads.", BodyOutput::Token,
         {256, 224, "bilinear"}, 86567656, 81.072, 17.56, 16, 32},
    };
    return archs;
}

const ArchInfo& arch_info(Arch arch) {
    for (const auto& a : all_architectures())
        if (a.arch == arch) return a;
    throw std::invalid_argument("unknown architecture");
}

std::string ArchInfo::size_problem(int size) const {
    if (size >= min_size && size % size_multiple == 0) return {};
    std::string what = name + " needs an image size";
    if (size_multiple > 1) what += " that is a multiple of " + std::to_string(size_multiple);
    if (size < min_size) what += (size_multiple > 1 ? " and" : "") + std::string(" of at least ") + std::to_string(min_size);
    const int lower = std::max(min_size, size / size_multiple * size_multiple);
    const int upper = std::max(min_size, (size + size_multiple - 1) / size_multiple * size_multiple);
    return what + " (got " + std::to_string(size) + "; try " +
           (lower == upper ? std::to_string(lower) : std::to_string(lower) + " or " + std::to_string(upper)) + ")";
}

double ArchInfo::default_eval_resize_ratio() const {
    if (family == "ResNet" || family == "ResNeXt" || family == "VGG" || family == "DenseNet") return 1.0;
    return static_cast<double>(eval.resize) / eval.crop;
}

void check_input_size(Arch arch, int size) {
    const std::string problem = arch_info(arch).size_problem(size);
    if (!problem.empty()) throw UserError(problem, "choose a size the architecture accepts (--size)");
}

Arch parse_arch(const std::string& name) {
    std::string known;
    for (const auto& a : all_architectures()) {
        if (a.name == name) return a.arch;
        known += (known.empty() ? "" : ", ") + a.name;
    }
    throw UserError("unknown architecture '" + name + "'", "choose one of: " + known);
}

std::shared_ptr<ImageNetModel> create_imagenet_model(Arch arch, bool with_classifier, int num_classes) {
    switch (arch) {
        case Arch::VGG16:
        case Arch::VGG16_BN: return detail::make_vgg(arch, with_classifier, num_classes);
        case Arch::DenseNet121: return detail::make_densenet(arch, with_classifier, num_classes);
        case Arch::ConvNeXt_Tiny:
        case Arch::ConvNeXt_Small:
        case Arch::ConvNeXt_Base: return detail::make_convnext(arch, with_classifier, num_classes);
        case Arch::EfficientNet_B0:
        case Arch::EfficientNet_B1:
        case Arch::EfficientNet_B2:
        case Arch::EfficientNet_B3:
        case Arch::EfficientNet_B4:
        case Arch::EfficientNet_V2_S:
        case Arch::EfficientNet_V2_M: return detail::make_efficientnet(arch, with_classifier, num_classes);
        case Arch::RegNet_Y_400MF:
        case Arch::RegNet_Y_800MF:
        case Arch::RegNet_Y_1_6GF:
        case Arch::RegNet_Y_3_2GF:
        case Arch::RegNet_Y_8GF:
        case Arch::RegNet_Y_16GF: return detail::make_regnet(arch, with_classifier, num_classes);
        case Arch::MobileNet_V3_Large:
        case Arch::MobileNet_V3_Small: return detail::make_mobilenet_v3(arch, with_classifier, num_classes);
        case Arch::Swin_T:
        case Arch::Swin_S: return detail::make_swin(arch, with_classifier, num_classes);
        case Arch::ViT_B_16: return detail::make_vit(arch, with_classifier, num_classes);
        default: return detail::make_resnet(arch, with_classifier, num_classes);
    }
}

std::int64_t parameter_count(const torch::nn::Module& module) {
    std::int64_t n = 0;
    for (const auto& p : module.parameters(true)) n += p.numel();
    return n;
}

}  // namespace whisker::models
