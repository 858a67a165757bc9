"""Loading a config: the YAML file, ``a.b=value`` overrides applied to the raw tree before
validation (a bare plug-in name gains keyword arguments; a numeric key is a list index, one past
the end appends), and validation errors that name the key and suggest the closest one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from collapsebench.config.reading import read_text, read_yaml, short
from collapsebench.config.schema import Config, Spec
from collapsebench.errors import UserError, did_you_mean


def _default_at(keys: list[str]) -> Any:
    """The schema's default value at a dotted path (as plain data), or {} when there is none.
    A numeric key steps into the item type of a list field (``train.stages.0.data``)."""
    model: Any = Config
    value: Any = {}
    for key in keys:
        if key.isdigit() and get_origin(model) is list:
            model, value = get_args(model)[0], {}
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
            return {}
        field = model.model_fields[key]
        default = field.get_default(call_default_factory=True)
        value = default.dump() if isinstance(default, Spec) else (
            default.model_dump(mode="json") if isinstance(default, BaseModel) else default)
        model = field.annotation
    return value if isinstance(value, (dict, list)) else {}


def _list_index(node: list[Any], key: str, where: str, dotted: str, *, append: bool) -> int:
    """The position ``key`` names in a list (``append``: one past the end adds an item)."""
    if not key.isdigit():
        raise UserError(f"override '{dotted}': '{where}' is a list; name an item by its index, "
                        f"e.g. '{where}.0'")
    index = int(key)
    if index > len(node) or (index == len(node) and not append):
        raise UserError(f"override '{dotted}': '{where}' has {len(node)} item(s); index {index} is out of range")
    return index


def set_value(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` (mapping keys and list indices, e.g. ``train.stages.0.args.num_train_epochs``) to
    an already-parsed value in a raw config tree; missing mappings are filled from the schema's
    defaults, and a bare plug-in name on the way becomes ``{name: ...}``."""
    keys = dotted.split(".")
    node: Any = tree
    for i, key in enumerate(keys):
        where = ".".join(keys[: i + 1])
        parent = ".".join(keys[:i]) or "<top level>"
        if isinstance(node, list):
            slot: Any = _list_index(node, key, parent, dotted, append=i == len(keys) - 1)
        elif isinstance(node, dict):
            slot = key
        else:
            raise UserError(f"override '{dotted}': '{parent}' is not a mapping")
        if i == len(keys) - 1:
            if isinstance(node, list) and slot == len(node):
                node.append(value)
            else:
                node[slot] = value
            return
        child = node[slot] if isinstance(node, list) else node.get(slot)
        if child is None:
            child = node[slot] = _default_at(keys[: i + 1])
        elif isinstance(child, str):  # a bare plug-in name gaining kwargs
            child = node[slot] = {"name": child}
        elif not isinstance(child, (dict, list)):
            raise UserError(f"override '{dotted}': '{where}' is not a mapping")
        node = child


def _set_override(tree: dict[str, Any], dotted: str, raw: str) -> None:
    set_value(tree, dotted, read_yaml(raw, f"override '{dotted}'"))


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:  # undecodable bytes in the command line arrive as surrogates
            raise UserError(f"override {short(item)}: not UTF-8 text (character {exc.start})") from None
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"override '{item}' is not of the form key.sub=value")
        out.append((key.strip(), value))
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the sub-model at ``loc`` (for did-you-mean on unknown keys)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        current = ann if isinstance(ann, type) else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "Spec"))))
        key = ".".join(str(p) for p in loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _fields_at(Config, loc[:-1]))
            lines.append(f"unknown key '{key}'{hint}")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            lines.append(f"'{key}': {err['msg']} (got {short(err.get('input'))})")
    return f"{source}: invalid config\n  " + "\n  ".join(dict.fromkeys(lines))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None


def load_raw(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The YAML file as plain data with the overrides applied (``a.b=value``, values parsed as
    YAML) and ``config_dir`` set, before validation."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    raw = read_yaml(read_text(path), str(path)) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    for key, value in parse_overrides(overrides or []):
        _set_override(raw, key, value)
    raw.setdefault("config_dir", str(path.resolve().parent))
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML file, apply overrides (``a.b=value``, values parsed as YAML), validate."""
    return config_from_dict(load_raw(path, overrides), str(path))
