"""Summarise py-spy collapsed stacks: where the samples are, by function (self and inclusive).

python -m bench.profile_top FILE.txt [--top 25] [--grep SUBSTRING]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:12)` -> `func pkg/mod.py`."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarise(path: Path, top: int, grep: str | None) -> None:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f]
        if grep and not any(grep in f for f in frames):
            continue
        total += count
        if frames:
            self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{path.name}: {total} samples")
    print("  self:")
    for frame, count in self_counts.most_common(top):
        print(f"    {count / total:6.1%}  {frame}")
    print("  inclusive:")
    for frame, count in inclusive.most_common(top):
        print(f"    {count / total:6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep")
    args = parser.parse_args()
    for path in args.files:
        summarise(path, args.top, args.grep)


if __name__ == "__main__":
    main()
