"""Every shipped training config resolves through ``vidrd train fit --print_config`` (each key a known argument of
its module, data module or trainer), the multi-node one layered on the single-node one as its launchers do."""

import pytest
import yaml

from training.cli import CONFIG_DIR, main

LAYERS = {"multinode": ["sd21-256-8gpu", "multinode"]}


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_a_shipped_config_resolves(name, capsys):
    args = [a for layer in LAYERS.get(name, [name]) for a in ("--config", layer)]
    with pytest.raises(SystemExit) as done:
        main(["fit", *args, "--print_config"])
    assert done.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["class_path"].startswith("training.")
    assert resolved["data"]["sampling"] in ("resampled", "exact")
