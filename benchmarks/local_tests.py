"""Local independence tests: how often the verdict is right on a table with known truth.

    python benchmarks/local_tests.py [--repeats 100] [--n 6000] [--k 100]

Draws ``--repeats`` tables of :func:`surveyproc.testing.local_dependence_table`
(a latent that knows ``a``; y = a + q_direct/2 + c/2 + noise; q_confounded
depends on y only through c; q_none not at all), runs
:func:`surveyproc.stats.local_tests.run_local_tests` on each (condition c) and
counts, per query and test, how often the verdict says "dependent": the power
where the truth is dependent, the false-positive rate where it is not (nominal
1 %: the verdict's binomial level).  Beside it, the rule the verdict replaced,
a 3-sigma binomial bound on the share of *all* neighbourhoods with p < alpha,
whose overlapping neighbourhoods make it call independence dependent far more
often than its nominal 0.1 %.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchlib import describe, publish

from surveyproc.stats.local_tests import run_local_tests
from surveyproc.testing import local_dependence_table

#: (query, conditional?) -> whether y truly depends on the query there.
TRUTH = {("q_direct", False): True, ("q_direct", True): True,
         ("q_confounded", False): True, ("q_confounded", True): False,
         ("q_none", False): False, ("q_none", True): False}


def naive_dependent(test: dict, alpha: float) -> bool:
    """The share of all neighbourhoods with p < alpha above alpha + 3 binomial sigmas."""
    m = max(test["neighbourhoods"], 1)
    return test["share_dependent"] > alpha + 3 * np.sqrt(alpha * (1 - alpha) / m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--neighbourhoods", type=int, default=500)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
    args = parser.parse_args()
    started = time.perf_counter()
    counts = {f"{q}{' given c' if cond else ''}": {"truly_dependent": dep, "verdict": 0,
                                                   "naive": 0, "disjoint": []}
              for (q, cond), dep in TRUTH.items()}
    seconds = []
    for seed in range(args.repeats):
        latent, values = local_dependence_table(args.n, seed)
        t0 = time.perf_counter()
        result = run_local_tests(latent, values, "y", ["q_direct", "q_confounded", "q_none"],
                                 "c", k=args.k, neighbourhood_count=args.neighbourhoods,
                                 permutations=args.permutations, alpha=args.alpha, seed=seed)
        seconds.append(time.perf_counter() - t0)
        for test in result["tests"]:
            for label, t in ((test["query"], test),
                             (f"{test['query']} given c", test["conditional"])):
                counts[label]["verdict"] += int(t["dependent"])
                counts[label]["naive"] += int(naive_dependent(t, args.alpha))
                counts[label]["disjoint"].append(t["disjoint_neighbourhoods"])
    rows = [{"test": label, "truly_dependent": c["truly_dependent"],
             "verdict_rate": c["verdict"] / args.repeats,
             "naive_rate": c["naive"] / args.repeats,
             "disjoint_neighbourhoods_median": float(np.median(c["disjoint"]))}
            for label, c in counts.items()]
    publish("local_tests", args, {"rows": rows, "seconds_per_run": {
        "median": float(np.median(seconds)), "min": float(np.min(seconds)),
        "max": float(np.max(seconds))}}, render, started=started)


def render(record: dict) -> str:
    a, r = record["args"], record["results"]
    lines = [
        "## Local independence tests on a table with known truth "
        "(`benchmarks/local_tests.py`)", "",
        f"{a['repeats']} tables of {a['n']:,} rows (`surveyproc.testing."
        "local_dependence_table`: the latent knows a; y = a + q_direct/2 + c/2 + noise; "
        "q_confounded depends on y only through c; q_none not at all); per table "
        f"{a['neighbourhoods']} neighbourhoods of k = {a['k']}, {a['permutations']} "
        f"shuffles each, alpha {a['alpha']}, condition c. Rate = share of tables called "
        "dependent: power where the truth is dependent, false positives where it is not. "
        "Verdict: one-sided binomial test (level 0.01) over the neighbourhoods sharing no "
        "member; naive: the share of all neighbourhoods with p < alpha above "
        "alpha + 3 binomial sigmas (nominal false-positive rate 0.1 %), the rule the "
        "verdict replaced.", "",
        describe(record["machine"]), "",
        "| test | truly dependent | verdict rate | naive rule rate | disjoint "
        "neighbourhoods (median) |", "|---|---|---:|---:|---:|"]
    for row in r["rows"]:
        lines.append(f"| y vs {row['test']} | {'yes' if row['truly_dependent'] else 'no'} | "
                     f"{row['verdict_rate']:.2f} | {row['naive_rate']:.2f} | "
                     f"{row['disjoint_neighbourhoods_median']:.0f} |")
    s = r["seconds_per_run"]
    lines += ["", f"Seconds per table (three queries, both tests): median {s['median']:.2f} "
              f"(min {s['min']:.2f}, max {s['max']:.2f})."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
