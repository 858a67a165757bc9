"""The cells of a sweep: a base config times the axes of a grid, less the excluded combinations.

An axis is a config key (a dotted path, list indices included: ``train.stages.0.args.lr``) and its
values (any YAML, whole blocks included: ``curate.regime=[{name: replace, alpha: 0.5}, {name:
accumulate}]``). ``grid`` axes multiply; the keys of one ``zip`` mapping step together (one axis);
an ``exclude`` entry drops every cell whose resolved config matches all its ``key: value`` pairs.
A conditional value (accumulate has no alpha) is one whole-block value, not a product.

Each cell's id is the digest of everything in its config that decides its results
(:func:`collapsebench.config.identity`), so the same cell gets the same folder whatever the order
or extent of the axes, adding a value adds only new cells, and two value combinations that resolve
to the same config are one cell.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from collapsebench.config import Config, SweepConfig, config_from_dict, identity, read_yaml, set_value, value_at
from collapsebench.errors import UserError
from collapsebench.plugins import load_plugins
from collapsebench.registry import declared, hook, regimes

Axis = tuple[tuple[str, ...], list[tuple[Any, ...]]]  # keys stepped together, and their rows of values


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``label`` names it without its seed: the cell's seeds are replicates and
    share a label; ``baseline_of`` is the label of the cell this one is the clean baseline of."""

    id: str
    dir: str
    values: dict[str, Any]
    label: str
    seed: int
    iterations: int
    baseline_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ the command line

