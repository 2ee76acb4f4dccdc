"""How long does fine-tuning the pretrained backbone take on this machine, how good is it, and what do the
reproducibility pins cost?

    .venv/bin/python benchmarks/finetune_speed.py

Prints the time to load the checksum-verified checkpoint, then, for a few settings, the fine-tuning time
(RECIPE: 40 steps) and the validation accuracy, twice: with the course's pins (one thread, CPU kernels capped
at AVX2: ``lrdiff_helpers/reproducibility.py``) and with the machine's own kernels (one thread too), each in
a process of its own since the kernels are chosen once per process. Numbers, not pass/fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = [("sgd", 1e-4, 1e-2), ("adam", 1e-4, 1e-3), ("adam", 0.0, 3e-3), ("sgd", 1e-1, 1e-1)]


def measure(label: str) -> float:
    """Fine-tune every setting over 3 seeds in this process; print a line each; return the total seconds."""
    import torch

    from lrdiff_helpers import RECIPE, default_device, finetune, pretrained_small_resnet
    from lrdiff_helpers.reproducibility import describe

    torch.set_num_threads(1)
    print(f"[{label}] torch {torch.__version__}, device {default_device()}, {os.cpu_count()} cores; {describe()}")
    start = time.perf_counter()
    pretrained_small_resnet(seed=0)
    print(f"[{label}] load pretrained backbone (sha256 checked): {time.perf_counter() - start:.3f} s")
    print(f"[{label}] recipe: {RECIPE}")
    total = 0.0
    for optimizer, backbone_lr, head_lr in SETTINGS:
        times, accs = [], []
        for seed in range(3):
            start = time.perf_counter()
            h = finetune(backbone_lr, head_lr, seed=seed, optimizer=optimizer)
            times.append(time.perf_counter() - start)
            accs.append(h.val_acc[-1])
        total += sum(times)
        print(f"[{label}] {optimizer:4s} backbone {backbone_lr:<6g} head {head_lr:<6g}: "
              f"{sum(times) / len(times):.2f} s per fine-tune (min {min(times):.2f}), "
              f"val acc {100 * sum(accs) / len(accs):.2f}% (chance 10%)", flush=True)
    print(f"[{label}] total {total:.2f} s")
    return total


def main() -> None:
    from lrdiff_helpers.reproducibility import PINNED_ENV

    native = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    totals = {}
    for label, env in [("pinned", {**native, **PINNED_ENV}), ("native", {**native, "OMP_NUM_THREADS": "1"})]:
        out = subprocess.run([sys.executable, __file__, "--child", label], env=env, capture_output=True, text=True,
                             check=True).stdout
        print(out, end="")
        totals[label] = float(out.rsplit("total ", 1)[1].split()[0])
    print(f"cost of the pins: {totals['pinned'] / totals['native']:.2f}x the machine's own kernels' time")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        measure(sys.argv[2])
    else:
        main()
