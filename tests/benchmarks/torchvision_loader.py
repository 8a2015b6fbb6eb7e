#!/usr/bin/python3
"""The peer for `whisker-cli bench loader`: PyTorch's own ImageFolder + DataLoader with the
transforms equivalent to fastai 0.7's side-on training augmentation, on the same files.

Prints one JSON object with images per second (after one warm-up epoch; Whisker's bench warms
up with one batch) and images per CPU-second (the main process and its workers, user + system)."""
import argparse
import json
import os
import random
import resource
import time

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder


class RandomScale:
    """fastai's RandomScale: with p=0.75 the shorter side becomes int(U(1, max_zoom) * sz)."""

    def __init__(self, sz, max_zoom=1.1, p=0.75):
        self.sz, self.max_zoom, self.p = sz, max_zoom, p

    def __call__(self, img):
        mult = random.uniform(1.0, self.max_zoom) if random.random() < self.p else 1.0
        return TF.resize(img, int(mult * self.sz))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", help="folder with <class>/ subfolders (fastai/ImageFolder layout)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()

    tfm = T.Compose([
        RandomScale(a.size),
        T.RandomApply([T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR)], p=0.75),
        T.ColorJitter(brightness=0.05, contrast=0.05),
        T.RandomHorizontalFlip(),
        T.RandomCrop(a.size),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = ImageFolder(a.folder, transform=tfm)
    dl = DataLoader(ds, batch_size=a.bs, shuffle=True, num_workers=a.workers, drop_last=False,
                    persistent_workers=a.workers > 0)
    it = iter(dl)
    next(it)  # warm-up: workers started
    for _ in it:
        pass
    workers = [w.pid for w in getattr(dl._iterator, "_workers", [])] if a.workers > 0 else []
    images = 0
    cpu0 = cpu_seconds(workers)
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        for x, y in dl:
            images += x.shape[0]
    secs = time.perf_counter() - t0
    cpu = cpu_seconds(workers) - cpu0
    print(json.dumps({"images": images, "seconds": round(secs, 3), "images_per_second": round(images / secs, 1),
                      "cpu_seconds": round(cpu, 3), "images_per_cpu_second": round(images / cpu, 1) if cpu > 0 else 0,
                      "workers": a.workers, "torch": torch.__version__}))


def cpu_seconds(worker_pids):
    """User + system CPU seconds of this process and of the (live) worker processes."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    total = me.ru_utime + me.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in worker_pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


if __name__ == "__main__":
    main()
