#include "whisker/models/zoo.h"

#include "architectures.h"
#include "whisker/common/errors.h"

namespace whisker::models {

std::string ArchInfo::sha256_prefix() const {
    const auto dash = weights_file.rfind('-');
    const auto dot = weights_file.rfind('.');
    return weights_file.substr(dash + 1, dot - dash - 1);
}

const std::vector<ArchInfo>& all_architectures() {
    static const std::vector<ArchInfo> archs{
        {Arch::ResNet18, "resnet18", "resnet18-f37072fd.pth", 512, "fc."},
        {Arch::ResNet34, "resnet34", "resnet34-b627a593.pth", 512, "fc."},
        {Arch::ResNet50, "resnet50", "resnet50-0676ba61.pth", 2048, "fc."},
        {Arch::ResNet101, "resnet101", "resnet101-63fe2227.pth", 2048, "fc."},
        {Arch::ResNet152, "resnet152", "resnet152-394f9c45.pth", 2048, "fc."},
        {Arch::ResNeXt50_32x4d, "resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth", 2048, "fc."},
        {Arch::VGG16, "vgg16", "vgg16-397923af.pth", 512, "classifier."},
        {Arch::VGG16_BN, "vgg16_bn", "vgg16_bn-6c64b313.pth", 512, "classifier."},
        {Arch::DenseNet121, "densenet121", "densenet121-a639ec97.pth", 1024, "classifier."},
    };
    return archs;
}

const ArchInfo& arch_info(Arch arch) {
    for (const auto& a : all_architectures())
        if (a.arch == arch) return a;
    throw std::invalid_argument("unknown architecture");
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
        default: return detail::make_resnet(arch, with_classifier, num_classes);
    }
}

std::int64_t parameter_count(const torch::nn::Module& module) {
    std::int64_t n = 0;
    for (const auto& p : module.parameters(true)) n += p.numel();
    return n;
}

}  // namespace whisker::models
