"""`fleet --help` start-up time against bare `python -c pass`, in the same run.

Target (issue 2): under 150 ms more than bare Python. Prints median and p90 of each.
Usage: .venv/bin/python bench/startup.py [RUNS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import as_installed, below, emit


def timed(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=as_installed())
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    python = sys.executable
    timed([python, "-m", "fleet", "--help"], 3)  # warm the page cache and .pyc files
    baseline = timed([python, "-c", "pass"], runs)
    fleet = timed([python, "-m", "fleet", "--help"], runs)
    validate = timed([python, "-m", "fleet", "validate"], runs)

    def line(name: str, samples: list[float]) -> str:
        p90 = statistics.quantiles(samples, n=10)[-1]
        return f"{name:<24} median {statistics.median(samples):7.1f} ms   p90 {p90:7.1f} ms"

    print(f"runs: {runs}")
    print(line("python -c pass", baseline))
    print(line("fleet --help", fleet))
    print(line("fleet validate (example)", validate))
    extra = statistics.median(fleet) - statistics.median(baseline)
    verdict = "ok" if extra < 150 else "OVER TARGET"
    print(f"fleet --help costs {extra:.1f} ms more than bare Python (target < 150 ms): {verdict}")
    emit([below("fleet --help start-up, over bare Python", extra, "ms", 150, "<= 150 ms",
                f"median of {runs} each")])


if __name__ == "__main__":
    main()
