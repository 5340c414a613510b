"""Synthetic rates data of the original dump's shape, at any scale, reproducibly."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

# The original dump, per unit of scale: 725 lanes over 31 days; of its lane-days 75% have
# three prices, 10% two, 15% one; 3% of lane-days have none; 0.4% of rows are duplicates.
LANES_PER_SCALE = 725
DAYS = 31
FIRST_DAY = date(2021, 1, 1)
PRICES_PER_DAY = ((3, 0.75), (2, 0.10), (1, 0.15))
MISSING_DAY = 0.03
DUPLICATE = 0.004


@dataclass(frozen=True)
class Dataset:
    """Regions, ports and prices as rows, ready for CSV or COPY."""

    regions: list[tuple[str, str, str | None]]
    ports: list[tuple[str, str, str]]
    prices: Iterator[tuple[str, str, str, int]]


def generate(scale: float, seed: int = 1) -> Dataset:
    """A dataset with about ``scale`` times the original's prices (56,689 at scale 1)."""
    rng = random.Random(seed)
    regions: list[tuple[str, str, str | None]] = []
    leaves = []
    for root in ("north", "south"):  # two roots, each three levels deep
        regions.append((root, root.title(), None))
        for i in range(3):
            middle = f"{root}_{i}"
            regions.append((middle, f"{root.title()} {i}", root))
            for j in range(3):
                leaf = f"{middle}_{j}"
                regions.append((leaf, f"{root.title()} {i}.{j}", middle))
                leaves.append(leaf)
    port_count = max(20, round(143 * math.sqrt(scale)))
    ports = [(f"P{n:05d}", f"Port {n}", rng.choice(leaves)) for n in range(port_count)]
    lane_count = max(1, round(LANES_PER_SCALE * scale))
    codes = [p[0] for p in ports]
    lanes: set[tuple[str, str]] = set()
    while len(lanes) < min(lane_count, len(codes) * (len(codes) - 1)):
        orig, dest = rng.sample(codes, 2)
        lanes.add((orig, dest))
    return Dataset(regions, ports, _prices(sorted(lanes), rng))


def _prices(
    lanes: list[tuple[str, str]], rng: random.Random
) -> Iterator[tuple[str, str, str, int]]:
    counts = [count for count, _ in PRICES_PER_DAY]
    weights = [weight for _, weight in PRICES_PER_DAY]
    for orig, dest in lanes:
        base = rng.randint(539, 5893)
        for offset in range(DAYS):
            if rng.random() < MISSING_DAY:
                continue
            day = (FIRST_DAY + timedelta(days=offset)).isoformat()
            for _ in range(rng.choices(counts, weights)[0]):
                row = (orig, dest, day, max(1, base + rng.randint(-60, 60)))
                yield row
                if rng.random() < DUPLICATE:
                    yield row


def write_csv(dataset: Dataset, directory: Path) -> dict[str, int]:
    """Write regions.csv, ports.csv and prices.csv (with headers); return the row counts."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, header, rows in (
        ("regions", ("slug", "name", "parent_slug"), iter(dataset.regions)),
        ("ports", ("code", "name", "parent_slug"), iter(dataset.ports)),
        ("prices", ("orig_code", "dest_code", "day", "price"), dataset.prices),
    ):
        with (directory / f"{name}.csv").open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            counts[name] = 0
            for row in rows:
                writer.writerow(row)
                counts[name] += 1
    return counts
