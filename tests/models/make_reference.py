#!/usr/bin/python3
"""Reference files for the parity tests: torchvision builds ARCH with random weights (and
non-trivial BatchNorm statistics), saves its state dict in both torch.save formats, and records
its eval-mode logits on a fixed input.

    make_reference.py ARCH OUTDIR

writes OUTDIR/ARCH.zip.pth (torch.save's zip format), OUTDIR/ARCH.legacy.pth (the pre-1.6
format, _use_new_zipfile_serialization=False) and OUTDIR/ARCH.reference.pth ({"input",
"logits"}, zip format). For resnet18 it also writes ARCH.legacy-old.pth without
num_batches_tracked (as files from PyTorch < 0.4.1), for densenet121 ARCH.oldkeys.pth with the
old "norm.1" key names of the published densenet files."""
import re
import sys

import torch
import torchvision


def main():
    arch, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = torchvision.models.__dict__[arch](weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
    sd = model.state_dict()
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
