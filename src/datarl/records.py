"""Records: the one data contract (DESIGN section 2).

A record is one JSON object (a JSONL line or a Parquet row). Loading never stops at
the first bad line: every good record is returned, every bad one becomes a
``RecordError`` that names the file, the line, the field, what is wrong and how to
fix it. Unknown fields are kept and written back unchanged, so users' own columns
(``label``, ``meta``...) survive a round trip through ``datarl score``.

Task-specific checks of ``tests`` (code) and ``instruction_id_list``/``kwargs``
(ifeval) are delegated to the verifier that understands them, so the record layer and
the scorer can never disagree about what is valid.

A file in another project's layout (verl, GSM8K, MATH, HumanEval, MBPP, APPS, IFEval,
chat messages; ``datarl.layouts``) loads as it is: its layout is chosen once per file,
from its columns, and each row becomes a record whose derived fields (``task``,
``prompt``, ``ground_truth``, ``tests``...) are laid over the row's own columns. Bad rows
name the upstream column (``answer``, ``reward_model.ground_truth``).
"""

from __future__ import annotations

import difflib
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.errors import InputError, UserError
from datarl.io import remove_stale, write_records
from datarl.layouts import Detected, LayoutError, RowProblem, choose_layout
from datarl.rows import open_rows
from datarl.tasks import TASKS

SAMPLE_ROWS = 20
"""Rows read before a file's layout is chosen (their columns, and values where a layout needs them)."""
CHAT_ROLES = ("system", "user", "assistant", "tool")
# Fields the records layer itself understands; anything else is carried through.
KNOWN_FIELDS = (
    "id",
    "task",
    "domain",
    "prompt",
    "ground_truth",
    "tests",
    "instruction_id_list",
    "kwargs",
    "reference",
    "response",
)


@dataclass(frozen=True)
class Record:
    """One validated record.

    ``raw`` is the object as read (original key order, user fields included); the
    typed attributes are the normalised view every other layer uses.
    """

    id: str
    task: str
    domain: str
    prompt: str | list[dict[str, str]]
    source: str  # "file:line", where the record came from
    line: int
    ground_truth: str | None = None
    tests: dict[str, Any] | None = None
    instruction_id_list: list[str] | None = None
    kwargs: list[dict[str, Any]] | None = None
    reference: str | None = None
    response: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The normalised record as a plain dict (what reward functions receive)."""
        out = dict(self.raw)
        for name in KNOWN_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class RecordError:
    """A bad input line: ``file:line: field: message``."""

    path: str
    line: int
    field: str
    message: str
    text: str = ""  # the offending line (truncated), for the errors side file

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "line": self.line, "field": self.field, "error": self.message, "text": self.text}


@dataclass
class LoadResult:
    """What a file held: its valid records, its bad lines, how many lines (rows) in all, and the layout
    it was read in (``layout.native``: a datarl file; ``layout.line()``: the mapping otherwise)."""

    records: list[Record]
    errors: list[RecordError]
    total_lines: int
    layout: Detected | None = None


# --- reading --------------------------------------------------------------------


def iter_raw(path: str) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(line_number, parsed_object_or_exception, line_text)`` for JSONL, Parquet or a ``datasets``
    directory (``datarl.rows.open_rows``): blank JSONL lines are skipped, a line that is not valid JSON
    yields the ``ValueError`` in place of the object."""
    yield from open_rows(path).rows


