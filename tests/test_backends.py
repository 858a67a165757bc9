"""A plug-in whose optional backend is not installed: one message naming the plug-in, the module and
the extra that installs it, exit status 2, from validate, run and sweep before anything runs."""

import sys
from pathlib import Path

import pytest

from collapsebench.cli import main
from collapsebench.errors import EXTRAS, UserError
from collapsebench.plugins import import_object

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "configs" / "training" / "sft.yaml"


def test_the_extras_table_is_pyprojects():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        distribution = module.replace("_", "-")
        assert any(req.split(">")[0].split("[")[0].split("=")[0] == distribution for req in extras[extra]), (module, extra)


@pytest.mark.parametrize("argv", [["validate", str(SFT), "--no-backend"], ["validate", str(SFT)],
                                  ["run", str(SFT), "output_dir={out}"],
                                  ["sweep", str(SFT), "--name", "s", "--grid", "seed=[0, 1]", "output_dir={out}"]])
def test_missing_trl_is_one_message(argv, monkeypatch, tmp_path, capfd):
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ModuleNotFoundError
    monkeypatch.chdir(tmp_path)
    code = main([a.format(out=tmp_path / "out") for a in argv])
    err = capfd.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1
    assert "train.trainer: trainer 'sft' needs the module 'trl'" in err and 'pip install -e ".[trl]"' in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_a_missing_executor_backend_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    monkeypatch.delitem(sys.modules, "collapsebench.executors.slurm", raising=False)
    with pytest.raises(UserError, match=r"executor 'slurm' needs the module 'submitit'.*\[slurm\]"):
        import_object("collapsebench.executors.slurm:SlurmExecutor", what="executor 'slurm'")


def test_a_gpu_plugin_is_noted_by_validate_and_refused_by_run(monkeypatch, tmp_path, capfd):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.chdir(tmp_path)
    overrides = ["generate.generator={name: vllm, max_new_tokens: 8}", f"output_dir={tmp_path / 'out'}"]
    assert main(["validate", str(SFT.parent / "losses_tce.yaml"), "--no-backend", *overrides]) == 0
    assert "needs install where it runs" in capfd.readouterr().err
    assert main(["run", str(SFT.parent / "losses_tce.yaml"), *overrides]) == 2
    err = capfd.readouterr().err
    assert "generator 'vllm' needs the module 'vllm'" in err and '".[vllm]"' in err
    assert not (tmp_path / "out").exists()
