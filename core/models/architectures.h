#pragma once
// Internal: constructors of the architecture families (see zoo.h for the public entry point).

#include "whisker/models/zoo.h"

namespace whisker::models::detail {

std::shared_ptr<ImageNetModel> make_resnet(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_vgg(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_densenet(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_convnext(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_efficientnet(Arch arch, bool with_classifier, int num_classes);  // V1 and V2
std::shared_ptr<ImageNetModel> make_regnet(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_mobilenet_v3(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_swin(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_vit(Arch arch, bool with_classifier, int num_classes);

}  // namespace whisker::models::detail
