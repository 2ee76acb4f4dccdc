"""Pretrain the course's backbone on the source task and write the checkpoint (seeded, re-runnable).

    .venv/bin/python scripts/pretrain_backbone.py                        # small_resnet_digits.pt
    .venv/bin/python scripts/pretrain_backbone.py --checkpoint small_resnet_digits_0to4  # digits 0-4 only
    .venv/bin/python scripts/pretrain_backbone.py --out x.pt             # somewhere else

The checkpoint holds every tensor of a SmallResNet except the head ``fc`` (a fine-tune makes a new one).
It prints the file's sha256: put it in ``lrdiff_helpers/hub.py`` (``CHECKPOINTS``) when you re-make the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrdiff_helpers import SmallResNet, fit, source_task  # noqa: E402
from lrdiff_helpers.hub import CHECKPOINTS, WEIGHTS_DIR, save_backbone  # noqa: E402

#: The source task's classes for each checkpoint this script makes.
SOURCE_DIGITS = {
    "small_resnet_digits": tuple(range(10)),
    "small_resnet_digits_0to4": (0, 1, 2, 3, 4),  # lesson 4's counterexample: fine-tuned on 5-9
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", choices=sorted(SOURCE_DIGITS), default="small_resnet_digits",
                        help="which registered checkpoint to make (its source digits: %(choices)s)")
    parser.add_argument("--out", type=Path, help="default: the checkpoint's file in lrdiff_helpers/weights/")
    args = parser.parse_args(argv)
    out = args.out or WEIGHTS_DIR / CHECKPOINTS[args.checkpoint].file

    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, val = source_task(digits=SOURCE_DIGITS[args.checkpoint])
    torch.manual_seed(args.seed)
    model = SmallResNet(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * (len(train) // 32))
    start = time.perf_counter()
    h = fit(model, opt, train, val, epochs=args.epochs, batch_size=32, scheduler=sched, seed=args.seed,
            device="cpu", desc="pretraining")
    print(f"pretrained {args.epochs} epochs in {time.perf_counter() - start:.1f} s: "
          f"source train acc {h.train_acc[-1]:.3f}, source val acc {h.val_acc[-1]:.3f}")
    print(save_backbone(model, out, head_prefix="fc."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
