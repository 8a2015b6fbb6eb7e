#!/usr/bin/python3
"""Reference files for the parity tests: torchvision builds ARCH with random weights (and
non-trivial BatchNorm statistics), saves its state dict in both torch.save formats, and records
its eval-mode logits on a fixed input.

    make_reference.py ARCH OUTDIR [SIZE]

writes OUTDIR/ARCH.zip.pth (torch.save's zip format), OUTDIR/ARCH.legacy.pth (the pre-1.6
format, _use_new_zipfile_serialization=False) and OUTDIR/ARCH.reference.pth ({"input",
"logits"}, zip format). For resnet18 it also writes ARCH.legacy-old.pth without
num_batches_tracked (as files from PyTorch < 0.4.1), for densenet121 ARCH.oldkeys.pth with the
old "norm.1" key names of the published densenet files.

SIZE (default 224) is the input's side. For vit_b_16 at another size, the saved weights are
still the 224 model's and the reference logits come from torchvision's vit_b_16(image_size=SIZE)
loaded with interpolate_embeddings() of them: what a user fine-tuning at SIZE would get."""
import re
import sys

import torch
import torchvision


def main():
    arch, out = sys.argv[1], sys.argv[2]
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 224
    torch.manual_seed(0)
    model = torchvision.models.__dict__[arch](weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # Layer scale starts at 1e-6 (ConvNeXt), ViT's class token and head at 0, many biases
        # at 0: randomise them so that every parameter shows in the logits.
        for name, p in model.named_parameters():
            if name.endswith("layer_scale") or bool((p == 0).all()):
                p.uniform_(-0.1, 0.1) if not name.endswith("layer_scale") else p.uniform_(0.5, 1.0)
    model.eval()
    sd = model.state_dict()
    x = torch.randn(2, 3, size, size)
    evaluated = model
    if arch.startswith("vit") and size != 224:
        from torchvision.models.vision_transformer import interpolate_embeddings
        evaluated = torchvision.models.__dict__[arch](weights=None, image_size=size)
        # interpolate_embeddings changes the dict it is given: the saved files keep the 224 weights.
        evaluated.load_state_dict(interpolate_embeddings(size, 16, dict(sd)))
        evaluated.eval()
    with torch.no_grad():
        logits = evaluated(x)
    torch.save(sd, f"{out}/{arch}.zip.pth")
    torch.save(sd, f"{out}/{arch}.legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"input": x, "logits": logits}, f"{out}/{arch}.reference.pth")
    if arch == "resnet18":
        old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
        torch.save(old, f"{out}/{arch}.legacy-old.pth", _use_new_zipfile_serialization=False)
    if arch == "densenet121":
        pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
        renamed = {}
        for k, v in sd.items():
            m = pattern.match(k)
            renamed[m.group(1) + "." + m.group(2) if m else k] = v
        torch.save(renamed, f"{out}/{arch}.oldkeys.pth")


if __name__ == "__main__":
    main()
