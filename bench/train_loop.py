"""Lightning overhead: one training epoch with pl.Trainer vs a plain torch loop.

Same model (tiny3d ClipClassifier), same in-memory clips, same DataLoader,
same AdamW step. After one warm-up epoch of each, every repeat times one
plain epoch and one Lightning epoch (a fresh ``pl.Trainer(max_epochs=1)``;
both the whole ``fit`` call and the epoch alone, between the epoch hooks),
and the medians are printed with the ratio (goal: Lightning <= 1.2x plain),
plus the minima, the least disturbed figures on a CPU shared with other work.

Run:
    .venv/bin/python bench/train_loop.py            # 256 clips 3x8x64x64, batch 16, 3 repeats
    .venv/bin/python bench/train_loop.py --clips 64 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dlabel_lab.models.classifier import ClipClassifier


class EpochTimer(pl.Callback):
    """Wall time between on_train_epoch_start and on_train_epoch_end."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


def plain_epoch(model: ClipClassifier, loader: DataLoader, opt: torch.optim.Optimizer) -> float:
    """One epoch of forward / cross-entropy / backward / AdamW step; seconds."""
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def lightning_epoch(model: ClipClassifier, loader: DataLoader) -> tuple[float, float]:
    """One epoch with a fresh Trainer; (seconds for the fit call, seconds inside the epoch)."""
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    t0 = time.perf_counter()
    trainer.fit(model, loader)
    return time.perf_counter() - t0, timer.seconds[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")

    pl.seed_everything(0, verbose=False)
    x = torch.randn(args.clips, 3, args.frames, args.size, args.size)
    y = torch.randint(0, 2, (args.clips,))
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True)
    model = ClipClassifier(2, backbone="tiny3d")
    opt = torch.optim.AdamW(model.parameters(), lr=model.hparams.lr, weight_decay=model.hparams.weight_decay)

    print(
        f"tiny3d, {args.clips} clips 3x{args.frames}x{args.size}x{args.size}, batch {args.batch}, "
        f"{len(loader)} steps/epoch, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    plain_epoch(model, loader, opt)  # warm-up
    lightning_epoch(model, loader)  # warm-up
    plain, fit, inner = [], [], []
    for i in range(args.repeats):
        plain.append(plain_epoch(model, loader, opt))
        f, e = lightning_epoch(model, loader)
        fit.append(f)
        inner.append(e)
        print(f"repeat {i + 1}: plain {plain[-1]:.3f} s, lightning fit {f:.3f} s (epoch {e:.3f} s)")
    p, f, e = statistics.median(plain), statistics.median(fit), statistics.median(inner)
    print(f"median plain loop      : {p:.3f} s/epoch")
    print(f"median lightning fit   : {f:.3f} s/epoch  ratio {f / p:.2f}x")
    print(f"median lightning epoch : {e:.3f} s/epoch  ratio {e / p:.2f}x  (goal <= 1.2x)")
    # other processes on a shared CPU inflate single repeats; the minimum is the least disturbed figure
    print(f"min plain {min(plain):.3f} s, lightning fit {min(fit):.3f} s: ratio {min(fit) / min(plain):.2f}x")


if __name__ == "__main__":
    main()
