#!/usr/bin/python3
"""The peer of tests/benchmarks/e2e_vs_pytorch.sh: the same training written the usual way in
PyTorch + torchvision — ImageFolder + DataLoader with the transforms of fastai 0.7's side-on
augmentation, torchvision's resnet18 from scratch cut where Whisker cuts it + fastai 0.7's head,
SGD with momentum 0.9, SGDR (cosine annealing restarting every epoch, fastai's cycle_len=1), the
whole network trained. Validation: resize the shorter side + centre crop (fastai 0.7's ratio 1).

Prints one JSON object: validation accuracy and log loss after the last epoch, wall time of the
whole run (data loading included), images per second."""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_loader import RandomScale  # noqa: E402  (fastai's RandomScale)
from pytorch_train_step import AdaptiveConcatPool2d  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", help="fastai layout: train/<class>/, valid/<class>/")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast('cpu', dtype=torch.bfloat16) around forward")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t_start = time.perf_counter()

    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tfm = T.Compose([
        RandomScale(a.size),
        T.RandomApply([T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR)], p=0.75),
        T.ColorJitter(brightness=0.05, contrast=0.05),
        T.RandomHorizontalFlip(),
        T.RandomCrop(a.size),
        T.ToTensor(), norm])
    valid_tfm = T.Compose([T.Resize(a.size), T.CenterCrop(a.size), T.ToTensor(), norm])
    train = DataLoader(ImageFolder(os.path.join(a.folder, "train"), transform=train_tfm), batch_size=a.bs,
                       shuffle=True, num_workers=a.workers, persistent_workers=a.workers > 0)
    valid = DataLoader(ImageFolder(os.path.join(a.folder, "valid"), transform=valid_tfm), batch_size=a.bs,
                       num_workers=a.workers)

    resnet = torchvision.models.resnet18()
    body = nn.Sequential(*list(resnet.children())[:-2])
    model = nn.Sequential(body, AdaptiveConcatPool2d(), nn.Flatten(),
                          nn.BatchNorm1d(1024), nn.Dropout(0.25), nn.Linear(1024, 512), nn.ReLU(),
                          nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 2), nn.LogSoftmax(1))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    per_epoch = len(train)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")

    images = 0
    t_train = 0.0
    for epoch in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(train):
            # SGDR, cycle_len 1: cosine from lr to 0 over each epoch (fastai 0.7's CosAnneal).
            for g in opt.param_groups:
                g["lr"] = a.lr / 2 * (1 + math.cos(math.pi * i / per_epoch))
            opt.zero_grad()
            with autocast():
                out = model(x)
            loss = nn.functional.nll_loss(out.float(), y)
            loss.backward()
            opt.step()
            images += x.shape[0]
        t_train += time.perf_counter() - t0
    model.eval()
    correct, total, nll = 0, 0, 0.0
    with torch.inference_mode(), autocast():
        for x, y in valid:
            out = model(x).float()
            nll += nn.functional.nll_loss(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += y.shape[0]
    print(json.dumps({"accuracy": round(correct / total, 4), "val_loss": round(nll / total, 4),
                      "wall_seconds": round(time.perf_counter() - t_start, 1),
                      "train_images_per_second": round(images / t_train, 1), "precision": a.precision,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
