"""The README's tables from measured rates CSVs: one Markdown table per file and mix.

python3 bench/llmcal/table.py bench/data/h100-llm-llama-1b-rates.csv bench/data/h100-llm-llama-8b-rates.csv
"""

import csv
import sys
from pathlib import Path

COLUMNS = (  # (title, column, digits)
    ("offered req/s", "offered_rps", 1),
    ("served req/s", "served_rps", 1),
    ("prompt tok/s", "prompt_tok_s", 0),
    ("output tok/s", "output_tok_s", 0),
    ("TTFT p50 / p99 ms", ("ttft_p50_ms", "ttft_p99_ms"), 0),
    ("TPOT p50 / p99 ms", ("tpot_p50_ms", "tpot_p99_ms"), 0),
    ("e2e p50 / p99 s", ("e2e_p50_s", "e2e_p99_s"), 1),
    ("pending", "pending_mean", 1),
    ("running", "running_mean", 0),
    ("waiting", "waiting_mean", 0),
    ("KV mean / max", ("kv_used_mean", "kv_used_max"), 2),
    ("GPU util", "gpu_util_mean", 2),
    ("unfinished / sent", ("unfinished", "sent"), 0),
)


def cell(row: dict, column, digits: int) -> str:
    if isinstance(column, tuple):
        return " / ".join(cell(row, c, digits) for c in column)
    return f"{float(row[column]):,.{digits}f}" if row[column] else "-"


def main() -> None:
    for path in map(Path, sys.argv[1:]):
        with path.open() as lines:
            rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
        for mix in dict.fromkeys(r["mix"] for r in rows):
            print(f"\n{path.name}, {mix}:\n")
            print("| segment | " + " | ".join(title for title, _, _ in COLUMNS) + " |")
            print("|---|" + "--:|" * len(COLUMNS))
            for row in (r for r in rows if r["mix"] == mix):
                cells = " | ".join(cell(row, column, digits) for _, column, digits in COLUMNS)
                print(f"| {row['segment']} | {cells} |")


if __name__ == "__main__":
    main()