def load_records(
    path: str,
    *,
    extra_check: Callable[[Record], tuple[str, str] | None] | None = None,
    layout: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> LoadResult:
    """Load and validate every record of ``path`` (JSONL, Parquet, or a ``datasets`` directory).

    ``extra_check`` lets a caller add a check (e.g. "the router has a source for this
    task"); it returns ``(field, message)`` for a bad record or None.
    ``layout``: read the file in this layout (a name of ``datarl.layouts.LAYOUT_NAMES``)
    instead of detecting it. ``announce`` receives the mapping line once when the file is
    not a datarl file (``layout gsm8k: task=math, prompt<-question, ...``).
    Raises :class:`~datarl.errors.InputError` only for a missing or unreadable file, an
    unknown layout, or a file whose columns fit several layouts.
    """
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        return _load(path, extra_check, layout, announce)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ImportError as exc:  # pyarrow's native parts missing for a .parquet file
        raise InputError(f"{path}: cannot read Parquet ({exc})") from None


def read_all_records(
    path: str,
    *,
    what: str | None = None,
    error: type[UserError] = InputError,
    limit: int = 10,
    allow_empty: bool = False,
    layout: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> list[Record]:
    """The records of an input every line of which must be valid (prompts to sample, a training set).

    A missing or unreadable file, any bad line (the first ``limit`` listed with file, line and field) or a
    file with no records (unless ``allow_empty``) raises ``error``, its message prefixed with ``what``
    (e.g. ``data.train``). ``layout`` and ``announce`` as for :func:`load_records`.
    """
    where = f"{what}: " if what else ""
    try:
        loaded = load_records(path, layout=layout, announce=announce)
    except InputError as exc:
        raise error(f"{where}{exc}") from None
    if loaded.errors:
        raise error(
            f"{where}{len(loaded.errors)} bad line(s) in {path}; fix them (`datarl validate {path}` "
            f"lists them all):\n{format_errors(loaded.errors, limit)}"
        )
    if not loaded.records and not allow_empty:
        raise error(f"{where}{path}: no records (the file is empty)")
    return loaded.records


def _load(
    path: str,
    extra_check: Callable[[Record], tuple[str, str] | None] | None,
    layout: str | None,
    announce: Callable[[str], None] | None,
) -> LoadResult:
    name = os.path.basename(path.rstrip(os.sep))
    table = open_rows(path)
    head = list(itertools.islice(table.rows, SAMPLE_ROWS))
    sample = [obj for _, obj, _ in head if isinstance(obj, dict)]
    columns = table.columns if table.columns is not None else {key for row in sample for key in row}
    try:
        detected = choose_layout(columns, sample, layout)
    except LayoutError as exc:
        raise LayoutError(f"{path}: {exc}") from None
    if announce is not None and not detected.native:
        announce(detected.line())
    records: list[Record] = []
    errors: list[RecordError] = []
    total = 0
    for number, obj, text in itertools.chain(head, table.rows):
        total += 1
        snippet = text[:500]
        if isinstance(obj, ValueError):
            errors.append(
                RecordError(
                    path,
                    number,
                    "(line)",
                    f"not valid JSON ({obj}); each line must be one complete JSON object",
                    snippet,
                )
            )
            continue
        mapped = False
        if not detected.native and isinstance(obj, dict):
            try:
                obj, whole = detected.record(obj)
            except RowProblem as problem:
                errors.append(RecordError(path, number, problem.field, problem.message, snippet))
                continue
            mapped = not whole
        result = parse_record(obj, path=path, line=number, default_id=f"{name}:{number}")
        if isinstance(result, RecordError):
            field_name, message = result.field, result.message
            if mapped:
                field_name = detected.source_of(field_name)
            elif field_name == "task" and isinstance(obj, dict) and obj.get("task") is None:
                message += detected.no_fit_hint()
            errors.append(RecordError(result.path, result.line, field_name, message, snippet))
            continue
        if extra_check is not None:
            problem = extra_check(result)
            if problem is not None:
                errors.append(RecordError(path, number, problem[0], problem[1], snippet))
                continue
        records.append(result)
    return LoadResult(records, errors, total, detected)


# --- validation -----------------------------------------------------------------


def parse_record(obj: Any, *, path: str, line: int, default_id: str) -> Record | RecordError:
    """Validate one parsed JSON object and build a ``Record``; never raises."""

    def bad(field_name: str, message: str) -> RecordError:
        return RecordError(path, line, field_name, message)

    if not isinstance(obj, dict):
        return bad("(line)", f"expected a JSON object, got {type(obj).__name__}")
    task = obj.get("task")
    if task is None:
        return bad("task", f"missing; set it to one of {', '.join(TASKS)}")
    if task not in TASKS:
        hint = difflib.get_close_matches(str(task), TASKS, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return bad("task", f"unknown task {task!r}{suggestion}; use one of {', '.join(TASKS)}")

    rid = obj.get("id", default_id)
    if isinstance(rid, (int, float)) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        return bad("id", "must be a non-empty string (or leave it out to use file:line)")
    domain = obj.get("domain", task)
    if not isinstance(domain, str) or not domain:
        return bad("domain", "must be a non-empty string (or leave it out to use the task)")

    problem = _check_prompt(obj.get("prompt"))
    if problem:
        return bad("prompt", problem)
    for name in ("reference", "response"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return bad(name, f"must be a string, got {type(obj[name]).__name__}")

    fields: dict[str, Any] = {}
    checker = _TASK_CHECKS[task]
    problem_field = checker(obj, fields)
    if problem_field:
        return bad(*problem_field)

    return Record(
        id=rid,
        task=task,
        domain=domain,
        prompt=obj["prompt"],
        source=f"{path}:{line}",
        line=line,
        reference=obj.get("reference"),
        response=obj.get("response"),
        raw=obj,
        **fields,
    )


def _check_prompt(prompt: Any) -> str | None:
    if prompt is None:
        return "missing; give the input as a string or a list of {role, content} messages"
    if isinstance(prompt, str):
        return None if prompt.strip() else "is empty"
    if isinstance(prompt, list) and prompt:
        for i, msg in enumerate(prompt):
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
                return f"message {i} must be an object with a string 'content'"
            if msg.get("role") not in CHAT_ROLES:
                return f"message {i} has role {msg.get('role')!r}; use one of {', '.join(CHAT_ROLES)}"
        return None
    return f"must be a string or a non-empty list of chat messages, got {type(prompt).__name__}"


def _check_math(obj: Mapping[str, Any], fields: dict[str, Any]) -> tuple[str, str] | None:
    gt = obj.get("ground_truth")
    if gt is None:
        return ("ground_truth", 'missing; math records need the final answer, e.g. "18" or "\\\\frac{1}{2}"')
    if isinstance(gt, bool) or not isinstance(gt, (str, int, float)):
        return ("ground_truth", f"must be a string (the final answer), got {type(gt).__name__}")
    gt = gt if isinstance(gt, str) else repr(gt) if isinstance(gt, float) else str(gt)
    if not gt.strip():
        return ("ground_truth", "is empty; give the final answer")
    fields["ground_truth"] = gt
    return None


def _check_code(obj: Mapping[str, Any], fields: dict[str, Any]) -> tuple[str, str] | None:
    tests = obj.get("tests")
    if tests is None:
        return (
            "tests",
            'missing; code records need {"type": "assert", "code": ...} '
            'or {"type": "stdio", "cases": [{"input", "output"}]}',
        )
    problems = _validate_code_tests(tests)
    if problems:
        return ("tests", "; ".join(problems))
    fields["tests"] = tests
    return None


def _check_ifeval(obj: Mapping[str, Any], fields: dict[str, Any]) -> tuple[str, str] | None:
    ids = obj.get("instruction_id_list")
    kwargs = obj.get("kwargs")
    if ids is None:
        return ("instruction_id_list", 'missing; list IFEval instruction ids, e.g. ["punctuation:no_comma"]')
    if kwargs is None:
        kwargs = [{} for _ in ids] if isinstance(ids, list) else None
    from datarl.rewards.ifeval import validate_instructions

    problems = validate_instructions(ids, kwargs)
    if problems:
        field_name = "kwargs" if any(p.startswith("kwargs") for p in problems) else "instruction_id_list"
        return (field_name, "; ".join(problems))
    fields["instruction_id_list"] = list(ids)
    fields["kwargs"] = list(kwargs)
    return None


def _check_general(obj: Mapping[str, Any], fields: dict[str, Any]) -> tuple[str, str] | None:
    return None


def _validate_code_tests(tests: Any) -> list[str]:
    try:
        from datarl.rewards.code import validate_tests
    except ImportError:  # the code verifier is optional in a minimal install
        return [] if isinstance(tests, dict) else ["must be an object"]
    return validate_tests(tests)


_TASK_CHECKS: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], tuple[str, str] | None]] = {
    "math": _check_math,
    "code": _check_code,
    "ifeval": _check_ifeval,
    "general": _check_general,
}


def format_errors(errors: Sequence[RecordError], limit: int = 20) -> str:
    """Human-readable list of the first ``limit`` errors."""
    lines = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more")
    return "\n".join(lines)


def as_dict(record: Record | Mapping[str, Any]) -> dict[str, Any]:
    """A record as a plain dict: a :class:`Record`'s normalised view, or a copy of a mapping."""
    return record.to_dict() if isinstance(record, Record) else dict(record)


def write_errors(path: str, errors: Sequence[RecordError]) -> None:
    """Write the bad lines' side file (``OUTPUT.errors.jsonl``), or remove a stale one when there are none:
    a side file left by an earlier run would describe another input."""
    if errors:
        write_records(path, (e.to_dict() for e in errors))
    else:
        remove_stale(path)
