"""Pretrain the course's small transformer on the source task and write the checkpoint (seeded, re-runnable).

    .venv/bin/python scripts/pretrain_vit.py             # writes lrdiff_helpers/weights/tiny_vit_digits.pt
    .venv/bin/python scripts/pretrain_vit.py --out x.pt  # somewhere else

timm's ``VisionTransformer`` configured tiny (``lrdiff_helpers.vit.tiny_vit``), AdamW with a one-cycle schedule,
on the clean source digits (``lrdiff_helpers.source_task``). The checkpoint holds every tensor but the head.
It prints the file's sha256: put it in ``lrdiff_helpers/hub.py`` (``CHECKPOINTS``) when you re-make the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrdiff_helpers import fit, source_task  # noqa: E402
from lrdiff_helpers.hub import CHECKPOINTS, WEIGHTS_DIR, save_backbone  # noqa: E402
from lrdiff_helpers.vit import VIT_CHECKPOINT, tiny_vit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR / CHECKPOINTS[VIT_CHECKPOINT].file)
    args = parser.parse_args(argv)

    train, val = source_task()
    torch.manual_seed(args.seed)
    model = tiny_vit(num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * (len(train) // 32),
                                                pct_start=0.1)
    start = time.perf_counter()
    h = fit(model, opt, train, val, epochs=args.epochs, batch_size=32, scheduler=sched, seed=args.seed,
            device="cpu", desc="pretraining")
    print(f"pretrained {args.epochs} epochs in {time.perf_counter() - start:.1f} s: "
          f"source train acc {h.train_acc[-1]:.3f}, source val acc {h.val_acc[-1]:.3f}")
    print(save_backbone(model, args.out, head_prefix="head."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
