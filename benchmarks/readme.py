"""Regenerates the README's performance section from a results.md.

    python -m benchmarks.readme benchmarks/results/results.md [--readme README.md]

Copies the summary of the results (between <!-- summary:begin --> and
<!-- summary:end -->) into the README between <!-- benchmarks:begin --> and
<!-- benchmarks:end -->, with a link to the full results; nothing else in
the README changes.
"""
from __future__ import annotations

import argparse
import os
import sys

from .report import SUMMARY_BEGIN, SUMMARY_END

BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def summary(results_md: str) -> str:
    if SUMMARY_BEGIN not in results_md or SUMMARY_END not in results_md:
        raise ValueError("no summary markers in the results file: is it a results.md of the suite?")
    return results_md.split(SUMMARY_BEGIN, 1)[1].split(SUMMARY_END, 1)[0].strip()


def splice(readme: str, body: str) -> str:
    """readme with the text between its benchmark markers replaced by body."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"the README needs exactly one {BEGIN} ... {END} pair")
    head, rest = readme.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{body.strip()}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a results.md written by python -m benchmarks")
    ap.add_argument("--readme", default="README.md")
    args = ap.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        body = summary(f.read())
    link = os.path.relpath(args.results, os.path.dirname(os.path.abspath(args.readme)) or ".")
    body += f"\n\nFull tables, every scenario with its spread, and the chart: [`{link}`]({link})."
    with open(args.readme, encoding="utf-8") as f:
        text = f.read()
    try:
        new = splice(text, body)
    except ValueError as e:
        print(f"{args.readme}: {e}", file=sys.stderr)
        return 1
    with open(args.readme, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"updated {args.readme} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
