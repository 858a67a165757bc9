"""Every shipped config validates, and starts with a comment giving its command."""


import pytest

from collapsebench.config import load_config
from collapsebench.validate import check_backends, validate_config
from conftest import REPO

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert (REPO / "configs" / "quickstart.yaml") in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_shipped_config_validates(path):
    first = path.read_text().splitlines()[0]
    rel = path.relative_to(REPO)
    assert first.startswith("# collapsebench ") and str(rel) in first, f"{rel} must start with its command"
    config = load_config(path)
    source = config.data.source
    if source.name == "local" and not config.resolve_path(source.kwargs["path"]).exists():
        pytest.skip(f"{rel} reads data that is not here: {source.kwargs['path']}")
    report = validate_config(config)
    for name in report.downloads:  # paper-scale configs name hub models: reported, not failed
        assert name in (config.model.base, config.model.tokenizer.path) or "/" in name
    check_backends(config)
