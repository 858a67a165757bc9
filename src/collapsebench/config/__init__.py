"""The experiment config: the schema (:mod:`.schema`), reading YAML safely (:mod:`.reading`), loading
with ``a.b=value`` overrides (:mod:`.loading`) and the steps' fingerprints (:mod:`.fingerprint`).

Everything is importable from here, as ``from collapsebench.config import Config, load_config``.
A run's step fingerprints need the plug-ins' declarations: :func:`collapsebench.registry.fingerprints`.
"""

from collapsebench.config.fingerprint import NOT_RESULTS, chain, identity
from collapsebench.config.loading import (
    config_from_dict,
    format_validation_error,
    load_config,
    load_raw,
    parse_overrides,
    set_value,
)
from collapsebench.config.reading import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_NODES,
    YamlLoader,
    expanded_size,
    read_text,
    read_yaml,
    short,
    value_at,
)
from collapsebench.config.schema import (
    PHASES,
    Config,
    CurateConfig,
    DataConfig,
    EvaluateConfig,
    FailureRule,
    GenerateConfig,
    ModelConfig,
    PhaseResources,
    PrepareStep,
    Spec,
    StageConfig,
    StageData,
    Strict,
    SweepConfig,
    TokenizerConfig,
    TrainConfig,
    json_schema,
)

__all__ = [
    "MAX_CONFIG_BYTES", "MAX_CONFIG_NODES", "NOT_RESULTS", "PHASES", "Config", "CurateConfig", "DataConfig",
    "EvaluateConfig", "FailureRule", "GenerateConfig", "ModelConfig", "PhaseResources", "PrepareStep", "Spec", "StageConfig",
    "StageData", "Strict", "SweepConfig", "TokenizerConfig", "TrainConfig", "YamlLoader", "config_from_dict",
    "expanded_size", "chain", "format_validation_error", "identity", "json_schema",
    "load_config", "load_raw", "parse_overrides", "read_text", "read_yaml", "set_value", "short", "value_at",
]
