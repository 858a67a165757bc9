import pytest

from collapsebench.errors import UserError
from collapsebench.registry import ALL, Registry, regimes, trainers


def test_decorator_lazy_and_module_function():
    reg = Registry("thing", skip=1)

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
    reg = Registry("thing", skip=0)
    with pytest.raises(UserError, match="module 'no_such_module_xyz' not found"):
        reg.get("no_such_module_xyz:fn")
    with pytest.raises(UserError, match="has no attribute 'nope'"):
        reg.get("os.path:nope")
    for bad in (".relative:fn", ":fn", "a..b:fn"):
        with pytest.raises(UserError, match="not of the form"):
            reg.get(bad)


def test_check_kwargs_names_argument():
    reg = Registry("thing", skip=3)

    @reg.register()
    def f(ctx, real, synthetic, alpha=1.0, size=None):
        return None

    reg.check_kwargs("f", {"alpha": 0.5}, key="curate.regime")
    with pytest.raises(UserError, match="takes no argument 'alpah'.*did you mean 'alpha'"):
        reg.check_kwargs("f", {"alpah": 0.5}, key="curate.regime")

    one = Registry("thing", skip=1)

    @one.register()
    def g(ctx, path):
        return None

    with pytest.raises(UserError, match="needs argument.*path"):
        one.check_kwargs("g", {}, key="data.source")


def test_arguments_are_type_checked_from_the_signature():
    """Annotations are the contract: wrong types, non-finite numbers and declared domains fail with
    the key, before the plug-in runs; accepted values reach the plug-in as the annotation says."""
    from typing import Annotated

    from pydantic import Field

    reg = Registry("thing", skip=1)
    seen = {}

    @reg.register()
    def h(ctx, alpha: Annotated[float, Field(ge=0, le=1)] = 1.0, n: int = 3, names: tuple[str, ...] = ()):
        seen.update(alpha=alpha, n=n, names=names)
        return alpha

    assert reg.check_kwargs("h", {"alpha": 1, "names": ["a"]}, key="x") == {"alpha": 1.0, "names": ("a",)}
    for bad, pattern in (({"alpha": float("nan")}, "x.alpha: .*finite"), ({"alpha": 1.5}, "x.alpha: .*less than"),
                         ({"alpha": [0.5]}, "x.alpha: .*valid number"), ({"n": 2.5}, "x.n: .*fractional")):
        with pytest.raises(UserError, match=pattern):
            reg.check_kwargs("h", bad, key="x")
    assert reg.call("h", None, key="x", kwargs={"alpha": 0, "n": 4}) == 0.0
    assert seen == {"alpha": 0.0, "n": 4, "names": ()}


def test_a_builtin_name_is_not_replaced_silently():
    with pytest.raises(UserError, match="'replace' is a built-in.*override=True"):
        @regimes.register("replace")
        def my_replace(ctx, real, synthetic):
            return real

    reg = Registry("thing", skip=0)
    reg.register("f")(len)
    reg.register("f")(len)  # the same object again (a re-imported plug-in file) is fine
    with pytest.raises(UserError, match="already registered"):
        reg.register("f")(abs)
    reg.register("f", override=True)(abs)
    assert reg.get("f") is abs


def test_describe_reads_summaries_and_arguments_without_importing():
    desc = trainers.describe("causal_lm")
    assert desc.summary.startswith("Train M(k) on D(k)")
    names = [a.name for a in desc.arguments]
    assert names[:2] == ["block_size", "args"] and "init_from" in names
    block = next(a for a in desc.arguments if a.name == "block_size")
    assert (block.annotation, block.default) == ("int", "128")
    assert trainers.entry("causal_lm").torch and not trainers.entry("gaussian_mle").torch


def test_every_builtin_entry_resolves_and_describes_itself():
    for reg in ALL.values():
        for name in reg.names():
            if not reg.entry(name).builtin:
                continue  # plug-ins other tests registered
            assert callable(reg.get(name)), (reg.kind, name)
            assert reg.describe(name).summary, (reg.kind, name)
