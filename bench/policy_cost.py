"""Per-statement policy cost: what the guardrails add to each statement, in microseconds.

For two policies (the issue's 4-rule prod-guard and the 10-rule policy of
bench/pg_bench.py) it times `SqlGuardrails.objection`, what the proxy asks of
each statement (the verdict, or None when it is allowed), on a pgbench -S
statement:

- cold: every cache emptied first, so a full parse and rule match each time;
- hot, same text: the exact-text verdict cache;
- hot, varying literal: a new aid each time, as pgbench -S sends (shape cache);
- hot, varying literal behind a comment: the normalized-text cache.

Each figure is the median of several runs of many iterations (time.perf_counter).
Run `python bench/policy_cost.py [--runs N]`; bench/pg_bench.py calls `measure()`.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo's packages are not on the path otherwise

from connections.policy import sql_facts  # noqa: E402
from connections.policy.guardrails import SqlGuardrails  # noqa: E402
from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec  # noqa: E402
from tests.policy.evasion_corpus import prod_guard_spec  # noqa: E402

PGBENCH_SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
COMMENTED_SELECT = "/* app: bench */ SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
HOT_ITERATIONS = 50_000
COLD_ITERATIONS = 2_000
DEFAULT_RUNS = 7


def ten_rule_spec() -> PolicySpec:
    """The 10 guardrails of bench/pg_bench.py's GUARD_POLICY, as a PolicySpec."""
    rules = (
        ("no-drop", "deny", GuardrailMatch(kind=("DROP", "TRUNCATE"))),
        ("no-unbounded-write", "deny", GuardrailMatch(kind=("DELETE", "UPDATE"), without_where=True)),
        ("no-file-access", "deny", GuardrailMatch(dangerous_functions=True, copy_program=True, copy_file=True)),
        ("schema-changes", "review", GuardrailMatch(kind=("ALTER", "CREATE"))),
        ("no-grants", "deny", GuardrailMatch(kind=("GRANT", "REVOKE"))),
        ("no-roles", "deny", GuardrailMatch(kind=("CREATE ROLE", "ALTER ROLE", "DROP ROLE"))),
        ("billing-by-review", "review",
         GuardrailMatch(kind=("INSERT", "UPDATE", "DELETE", "MERGE"), schemas=("billing",))),
        ("no-identity-change", "deny",
         GuardrailMatch(kind=("SET", "RESET"), regex=r"(?i)session_authorization|\brole\b")),
        ("no-dblink", "deny", GuardrailMatch(functions=("dblink*",))),
        ("no-vacuum-full", "review", GuardrailMatch(kind=("VACUUM",), regex=r"(?i)\bfull\b")),
    )  # fmt: skip
    return PolicySpec(name="bench-guard", guardrails=tuple(GuardrailRule(*rule) for rule in rules))


def _per_call_us(texts: list[str], call: Callable[[str], object], before_each: Callable[[], None] | None) -> float:
    if before_each is None:
        started = time.perf_counter()
        for text in texts:
            call(text)
        return (time.perf_counter() - started) / len(texts) * 1e6
    elapsed = 0.0
    for text in texts:
        before_each()
        started = time.perf_counter()
        call(text)
        elapsed += time.perf_counter() - started
    return elapsed / len(texts) * 1e6


def _median_us(runs: int, make_texts: Callable[[int], list[str]], call: Callable, before_each=None) -> float:
    results = []
    for run in range(runs):
        texts = make_texts(run)
        results.append(_per_call_us(texts, call, before_each))
    return statistics.median(results)


def _varying(template: str, count: int) -> Callable[[int], list[str]]:
    # A fresh aid every time, and fresh across runs, so the exact-text caches never help.
    return lambda run: [template.format(aid=1_000_000 * (run + 1) + n) for n in range(count)]


def measure(
    runs: int = DEFAULT_RUNS, hot_iterations: int = HOT_ITERATIONS, cold_iterations: int = COLD_ITERATIONS
) -> list[str]:
    """Report lines: per-statement guardrail cost of each policy, cold and hot, in microseconds."""
    lines = [f"guardrail cost per statement, median of {runs} runs (us):"]
    for spec in (prod_guard_spec(), ten_rule_spec()):
        guardrails = SqlGuardrails(spec)

        def empty_caches(guardrails: SqlGuardrails = guardrails) -> None:
            sql_facts.clear_caches()
            guardrails.clear_caches()

        ask = guardrails.objection
        ask(PGBENCH_SELECT.format(aid=1))
        figures = {
            "cold": _median_us(runs, _varying(PGBENCH_SELECT, cold_iterations), ask, empty_caches),
            "hot same text": _median_us(runs, lambda run: [PGBENCH_SELECT.format(aid=1)] * hot_iterations, ask),
            "hot varying literal": _median_us(runs, _varying(PGBENCH_SELECT, hot_iterations), ask),
            "hot varying, commented": _median_us(runs, _varying(COMMENTED_SELECT, hot_iterations), ask),
        }
        label = f"{spec.name} ({len(spec.guardrails)} rules)"
        lines.append(f"  {label:<24}" + "  ".join(f"{name} {value:7.2f}" for name, value in figures.items()))
    return lines


def main() -> None:
    """Print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"runs per figure (default {DEFAULT_RUNS})")
    options = parser.parse_args()
    sys.stdout.write("\n".join(measure(options.runs)) + "\n")


if __name__ == "__main__":
    main()
