#pragma once
// Internal: constructors of the architecture families (see zoo.h for the public entry point).

#include "whisker/models/zoo.h"

namespace whisker::models::detail {

std::shared_ptr<ImageNetModel> make_resnet(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_vgg(Arch arch, bool with_classifier, int num_classes);
std::shared_ptr<ImageNetModel> make_densenet(Arch arch, bool with_classifier, int num_classes);

}  // namespace whisker::models::detail
