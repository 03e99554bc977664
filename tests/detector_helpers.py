"""Train a small detector the same way in every test that needs a trained one."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from dlabel_lab.objects import collate_detections


def fit_detector(model, train, root, *, epochs: int = 12, batch_size: int = 8) -> None:
    """Fit ``model`` on the frame dataset ``train`` with a deterministic CPU Lightning Trainer."""
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=root,
    )
    trainer.fit(model, DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collate_detections))