def parse_axis(item: str, option: str) -> tuple[str, list[Any]]:
    """``KEY=[v1, v2]`` (a YAML list) from ``--grid`` or ``--zip``."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{option} '{item}' is not of the form KEY=[v1, v2, ...]")
    try:
        values = read_yaml(raw)
    except Exception as exc:  # yaml.YAMLError
        raise UserError(f"{option} '{item}': the values are not valid YAML: {exc}") from None
    if not isinstance(values, list) or not values:
        raise UserError(f"{option} '{item}': the values must be a non-empty YAML list, e.g. {key.strip()}=[0.5, 1.0]")
    return key.strip(), values


_NEXT_PAIR = re.compile(r",\s*(?=[A-Za-z_][\w.]*\s*=)")


def parse_exclude(item: str) -> dict[str, Any]:
    """``KEY=VALUE[,KEY=VALUE...]`` from ``--exclude`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in _NEXT_PAIR.split(item):
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--exclude '{item}' is not of the form KEY=VALUE[,KEY=VALUE...]")
        out[key.strip()] = read_yaml(raw)
    return out


def spec_from_options(block: SweepConfig | None, grid: list[str], zips: list[str], exclude: list[str],
                      baselines: str | None, name: str | None) -> SweepConfig:
    """The config's ``sweep:`` block, extended by the command line's axes and options."""
    spec = (block or SweepConfig()).model_copy(deep=True)
    for item in grid:
        key, values = parse_axis(item, "--grid")
        spec.grid[key] = values
    if zips:
        group = dict(parse_axis(item, "--zip") for item in zips)
        spec.zip = [*zip_groups(spec), group]
    spec.exclude = [*spec.exclude, *(parse_exclude(item) for item in exclude)]
    if baselines is not None:
        if baselines != "clean":
            raise UserError(f"--baselines: only 'clean' is known, got '{baselines}'")
        spec.baselines = "clean"
    if name is not None:
        spec.name = name
    return spec


# ------------------------------------------------------------------------------------ expansion

def zip_groups(spec: SweepConfig) -> list[dict[str, list[Any]]]:
    return list(spec.zip) if isinstance(spec.zip, list) else ([spec.zip] if spec.zip else [])


def axes(spec: SweepConfig) -> list[Axis]:
    """The grid's axes in order: each ``grid`` key, then each ``zip`` group."""
    out: list[Axis] = [((key,), [(v,) for v in values]) for key, values in spec.grid.items()]
    for group in zip_groups(spec):
        lengths = {key: len(values) for key, values in group.items()}
        if len(set(lengths.values())) > 1:
            raise UserError(f"sweep zip: the zipped keys need lists of one length, got {lengths}")
        out.append((tuple(group), list(zip(*group.values()))))
    keys = [k for ks, _ in out for k in ks]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise UserError(f"sweep: {', '.join(repeated)} is an axis twice (in grid and zip, or in two zips)")
    if not out:
        raise UserError("sweep: no axes; give --grid KEY=[v1, v2] (or a sweep.grid block in the config)")
    return out


def _matches(dumped: dict[str, Any], pattern: dict[str, Any]) -> bool:
    for key, wanted in pattern.items():
        try:
            if value_at(dumped, key) != wanted:
                return False
        except KeyError:
            return False
    return True


def _format(value: Any) -> str:
    if isinstance(value, dict):
        rest = " ".join(f"{k}={_format(v)}" for k, v in value.items() if k != "name")
        return " ".join(p for p in (str(value.get("name", "")), rest) if p)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key by its last component, or by more of it where two keys would read the same."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if sum(1 for other in keys if other.split(".")[-n:] == parts[-n:]) == 1:
                break
        out[key] = name
    return out


def label_of(values: dict[str, Any], names: dict[str, str], fallback: str) -> str:
    """The cell's values without its seed, as people read them: ``replace alpha=0.5``."""
    parts = []
    for key, value in values.items():
        if key == "seed":
            continue
        text = _format(value)
        parts.append(text if isinstance(value, dict) else f"{names.get(key, key)}={text}")
    return " ".join(parts) or fallback


def _slug(values: dict[str, Any], names: dict[str, str]) -> str:
    text = "_".join(f"{names.get(k, k)}-{_format(v)}" if not isinstance(v, dict) else _format(v)
                    for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60] or "cell"


def cell_raw(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The base config (plain data) with a cell's values set; no sweep block."""
    raw = copy.deepcopy(base)
    raw.pop("sweep", None)
    for key, value in values.items():
        set_value(raw, key, copy.deepcopy(value))
    return raw


def _make_cell(base: dict[str, Any], values: dict[str, Any], names: dict[str, str],
               baseline_of: str | None = None) -> tuple[Cell, Config]:
    label = label_of(values, names, str(base.get("name", "cell")))
    config = config_from_dict(cell_raw(base, values), f"sweep cell '{label}'")
    cid = identity(config)
    if baseline_of is not None:
        label = f"{baseline_of} [clean]"
    return Cell(cid, f"{_slug(values, names)}-{cid[:8]}", values, label, config.seed, config.iterations,
                baseline_of), config


def _clean_baseline(config: Config) -> tuple[dict[str, Any] | None, str | None]:
    """(the values that make a cell's clean baseline, or why it has none): what the cell's regime
    declares (its ``baseline`` hook: replace(alpha) switches to clean_fraction for 0 < alpha < 1);
    a regime that declares none has none."""
    load_plugins(config)
    regime = config.curate.regime
    entry = declared(regimes, regime.name)
    if entry is None or entry.baseline is None:
        return None, None
    values, why = hook(entry.baseline)(regimes.bind(regime.name, regime.kwargs, key="curate.regime"))
    return values, why


def expand(base: dict[str, Any], spec: SweepConfig) -> tuple[list[Cell], list[str]]:
    """The cells of the grid in order (first axis slowest), and notes for the user."""
    grid = axes(spec)
    names = short_names([k for keys, _ in grid for k in keys])
    cells: dict[str, Cell] = {}
    notes: list[str] = []
    for combo in itertools.product(*(rows for _, rows in grid)):
        values = {k: v for (keys, _), row in zip(grid, combo) for k, v in zip(keys, row)}
        cell, config = _make_cell(base, values, names)
        if any(_matches(config.dump(), pattern) for pattern in spec.exclude):
            continue
        if cell.id in cells:
            notes.append(f"'{cell.label}' (seed {cell.seed}) resolves to the same config as "
                         f"'{cells[cell.id].label}' (seed {cells[cell.id].seed}): one cell")
            continue
        cells[cell.id] = cell
        if spec.baselines == "clean":
            wanted, why = _clean_baseline(config)
            if why and why not in notes:
                notes.append(why)
            if wanted:
                clean, _ = _make_cell(base, {**values, **wanted}, names, cell.label)
                cells.setdefault(clean.id, clean)
    return list(cells.values()), notes
