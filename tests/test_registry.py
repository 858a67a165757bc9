import pytest

from collapsebench.errors import UserError
from collapsebench.registry import ALL, Registry, regimes


def test_decorator_lazy_and_module_function():
    reg = Registry("thing")

    @reg.register("double")
    def double(ctx, x=1):
        return 2 * x

    reg.lazy("join", "os.path:join")
    assert reg.names() == ["double", "join"]
    assert reg.get("double")(None, x=4) == 8
    assert reg.get("join")("a", "b") == "a/b"
    assert reg.get("os.path:basename")("/x/y.txt") == "y.txt"


def test_unknown_name_suggests_closest():
    with pytest.raises(UserError) as err:
        regimes.get("acumulate", key="curate.regime")
    text = str(err.value)
    assert "curate.regime" in text and "did you mean 'accumulate'" in text and "replace" in text


def test_bad_module_function_is_user_error():
    reg = Registry("thing")
    with pytest.raises(UserError, match="module 'no_such_module_xyz' not found"):
        reg.get("no_such_module_xyz:fn")
    with pytest.raises(UserError, match="has no attribute 'nope'"):
        reg.get("os.path:nope")


def test_check_kwargs_names_argument():
    reg = Registry("thing")

    @reg.register()
    def f(ctx, real, synthetic, alpha=1.0, size=None):
        return None

    reg.check_kwargs("f", {"alpha": 0.5}, key="curate.regime", skip=3)
    with pytest.raises(UserError, match="takes no argument 'alpah'.*did you mean 'alpha'"):
        reg.check_kwargs("f", {"alpah": 0.5}, key="curate.regime", skip=3)

    @reg.register()
    def g(ctx, path):
        return None

    with pytest.raises(UserError, match="needs argument.*path"):
        reg.check_kwargs("g", {}, key="data.source", skip=1)


def test_every_builtin_entry_resolves():
    for reg in ALL.values():
        for name in reg.names():
            assert callable(reg.get(name)), (reg.kind, name)
