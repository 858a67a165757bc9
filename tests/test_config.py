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


def test_overrides_reach_list_items_and_whole_blocks(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["train"]["stages"] = [{"name": "a"}, {"name": "b", "args": {"num_train_epochs": 1}}]
    cfg["evaluate"]["evaluations"] = ["perplexity", {"name": "sample_stats"}]
    path = write_config(tmp_path, cfg)
    config = load_config(path, ["train.stages.0.args.num_train_epochs=2", "train.stages.1.data.part=[1, 2]",
                                "evaluate.evaluations.0.batch_size=4",  # a bare name in a list gains kwargs
                                "curate.regime={name: accumulate}", "train.stages.2={name: c}"])  # one past the end: append
    assert config.train.stages[0].args == {"num_train_epochs": 2}
    assert config.train.stages[1].data.part == (1, 2) and config.train.stages[1].args == {"num_train_epochs": 1}
    assert [s.name for s in config.train.stages] == ["a", "b", "c"]
    assert config.evaluate.evaluations[0] == Spec(name="perplexity", batch_size=4)
    assert config.curate.regime == Spec(name="accumulate")
    with pytest.raises(UserError, match="'train.stages' has 2 item"):
        load_config(path, ["train.stages.5.args.x=1"])
    with pytest.raises(UserError, match="name an item by its index"):
        load_config(path, ["evaluate.evaluations.batch_size=4"])
    # a list the file does not have starts from the schema's default (empty): index 0 is out of range
    with pytest.raises(UserError, match="'generate.validators' has 0 item"):
        load_config(path, ["generate.validators.0.name=x"])


def test_alpha_is_not_in_the_first_iteration(tmp_path):
    """There is nothing to mix before iteration 1 has generated: D(1) and M(1) do not depend on alpha,
    and S(1) does not when generate.num_samples fixes it; left unset, S(1)'s size follows what the
    regime will draw (alpha x the real data's tokens), so each alpha generates its own."""
    from collapsebench.registry import fingerprints

    path = write_config(tmp_path, tiny_config(tmp_path))
    a, b = (fingerprints(load_config(path, [f"curate.regime.alpha={x}", "generate.num_samples=50"])) for x in (0.25, 0.75))
    assert [k for k in a if a[k] == b[k]] == ["0.curate", "1.curate", "1.train", "1.generate", "1.evaluate"]
    a, b = (fingerprints(load_config(path, [f"curate.regime.alpha={x}", "generate.num_samples=null"])) for x in (0.25, 0.75))
    assert [k for k in a if a[k] == b[k]] == ["0.curate", "1.curate", "1.train"]
    c = fingerprints(load_config(path, ["curate.regime={name: replace, alpha: 0.25, size: 10}"]))
    assert c["1.curate"] != a["1.curate"]  # any other argument counts


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
