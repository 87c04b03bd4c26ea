"""Benchmark: messages/s through a 100-rule set on one core (rules evaluation only, on
messages parsed beforehand), and the same with parsing included.

    .venv/bin/python bench/rules_throughput.py [--seconds 3]

98 rules that miss (contains / regex on from, subject, body, a header), then the shipped
Datto resolve and raise rules, so every message walks the whole list: the worst case.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from daemon.config.loading import packaged_rules_path
from daemon.mail.parse import parse_message
from daemon.rules.engine import evaluate
from daemon.rules.load import compile_rules

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mail"


def hundred_rules() -> str:
    rules = []
    for n in range(98):
        field, condition = [
            ("from", f'{{ contains = "sender-{n}@nowhere.example" }}'),
            ("subject", f"{{ regex = '''^Ticket #{n}\\d+ escalated''' }}"),
            ("body", f'{{ contains = "marker-{n}-not-present" }}'),
            ("headers", f'{{ "X-Rule-{n}" = {{ equals = "yes" }} }}'),
        ][n % 4]
        rules.append(f'[[rule]]\nname = "miss {n}"\nsource = "other"\naction = "raise"\n'
                     f"{field} = {condition}\n")
    return "\n".join(rules) + "\n" + packaged_rules_path().read_text()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    ruleset = compile_rules(hundred_rules())
    raws = [p.read_bytes() for p in sorted(CORPUS.glob("datto-*.eml"))]
    messages = [parse_message(raw) for raw in raws]
    print(f"{len(ruleset.rules)} rules, {len(messages)} Datto-style messages from the corpus")

    for label, work in (("rules only", lambda i: evaluate(ruleset, messages[i % len(messages)])),
                        ("parse + rules", lambda i: evaluate(
                            ruleset, parse_message(raws[i % len(raws)])))):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < args.seconds:
            for _ in range(100):
                work(count)
                count += 1
        print(f"{label:<14} {count / elapsed:8.0f} messages/s")


if __name__ == "__main__":
    main()
