"""Every W&B sweep in configs/sweeps/ only sweeps keys that exist, with values the schema accepts."""
from pathlib import Path

import pytest
import yaml

from lightning_aae.config import load_config

SWEEPS = sorted(Path(__file__).resolve().parents[1].glob("configs/sweeps/*.yaml"))


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_overrides_are_valid(sweep):
    spec = yaml.safe_load(sweep.read_text())
    config = spec["command"][spec["command"].index("--config") + 1]
    fixed = [c for c in spec["command"] if isinstance(c, str) and "=" in c and not c.startswith("$")]
    for key, p in spec["parameters"].items():
        for value in [p.get("min"), p.get("max"), p.get("value"), *(p.get("values") or [])]:
            if value is not None:
                load_config(config, fixed + [f"{key}={value}"])  # raises on an unknown key or a bad value
    assert spec["metric"]["name"] in {"val/error", "val/recon_loss", "val/cluster_error"}
