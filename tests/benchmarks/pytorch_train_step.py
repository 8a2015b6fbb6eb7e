#!/usr/bin/python3
"""The peer for `whisker-cli bench train`: the same network (torchvision body + fastai 0.7
head), the same random batch, SGD with momentum, timed the same way (2 warm-up steps)."""
import argparse
import json
import time

import torch
import torch.nn as nn
import torchvision


class AdaptiveConcatPool2d(nn.Module):
    def forward(self, x):
        return torch.cat([nn.functional.adaptive_max_pool2d(x, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    body = nn.Sequential(*list(getattr(torchvision.models, a.arch)().children())[:-2])
    nf = 2 * (512 if a.arch in ("resnet18", "resnet34") else 2048)
    model = nn.Sequential(body, AdaptiveConcatPool2d(), nn.Flatten(),
                          nn.BatchNorm1d(nf), nn.Dropout(0.25), nn.Linear(nf, 512), nn.ReLU(),
                          nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 2), nn.LogSoftmax(1))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(a.bs, 3, a.size, a.size)
    y = torch.randint(0, 2, (a.bs,))

    def step():
        opt.zero_grad()
        loss = nn.functional.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t0
    print(json.dumps({"arch": a.arch, "size": a.size, "bs": a.bs, "images_per_second": round(a.steps * a.bs / secs, 2),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
