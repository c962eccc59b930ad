"""Run by tests/test_ddp.py as a script: Lightning's DDP launcher starts it once per process.

Usage: python tests/ddp_worker.py OUT_DIR DATA_ROOT
For each variant it trains a few batches on 2 CPU processes, then every process saves its
parameters and rank 0 saves the final metrics, so the test can compare them.
"""
import json
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conftest import SMALL_NETS  # noqa: E402
from lightning_aae.config import load_config  # noqa: E402
from lightning_aae.training import train  # noqa: E402

CONFIGS = ["aae", "supervised", "semi_supervised", "clustering"]


class SaveParameters(Callback):
    def __init__(self, path_pattern: str):
        self.path_pattern = path_pattern

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:  # what this process trained on first
            x = module.step_batch(batch).target  # the clean unlabeled images
            torch.save(x.cpu(), self.path_pattern.format(rank=trainer.global_rank).replace(".pt", "_batch.pt"))

    def on_train_end(self, trainer, module):
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        torch.save(state, self.path_pattern.format(rank=trainer.global_rank))


def main(out: Path, data_root: str) -> None:
    for name in CONFIGS:
        cfg = load_config(ROOT / "configs" / f"{name}.yaml", [
            f"data.root={data_root}", f"output_dir={out / 'runs'}", "logger.enabled=false",
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
            "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", *SMALL_NETS,
            "callbacks.figures.enabled=false", "data.batch_size=50", f"logger.name={name}",
        ])
        metrics = train(cfg, verbose=False, extra_callbacks=[SaveParameters(str(out / f"{name}_rank{{rank}}.pt"))])
        if torch.distributed.is_initialized() and torch.distributed.get_rank() == 0:
            (out / f"{name}_metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
