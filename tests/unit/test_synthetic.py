from collections import Counter

from ledgerflow.rates.synthetic import generate


def test_the_dataset_has_the_original_shape() -> None:
    data = generate(1.0, seed=3)
    regions = {slug: parent for slug, _, parent in data.regions}
    roots = [slug for slug, parent in regions.items() if parent is None]
    assert len(roots) == 2

    def depth(slug: str) -> int:
        parent = regions[slug]
        return 1 if parent is None else 1 + depth(parent)

    assert max(depth(slug) for slug in regions) == 3
    assert all(parent in regions for _, _, parent in data.ports)
    prices = list(data.prices)
    assert 50_000 < len(prices) < 64_000  # the original has 56,689
    per_lane_day = Counter((o, d, day) for o, d, day, _ in prices)
    sizes = Counter(per_lane_day.values())
    assert sizes[3] > sizes[2] and sizes[1] > 0 and max(sizes) <= 6  # 3 at most, but duplicates
    assert len(prices) - len(set(prices)) > 0  # a few exact duplicates
    lanes = {(o, d) for o, d, _, _ in prices}
    assert len(per_lane_day) < len(lanes) * 31  # some days are missing
    assert all(price > 0 for *_, price in prices)


def test_the_same_seed_gives_the_same_data_and_scale_scales() -> None:
    assert list(generate(0.1, seed=5).prices) == list(generate(0.1, seed=5).prices)
    small, large = (sum(1 for _ in generate(scale).prices) for scale in (0.5, 2.0))
    assert 3.5 < large / small < 4.5
