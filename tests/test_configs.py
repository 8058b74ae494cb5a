"""Every YAML under configs/ parses with ``--print_config`` (``test`` for configs/eval, ``fit`` otherwise).

The files are found by globbing, so a new config is covered as soon as it exists; environment
variables it reads (``${oc.env:NAME}``) are set to dummy paths.
"""

import re
from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
# configs/sweeps/ and configs/pipelines/ are not LightningCLI configs (lavit sweep / lavit generate read them):
# tests/sweeps/test_config.py and tests/pipelines/test_pipeline_config.py parse them
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name not in ("sweeps", "pipelines"))


def test_configs_are_found():
    assert {p.parent.name for p in CONFIGS} >= {"eval", "motion_vqvae"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_print_config(config, tmp_path, monkeypatch, capsys):
    text = config.read_text()
    for name in set(re.findall(r"\$\{oc\.env:(\w+)", text)):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.chdir(tmp_path)
    subcommand = "test" if config.parent.name == "eval" else "fit"
    with pytest.raises(SystemExit) as exit:  # --print_config prints and exits while parsing: nothing is built or run
        lightning_cli([subcommand, "-c", str(config), "--print_config"], prog="lightning")
    assert exit.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    source = yaml.safe_load(text)
    for part in ("model", "data"):
        assert printed[part]["class_path"].split(".")[-1] == source[part]["class_path"].split(".")[-1]
    assert "${" not in yaml.safe_dump(printed)  # every interpolation resolved


@pytest.mark.parametrize("config", [p for p in CONFIGS if p.stem.endswith("_streaming")], ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_streaming_variant_differs_only_in_data(config):
    """``X_streaming.yaml`` is ``X.yaml`` with the data section swapped for ``StreamingClipDataModule``."""
    streaming = yaml.safe_load(config.read_text())
    decoding = yaml.safe_load((config.parent / (config.stem.removesuffix("_streaming") + ".yaml")).read_text())
    assert streaming["data"]["class_path"] == "StreamingClipDataModule"
    assert {k: v for k, v in streaming.items() if k != "data"} == {k: v for k, v in decoding.items() if k != "data"}


def test_every_checkpoint_the_demo_pipeline_reads_is_written_by_its_demo_config():
    """configs/pipelines/demo.yaml reads <stage>_demo/checkpoints/last.ckpt: each demo config's ModelCheckpoint must
    write that file at the end of training, also when validation never runs (save_on_train_epoch_end)."""
    pipeline = yaml.safe_load((ROOT / "configs" / "pipelines" / "demo.yaml").read_text())
    written = {}
    for config in (c for c in ROOT.glob("configs/*/demo.yaml") if c in CONFIGS):
        for callback in yaml.safe_load(config.read_text())["trainer"].get("callbacks") or []:
            if callback["class_path"].endswith("ModelCheckpoint"):
                args = callback["init_args"]
                assert args.get("save_on_train_epoch_end") is True, f"{config}: set save_on_train_epoch_end: true"
                written[f"{args['dirpath']}/{args['filename']}.ckpt"] = config
    for name, path in pipeline["checkpoints"].items():
        if path.endswith(".ckpt"):
            assert path in written, f"configs/pipelines/demo.yaml checkpoint {name}: no demo config writes {path}"
