"""The generic registry, :class:`Registry`, its entries and what a plug-in declares.

Entries are added with a decorator (``@trainers.register("name")``) or lazily as a
``"module:attr"`` string, so heavy backends are imported only when chosen; anywhere a name is
accepted, ``module:function`` works too. Each entry carries what its plug-in declares
(:class:`Declarations`): whether it needs torch or a GPU, the data and model it works on, and the
hooks through which the framework asks it what only it knows (what a regime draws from the
samples, which of its arguments leave iteration 1 alone, what ``plan`` should estimate, an
evaluation's headline metrics, ...). Its summary and arguments are read from the source without
importing it, so ``collapsebench ls`` stays light.

Arguments are bound and type-checked against the plug-in's signature (annotations through
pydantic; ``Annotated[float, Field(ge=0, le=1)]`` declares a domain), once, by :meth:`Registry.call`
and :meth:`Registry.check_kwargs`: ``validate`` and ``run`` share that path; :meth:`Registry.bind`
adds the signature's defaults for the declared hooks. The protocols each registry holds are in
:mod:`collapsebench.api`. Over 300 lines: the entry, the registry and the description of a plug-in
from its source belong together (one reads the other's fields).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar, Unpack, cast

from pydantic import ConfigDict, TypeAdapter, ValidationError

from collapsebench.errors import UserError, did_you_mean
from collapsebench.plugins import import_object

T = TypeVar("T")

_ADAPTER_CONFIG = ConfigDict(allow_inf_nan=False, arbitrary_types_allowed=True)


class Declarations(TypedDict, total=False):
    """What a plug-in declares when it registers (keyword arguments of :meth:`Registry.register` and
    :meth:`Registry.lazy`), so the framework treats a user's plug-in exactly as a built-in that
    declares the same: it never tests a plug-in's name. A hook is a ``"module:function"`` string,
    imported only when it is needed, so ``ls``, ``validate`` and ``plan`` stay light. docs/plugins.md
    gives each contract."""

    torch: bool  # imports torch when called
    gpu: bool  # needs a CUDA device
    check: str  # "module:function(config, kwargs)" building the backend's argument objects (validate)
    preflight: str  # "module:function(config, kwargs) -> [names to download]": inputs, no torch
    data: str  # "text" or "vector": the data it works on (unset: any)
    model: str  # trainers: the kind of model made; others: the kind needed (unset: any)
    plan: str  # data sources: "module:function(config, kwargs, chars_per_token) -> (documents, tokens
    #            per document, how)"; regimes: "module:function(kwargs, real, samples, k) -> rows of D(k)"
    size_arg: str  # data sources: the argument that sets how many documents it makes
    finite: bool  # prompt sources: a fixed set of prompts (their count is the default target)
    pool: str  # validators: "module:function(ctx, scores, **kw)" deciding over a round's pool
    needs: str  # regimes: "module:function(kwargs, real, k) -> (unit, amount) | None": what it draws from S(k-1)
    mix_args: tuple[str, ...]  # regimes: arguments that leave iteration 1's data alone (out of its fingerprint)
    parts: str  # regimes: "module:function(real, kwargs, iterations, key) -> (part of each row, part names)"
    baseline: str  # regimes: "module:function(kwargs) -> (values of the clean baseline cell | None, note | None)"
    token_ids: str  # trainers: "module:function" encoding documents to the token ids it reads (curate caches them)
    chat: str  # trainers: "module:function(kwargs) -> bool": whether it trains on chat turns
    plugin_args: dict[str, str]  # arguments that are plug-in choices of their own: argument -> registry
    headline: tuple[str, ...]  # evaluations: the metrics that say first how a run is going
    scores: tuple[str, ...]  # evaluations: "holdout" and/or "samples": the model passes it makes (plan)
    reference: str  # evaluations: the argument naming the iteration whose model scores every S(k)
    backends: tuple[str, ...]  # optional modules it imports where it runs that its source does not show (workers)
    batched: bool  # works on in-memory ArrowRows: a run made of such plug-ins may be batched (collapsebench.batch)


@dataclass
class Entry(Generic[T]):
    """A registered plug-in and what it declares (:class:`Declarations`)."""

    name: str
    target: str | T  # "module:attr" until first use, then the object
    torch: bool = False
    gpu: bool = False
    check: str | None = None
    preflight: str | None = None
    data: str | None = None
    model: str | None = None
    plan: str | None = None
    size_arg: str | None = None
    finite: bool = False
    pool: str | None = None
    needs: str | None = None
    mix_args: tuple[str, ...] = ()
    parts: str | None = None
    baseline: str | None = None
    token_ids: str | None = None
    chat: str | None = None
    plugin_args: dict[str, str] = field(default_factory=dict)
    headline: tuple[str, ...] = ()
    scores: tuple[str, ...] = ()
    reference: str | None = None
    backends: tuple[str, ...] = ()
    batched: bool = False
    builtin: bool = False

    @property
    def location(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{getattr(self.target, '__module__', '?')}:{getattr(self.target, '__qualname__', self.name)}"


@dataclass(frozen=True)
class Argument:
    name: str
    annotation: str
    default: str | None  # None: required


@dataclass(frozen=True)
class Description:
    summary: str
    arguments: tuple[Argument, ...] = field(default_factory=tuple)


class Registry(Generic[T]):
    """Named plug-ins of one kind. ``skip``: positional arguments each plug-in receives before its
    keyword arguments (the phase context, datasets, ...), left out of argument checks."""

    def __init__(self, kind: str, *, skip: int):
        self.kind = kind
        self.skip = skip
        self._entries: dict[str, Entry[T]] = {}

    # ------------------------------------------------------------------------------ registration
    def register(self, name: str | None = None, *, override: bool = False,
                 **declared: Unpack[Declarations]) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name", <declarations>)`` (default name: the function's).

        A name that is taken (a built-in included) is refused unless ``override=True``."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"{self.kind}: give a name to register {obj!r}")
            self._add(Entry(key, obj, **declared), override)
            return obj

        return deco

    def lazy(self, name: str, target: str, **declared: Unpack[Declarations]) -> None:
        """Register ``"module:attr"`` under ``name`` without importing it (the built-ins)."""
        self._add(Entry(name, target, builtin=True, **declared), False)

    def _add(self, entry: Entry[T], override: bool) -> None:
        old = self._entries.get(entry.name)
        if old is not None and not override and old.location != entry.location:
            origin = "a built-in" if old.builtin else "already registered"
            raise UserError(f"{self.kind} '{entry.name}' is {origin} ({old.location}); register yours under "
                            f"another name, or with override=True to replace it")
        self._entries[entry.name] = entry

    # ------------------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or ":" in name

    def entry(self, name: str, *, key: str | None = None) -> Entry[T]:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return Entry(name, name)
        where = f" at '{key}'" if key else ""
        raise UserError(f"unknown {self.kind} '{name}'{where}{did_you_mean(name, self._entries)}; "
                        f"known: {', '.join(self.names()) or 'none'}")

    def target(self, name: str) -> str:
        """Where an entry lives, as ``module:attr`` (without importing lazy entries)."""
        return self.entry(name).location

    def get(self, name: str, *, key: str | None = None) -> T:
        """Resolve a name (or ``module:function``) to the plug-in. ``key`` names the config key."""
        entry = self.entry(name, key=key)
        where = f" at '{key}'" if key else ""
        if isinstance(entry.target, str):
            obj = import_object(entry.target, what=f"{self.kind} '{name}'{where}")
            if name in self._entries:
                entry.target = obj
        else:
            obj = entry.target
        if not callable(obj):
            raise UserError(f"{self.kind} '{name}'{where} is not callable")
        return cast(T, obj)

    # ------------------------------------------------------------------------------ arguments
    def _parameters(self, name: str, key: str) -> tuple[Any, list[inspect.Parameter]]:
        fn: Callable[..., Any] = cast(Callable[..., Any], self.get(name, key=key))
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            raise UserError(f"{key}: {self.kind} '{name}' has no signature to check its arguments against") from None
        params = [p for p in signature.parameters.values() if p.name != "self"]
        return fn, params[self.skip:]

    def check_kwargs(self, name: str, kwargs: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Bind ``kwargs`` to the plug-in's keyword parameters and validate them against their
        annotations; return them as the plug-in will receive them. Raise a UserError naming ``key``."""
        fn, params = self._parameters(name, key)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            for arg in kwargs:
                if arg not in accepted:
                    raise UserError(f"{key}: {self.kind} '{name}' takes no argument '{arg}'"
                                    f"{did_you_mean(arg, accepted)}; it takes: {', '.join(accepted) or 'none'}")
        missing = [p.name for p in params if p.default is p.empty
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
        if missing:
            raise UserError(f"{key}: {self.kind} '{name}' needs argument(s): {', '.join(missing)}")
        by_name = {p.name: p for p in params}
        out = dict(kwargs)
        for arg, value in kwargs.items():
            param = by_name.get(arg)
            adapter = _adapter(fn, param) if param is not None else None
            if adapter is None:
                continue
            try:
                out[arg] = adapter.validate_python(value)
            except ValidationError as exc:
                problem = "; ".join(e["msg"] for e in exc.errors()[:3])
                raise UserError(f"{key}.{arg}: {problem} (got {_short(value)})") from None
        return out

    def call(self, name: str, *args: Any, key: str, kwargs: dict[str, Any]) -> Any:
        """Call the plug-in with its positional arguments and its checked keyword arguments."""
        checked = self.check_kwargs(name, kwargs, key=key)
        return cast(Callable[..., Any], self.get(name, key=key))(*args, **checked)

    def bind(self, name: str, kwargs: dict[str, Any], *, key: str) -> dict[str, Any]:
        """The checked keyword arguments with the signature's defaults filled in: what a declared hook
        reads, so it never repeats a plug-in's defaults."""
        checked = self.check_kwargs(name, kwargs, key=key)
        _, params = self._parameters(name, key)
        defaults = {p.name: p.default for p in params
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}
        return {**defaults, **checked}

    # ------------------------------------------------------------------------------ description
    def describe(self, name: str) -> Description:
        """Summary and arguments, read from the source when the entry is not imported yet."""
        entry = self.entry(name)
        if isinstance(entry.target, str):
            described = _describe_source(entry.target, self.skip)
            if described is not None:
                return described
        obj = cast(Callable[..., Any], self.get(name))
        doc = inspect.getdoc(obj) or ""
        try:
            params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"][self.skip:]
        except (TypeError, ValueError):
            params = []
        args = tuple(Argument(p.name, str(p.annotation) if p.annotation is not p.empty else "",
                              None if p.default is p.empty else repr(p.default))
                     for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        return Description(_first_sentence(doc), args)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.lru_cache(maxsize=1024)
def _adapter(fn: Any, param: inspect.Parameter) -> TypeAdapter[Any] | None:
    """A pydantic adapter for a parameter's annotation (string annotations evaluated in the
    plug-in's module); None when there is none or it names something only a type checker sees.
    Built once per plug-in parameter: building one costs about a millisecond, a toy step less."""
    annotation = param.annotation
    if annotation is param.empty:
        return None
    if isinstance(annotation, str):
        namespace = getattr(inspect.unwrap(fn), "__globals__", None)
        if namespace is None:  # a class: its __init__'s module
            namespace = getattr(getattr(fn, "__init__", None), "__globals__", {})
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - the plug-in's own annotation
        except Exception:  # a name imported only under TYPE_CHECKING: nothing to check against
            return None
    try:
        return TypeAdapter(annotation, config=_ADAPTER_CONFIG)
    except Exception:  # a type pydantic cannot build a schema for (an arbitrary class)
        return None


def _first_sentence(doc: str) -> str:
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return re.split(r"(?<=[a-z)`])\.\s+(?=[A-Z])", first)[0].rstrip(".") if first else ""


def _describe_source(target: str, skip: int) -> Description | None:
    """Parse the module's source (no import) and describe ``attr``: a function or a class."""
    module_name, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == attr), None)
    if node is None:
        return None
    doc = ast.get_docstring(node) or ""
    fn = node
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            return Description(_first_sentence(doc))
        fn = init
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    if positional and positional[0].arg == "self":
        positional = positional[1:]
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults))[skip:] + list(zip(a.kwonlyargs, a.kw_defaults))
    args = tuple(Argument(arg.arg, ast.unparse(arg.annotation) if arg.annotation else "",
                          None if default is None else ast.unparse(default)) for arg, default in pairs)
    return Description(_first_sentence(doc), args)
