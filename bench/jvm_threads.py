"""Where a JVM's CPU goes, by thread: the compiler, the request threads, GC, the rest.

Run beside a benchmark: `.venv/bin/python -m bench.jvm_threads --wait-for kafka.Kafka &`
then `.venv/bin/python -m bench.load ...`. It waits for a process whose command line holds
`--wait-for` to start (one started before is ignored), reads each of its threads' CPU from
/proc every second, and when the process exits prints the CPU seconds per thread group
(digits in thread names folded, so the eight request handlers are one line).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path

TICK = 100  # clock ticks a second in /proc/<pid>/stat


def pids_running(pattern: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return {int(pid) for pid in found.stdout.split()}


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Each thread of `pid`: its name and its CPU seconds so far."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended meanwhile
        threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return threads


def follow(pattern: str, interval: float) -> dict[str, float]:
    """CPU seconds by thread group of the next process matching `pattern`, once it exits."""
    before = pids_running(pattern)
    while not (new := pids_running(pattern) - before):
        time.sleep(0.2)
    pid = min(new)
    last: dict[int, tuple[str, float]] = {}
    while Path(f"/proc/{pid}").exists():
        try:
            last.update(thread_cpu(pid))
        except OSError:
            break  # exited between the check and the read
        time.sleep(interval)
    groups: dict[str, float] = {}
    for name, seconds in last.values():
        group = re.sub(r"\d+", "N", name)
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wait-for", default="kafka.Kafka", help="pgrep -f pattern")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    groups = follow(args.wait_for, args.interval)
    total = sum(groups.values())
    print(f"total {total:.1f} s of CPU")
    for name, seconds in sorted(groups.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{seconds:7.2f} s {seconds / total * 100:5.1f} %  {name}")


if __name__ == "__main__":
    main()
