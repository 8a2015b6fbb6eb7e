#!/usr/bin/python3
"""References for test_trivial_augment: torchvision 0.14's TrivialAugmentWide ops on a uint8 image.

    trivial_augment_reference.py DIR

reads DIR/image.u8 (HEIGHT WIDTH on the first line, then HEIGHT*WIDTH*3 bytes, HWC RGB) and
DIR/ops.txt (one "OP BIN NEGATIVE" a line: the op's name, the magnitude bin, 0 or 1), takes each
magnitude from TrivialAugmentWide()._augmentation_space(31) as torchvision does (negated when
NEGATIVE and the op is signed), applies torchvision.transforms.autoaugment._apply_op with
InterpolationMode.NEAREST and fill=None to the image as a uint8 CHW tensor, and writes
DIR/out_<line>.u8 (HWC bytes) and DIR/magnitudes.txt (the magnitude of each line, repr)."""
import sys

import torch
from torchvision.transforms import InterpolationMode, TrivialAugmentWide
from torchvision.transforms.autoaugment import _apply_op


def main():
    d = sys.argv[1]
    with open(f"{d}/image.u8", "rb") as f:
        h, w = (int(v) for v in f.readline().split())
        data = f.read()
    img = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(h, w, 3).permute(2, 0, 1).contiguous()
    space = TrivialAugmentWide()._augmentation_space(31)
    mags = []
    with open(f"{d}/ops.txt") as f:
        lines = [line.split() for line in f if line.strip()]
    for i, (op, b, neg) in enumerate(lines):
        magnitudes, signed = space[op]
        magnitude = float(magnitudes[int(b)].item()) if magnitudes.ndim > 0 else 0.0
        if signed and neg == "1":
            magnitude *= -1.0
        out = _apply_op(img, op, magnitude, interpolation=InterpolationMode.NEAREST, fill=None)
        assert out.dtype == torch.uint8
        with open(f"{d}/out_{i}.u8", "wb") as f:
            f.write(out.permute(1, 2, 0).contiguous().numpy().tobytes())
        mags.append(repr(magnitude))
    with open(f"{d}/magnitudes.txt", "w") as f:
        f.write("\n".join(mags) + "\n")


if __name__ == "__main__":
    main()
