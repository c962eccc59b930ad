"""Behaviour is unchanged by refactors: every variant, trained a few dozen fixed-seed steps through
train(), ends with the weights recorded from the code before the redesign (tests/data/fingerprints.json,
written by `python tests/fingerprint.py --write` at the commit it names)."""
import json

import pytest
import torch

from fingerprint import CASES, FILE, run_case

RECORDED = json.loads(FILE.read_text())


@pytest.fixture(scope="module")
def base(data_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fingerprint")
    return [f"data.root={data_root}", f"output_dir={tmp}/runs", "logger.enabled=false", "trainer.accelerator=cpu",
            "trainer.devices=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_weights_match_the_recorded_fingerprint(case, base):
    expected = RECORDED["cases"][case]
    got = run_case(case, base)
    assert sorted(got) == sorted(expected), "parameter names changed: old checkpoints would not load"
    for name, values in expected.items():
        assert torch.allclose(torch.tensor(got[name]), torch.tensor(values), rtol=1e-4, atol=1e-4), \
            f"{case}: {name} differs from the code at {RECORDED['commit'][:8]}: {got[name]} vs {values}"
