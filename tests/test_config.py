import json

import pytest

from collapsebench.config import Spec, config_from_dict, json_schema, load_config
from collapsebench.errors import UserError
from conftest import tiny_config, write_config


def test_unknown_key_is_named_with_suggestion(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["generate"]["num_sampels"] = 10
    with pytest.raises(UserError) as err:
        config_from_dict(cfg, "exp.yaml")
    assert "generate.num_sampels" in str(err.value)
    assert "did you mean 'num_samples'" in str(err.value)


def test_unknown_top_level_key(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["iteratons"] = 3
    with pytest.raises(UserError, match="unknown key 'iteratons'.*did you mean 'iterations'"):
        config_from_dict(cfg)


def test_bad_value_names_key(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["iterations"] = 0
    with pytest.raises(UserError, match="'iterations'"):
        config_from_dict(cfg)


def test_overrides_parse_yaml_and_reach_plugin_kwargs(tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path))
    config = load_config(path, ["iterations=7", "curate.regime.alpha=0.25", "generate.prompts.tokens=5",
                                "train.trainer.args.learning_rate=1e-3", "data.holdout=0.2"])
    assert config.iterations == 7
    assert config.curate.regime.kwargs["alpha"] == 0.25
    # a bare plug-in name gains keyword arguments through an override
    assert config.generate.prompts == Spec(name="unconditional", tokens=5)
    assert config.train.trainer.kwargs["args"]["learning_rate"] == 1e-3
    assert config.data.holdout == 0.2


def test_override_errors(tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path))
    with pytest.raises(UserError, match="key.sub=value"):
        load_config(path, ["iterations"])
    with pytest.raises(UserError, match="'iterations' is not a mapping"):
        load_config(path, ["iterations.x=1"])
    with pytest.raises(UserError, match="unknown key 'modle'"):
        load_config(path, ["modle.init=base"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(bad)


def test_plugin_spec_forms_and_relative_paths(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["curate"] = {"regime": "accumulate"}
    path = write_config(tmp_path, cfg)
    config = load_config(path)
    assert config.curate.regime.name == "accumulate" and config.curate.regime.kwargs == {}
    assert config.resolve_path("data/x.txt") == tmp_path / "data" / "x.txt"
    assert config.run_dir() == (tmp_path / "run").resolve()


def test_base_init_needs_base(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["model"]["init"] = "base"
    with pytest.raises(UserError, match="model.base"):
        config_from_dict(cfg)


def test_executor_mapping_is_checked(tmp_path):
    cfg = tiny_config(tmp_path, executor={"train": "subprocess"})
    assert config_from_dict(cfg).executor_for("train").name == "subprocess"
    assert config_from_dict(cfg).executor_for("generate").name == "inline"
    with pytest.raises(UserError, match="phases"):
        config_from_dict(tiny_config(tmp_path, executor={"trian": "subprocess"}))


def test_json_schema_lists_sections():
    schema = json_schema()
    json.dumps(schema)
    for key in ("name", "output_dir", "seed", "iterations", "plugins", "data", "model", "curate", "train",
                "generate", "evaluate"):
        assert key in schema["properties"], key
    assert schema["additionalProperties"] is False
