"""The run's journal, ``state.json``, as typed records: the only module that reads or writes it.

The journal records, per step (``"<iteration>.<phase>"``), what the driver saw: status, times, seed,
fingerprint, executor, attempts, the summary of the step's stats, an error, where a shared step
came from; and, at the top, the run's name, creation time and the last evaluation of its failure
rules. It is a record for people and tools (``status``, reports, sweeps), not the proof of work:
a committed folder proves its step finished, and the driver repairs the journal from those.

The file keeps its version-1 layout byte for byte: the top-level keys sorted on one line, then one
step per line with its keys sorted, JSON's C encoder throughout. Reading then writing a journal
gives the same bytes: a key the records do not know is kept (``extra``), and a known key written as
``null`` is written as ``null`` again (``nulls``), while a key never written stays absent.

Over 300 lines because every record of the file is here, with the round trip they share: the point
of the module is that nothing else knows the file's keys.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from collapsebench.errors import UserError

VERSION = 1
R = TypeVar("R", bound="_Record")
_NAMES: dict[type, frozenset[str]] = {}  # each record class's field names
_BOOKKEEPING = frozenset({"extra", "nulls", "lines"})  # attributes that are not keys of the file


def now() -> float:
    return round(time.time(), 3)


@dataclass
class _Record:
    """Round-trip bookkeeping shared by the records: unknown keys, and known keys present as null."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)
    nulls: set[str] = field(default_factory=set, repr=False, compare=False, kw_only=True)
    ALWAYS: ClassVar[frozenset[str]] = frozenset()  # keys written even when None

    @classmethod
    def _names(cls) -> frozenset[str]:
        names = _NAMES.get(cls)
        if names is None:  # once per class: dataclasses.fields() is slow, and a journal has thousands of records
            names = _NAMES[cls] = frozenset(f.name for f in fields(cls) if f.name not in _BOOKKEEPING)
        return names

    @classmethod
    def _split(cls, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
        names = cls._names()
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in data.items():
            (known if k in names else extra)[k] = v
        return known, extra, {k for k, v in known.items() if v is None}

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        known, extra, nulls = cls._split(data)
        return cls(**cls._nested(known), extra=extra, nulls=nulls)

    @classmethod
    def _nested(cls, known: dict[str, Any]) -> dict[str, Any]:
        """The known values with nested records read into their classes."""
        return known

    def to_json(self) -> dict[str, Any]:
        out = {}
        for name, value in vars(self).items():
            if name in _BOOKKEEPING:
                continue
            if value is not None:
                out[name] = value.to_json() if isinstance(value, _Record) else value
            elif name in self.ALWAYS or name in self.nulls:
                out[name] = None
        out.update(self.extra)
        return out


@dataclass
class StepSummary(_Record):
    """What the journal keeps of a step's ``stats.json``: the keys the framework reads from a
    plug-in's stats (``metrics``, headline numbers of the phase; ``seconds`` of work; where a
    trainer resumed and started from; how many generation shards were resumed)."""

    metrics: dict[str, Any] | None = None
    seconds: float | None = None
    resumed_from: str | None = None
    shards_resumed: int | None = None
    init: str | None = None
    init_from: str | None = None

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> StepSummary:
        """The summary of a step's stats (the keys above that are present, nothing else)."""
        known, _, nulls = cls._split(stats)
        return cls(**known, nulls=nulls)


@dataclass(frozen=True)
class CommittedStats:
    """What the framework adds to every step's ``stats.json`` and reads back (``phases.work``)."""

    fingerprint: str | None
    seed: int | None
    summary: StepSummary

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> CommittedStats:
        return cls(stats.get("fingerprint"), stats.get("seed"), StepSummary.of(stats))


@dataclass
class StepRecord(_Record):
    """One step's entry. ``executor`` is "shared" for a step adopted from another run of a sweep
    (``shared_from``, ``saved_s``: the seconds it took there, ``linked_bytes``)."""

    status: str | None = None  # running | done | failed
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None
    seed: int | None = None
    fingerprint: str | None = None
    executor: str | None = None
    attempts: int | None = None
    batched: bool | None = None  # run by the batched commit policy
    stopped_orphan: int | None = None  # a worker left by a killed driver, stopped before the step ran
    stats: StepSummary | None = None
    error: str | None = None
    traceback: str | None = None
    shared_from: str | None = None
    saved_s: float | None = None
    linked_bytes: int | None = None
    ALWAYS: ClassVar[frozenset[str]] = frozenset({"seed"})

    @classmethod
    def _nested(cls, known: dict[str, Any]) -> dict[str, Any]:
        if isinstance(known.get("stats"), Mapping):
            known["stats"] = StepSummary.from_json(known["stats"])
        return known

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def shared(self) -> bool:
        return self.executor == "shared"

    def finish(self, stats: Mapping[str, Any]) -> None:
        end = now()
        self.status, self.finished, self.stats = "done", end, StepSummary.of(stats)
        self.duration_s = round(end - (self.started or end), 3)

    def fail(self, exc: BaseException) -> None:
        """A failed step: the error, and the traceback of a bug (a user error's message says it all)."""
        self.status, self.finished, self.error = "failed", now(), f"{type(exc).__name__}: {exc}"
        self.traceback = None if isinstance(exc, UserError) else traceback.format_exc(limit=5)
        self.nulls.add("traceback")

    def adopt(self, adopted: Adopted, stats: Mapping[str, Any]) -> None:
        """The step was adopted from another run: no attempt here, no time spent."""
        at = now()
        self.status, self.started, self.finished, self.duration_s = "done", at, at, 0.0
        self.executor, self.attempts, self.batched = "shared", None, None
        self.stats = StepSummary.of(stats)
        self.shared_from, self.saved_s, self.linked_bytes = adopted.shared_from, adopted.saved_s, adopted.linked_bytes


@dataclass(frozen=True)
class Adopted:
    """Where a shared step came from (``collapsebench.sweep.share``)."""

    shared_from: str
    saved_s: float
    linked_bytes: int


@dataclass(frozen=True)
class Crossing:
    """One failure rule evaluated on one run: ``iteration`` is the time to failure (None: not failed
    up to ``evaluated_to``), ``value`` the metric there and ``ratio`` its ratio to the reference."""

    rule: str
    metric: str
    stop: bool
    iteration: int | None
    value: float | None
    ratio: float | None
    evaluated_to: int | None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class FailureRecord(_Record):
    """The last evaluation of the run's failure rules (``stop_when``, :mod:`collapsebench.failure`)."""

    rules_digest: str | None = None
    time_to_failure: list[Crossing] = field(default_factory=list)
    stopped_at: int | None = None
    stopped_by: str | None = None
    ALWAYS: ClassVar[frozenset[str]] = frozenset({"stopped_at", "stopped_by"})

    @classmethod
    def _nested(cls, known: dict[str, Any]) -> dict[str, Any]:
        known["time_to_failure"] = [Crossing(**c) for c in known.get("time_to_failure") or []]
        return known

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["time_to_failure"] = [c.as_dict() for c in self.time_to_failure]
        return out


@dataclass
class RunState(_Record):
    """The whole journal: the run's name and creation time, its steps in the order they were first
    recorded, and the failure rules' last evaluation."""

    version: int = VERSION
    name: str | None = None
    created: float | None = None
    failure: FailureRecord | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    # each finished record's line of the file, by key: a finished record is not changed again (a new
    # attempt replaces it), and the driver rewrites the journal after every step
    lines: dict[str, tuple[StepRecord, str]] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @classmethod
    def _nested(cls, known: dict[str, Any]) -> dict[str, Any]:
        known["steps"] = {key: StepRecord.from_json(entry) for key, entry in (known.get("steps") or {}).items()}
        if isinstance(known.get("failure"), Mapping):
            known["failure"] = FailureRecord.from_json(known["failure"])
        return known

    def step(self, key: str) -> StepRecord | None:
        return self.steps.get(key)

    def records(self) -> Iterator[tuple[str, StepRecord]]:
        yield from self.steps.items()

    def start(self, key: str, *, seed: int, fingerprint: str, executor: str, batched: bool = False,
              stopped_orphan: int | None = None) -> StepRecord:
        """The record of a step that starts now (a new attempt: the previous record is replaced)."""
        previous = self.steps.get(key)
        record = StepRecord(status="running", started=now(), seed=seed, fingerprint=fingerprint, executor=executor,
                            attempts=((previous.attempts or 0) if previous else 0) + 1, batched=batched or None,
                            stopped_orphan=stopped_orphan)
        self.steps[key] = record
        return record

    def repair(self, key: str, fingerprint: str, stats: Mapping[str, Any]) -> bool:
        """A committed step whose record is not "done" (the driver was killed between the commit
        and the journal write): mark it done from its stats. True when the record changed."""
        record = self.steps.get(key) or StepRecord()
        if record.done:
            return False
        committed = CommittedStats.of(stats)
        record.status, record.fingerprint, record.seed, record.stats = "done", fingerprint, committed.seed, committed.summary
        self.steps[key] = record
        return True

    def drop(self, key: str) -> None:
        self.steps.pop(key, None)

    def failed_steps(self) -> list[StepRecord]:
        return [r for r in self.steps.values() if r.failed]

    def set_failure(self, failure: FailureRecord | None) -> bool:
        """Record the failure rules' evaluation (None: the run has no rules); True when it changed."""
        old = None if self.failure is None else self.failure.to_json()
        new = None if failure is None else failure.to_json()
        self.failure = failure
        self.nulls.discard("failure")
        return old != new

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["steps"] = {key: record.to_json() for key, record in self.steps.items()}
        return out


# ------------------------------------------------------------------------------------ the file

def dumps(state: RunState) -> str:
    """The file's text: one step per line, readable, and encoded by json's C encoder (``indent=``
    would not use it)."""
    lines = [_line(state, key, record) for key, record in state.steps.items()]
    data = {k: v for k, v in super(RunState, state).to_json().items() if k != "steps"}
    return json.dumps(data, sort_keys=True)[:-1] + (", " if data else "") + '"steps": {\n' + ",\n".join(lines) + "\n}}\n"


def _line(state: RunState, key: str, record: StepRecord) -> str:
    cached = state.lines.get(key)
    if cached is not None and cached[0] is record:
        return cached[1]
    line = f"  {json.dumps(key)}: {json.dumps(record.to_json(), sort_keys=True, default=float)}"
    if record.done:
        state.lines[key] = (record, line)
    return line


def loads(text: str, where: Path | str = "state.json") -> RunState:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is corrupt: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps", {}), dict):
        raise UserError(f"{where} is corrupt: not a collapsebench journal")
    return RunState.from_json(data)


def read(path: Path) -> RunState:
    """The journal at ``path`` (a new, empty one when there is none yet)."""
    if not path.exists():
        return RunState()
    return loads(path.read_text(), path)
