"""How long does fine-tuning the pretrained backbone take on this machine, and how good is it?

    .venv/bin/python benchmarks/finetune_speed.py

Prints the time to load the checksum-verified checkpoint, then, for a few settings, the fine-tuning time
(RECIPE: 40 steps) and the validation accuracy. Numbers, not pass/fail: speed goals live here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lrdiff_helpers import RECIPE, default_device, finetune, pretrained_small_resnet  # noqa: E402


def main() -> None:
    print(f"torch {torch.__version__}, device {default_device()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    start = time.perf_counter()
    pretrained_small_resnet(seed=0)
    print(f"load pretrained backbone (sha256 checked): {time.perf_counter() - start:.3f} s")
    print(f"recipe: {RECIPE}")
    for optimizer, backbone_lr, head_lr in [("sgd", 1e-4, 1e-2), ("adam", 1e-4, 1e-3), ("adam", 0.0, 3e-3), ("sgd", 1e-1, 1e-1)]:
        times, accs = [], []
        for seed in range(3):
            start = time.perf_counter()
            h = finetune(backbone_lr, head_lr, seed=seed, optimizer=optimizer)
            times.append(time.perf_counter() - start)
            accs.append(h.val_acc[-1])
        print(f"{optimizer:4s} backbone {backbone_lr:<6g} head {head_lr:<6g}: "
              f"{sum(times) / len(times):.2f} s per fine-tune (min {min(times):.2f}), "
              f"val acc {100 * sum(accs) / len(accs):.1f}% (chance 10%)")


if __name__ == "__main__":
    main()
