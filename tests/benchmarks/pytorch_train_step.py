#!/usr/bin/python3
"""The peer for `whisker-cli bench train` and `bench predict`: the same network (torchvision
body cut where Whisker cuts it + fastai 0.7 head), the same random batch, timed the same way
(2 warm-up steps). Training: SGD with momentum. Prediction: eval mode under inference mode."""
import argparse
import json
import time

import torch
import torch.nn as nn
import torchvision


class AdaptiveConcatPool2d(nn.Module):
    def forward(self, x):
        return torch.cat([nn.functional.adaptive_max_pool2d(x, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1)


class ViTBody(nn.Module):
    """torchvision's VisionTransformer up to the class token after encoder.ln."""
    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        v = self.vit
        x = v._process_input(x)
        x = torch.cat([v.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return v.encoder(x)[:, 0]


class Permute(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def body_of(arch, size):
    m = getattr(torchvision.models, arch)() if not arch.startswith("vit") else \
        torchvision.models.vit_b_16(image_size=size)
    if arch.startswith("resnet") or arch.startswith("resnext"):
        return nn.Sequential(*list(m.children())[:-2]), False
    if arch.startswith("densenet"):
        return nn.Sequential(m.features, nn.ReLU()), False
    if arch.startswith("regnet"):
        return nn.Sequential(m.stem, m.trunk_output), False
    if arch.startswith("swin"):
        return nn.Sequential(m.features, m.norm, Permute()), False
    if arch.startswith("vit"):
        return ViTBody(m), True
    return m.features, False   # vgg, convnext, efficientnet, mobilenet_v3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["train", "predict"], default="train")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="bf16/fp16: torch.autocast(device, dtype) around forward (and loss); fp16 trains with "
                         "a GradScaler (dynamic loss scaling), as Whisker does")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--channels-last", action="store_true", help="model and batch in channels-last memory format")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    body, token = body_of(a.arch, a.size)
    with torch.no_grad():
        body.eval()
        channels = body(torch.zeros(1, 3, a.size, a.size)).shape[1]
    nf = channels if token else 2 * channels
    pool = [] if token else [AdaptiveConcatPool2d(), nn.Flatten()]
    model = nn.Sequential(body, *pool,
                          nn.BatchNorm1d(nf), nn.Dropout(0.25), nn.Linear(nf, 512), nn.ReLU(),
                          nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 2), nn.LogSoftmax(1))
    model = model.to(dev)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.channels_last:
        model = model.to(memory_format=fmt)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)

    def autocast():
        return torch.autocast(a.device, dtype=half or torch.bfloat16, enabled=half is not None)

    x = torch.randn(a.bs, 3, a.size, a.size).to(dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (a.bs,)).to(dev)
    scaler = torch.cuda.amp.GradScaler(enabled=a.precision == "fp16" and a.device == "cuda")
    if a.mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad()
            with autocast():
                out = model(x)
            loss = nn.functional.nll_loss(out.float(), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            return loss.item()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                return model(x).float().exp().sum().item()

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t0
    print(json.dumps({"arch": a.arch, "mode": a.mode, "precision": a.precision, "device": a.device,
                      "channels_last": a.channels_last, "size": a.size, "bs": a.bs,
                      "images_per_second": round(a.steps * a.bs / secs, 2),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
