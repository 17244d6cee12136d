"""Every benchmark's last step: its Markdown table printed and written to benchmarks/results/NAME.md."""

import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def publish(name, lines):
    """Join `lines` into the table, print it, and write it to results/NAME.md (run_all.sh joins them)."""
    table = "\n".join(lines) + "\n"
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(table)
