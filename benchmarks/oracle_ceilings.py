"""Oracle ceilings of the synthetic test split: how far knowing some attributes of every image gets.

An oracle that knows a subset of each test image's true attributes ranks, for every query, the
images that agree with the query on that subset first (in random order), then the rest (in random
order), and is scored like a submission (official mAP@10, the organisers' normalisation). Knowing
everything a query names scores 1.0 by construction; the subsets show what each attribute is worth,
and so what a model must recover from the surveillance-style images to get there.

    .venv/bin/python benchmarks/oracle_ceilings.py --seeds 0 1 2 > docs/shift/oracle-ceilings.txt

Nothing is drawn: the test split's attributes come from the synthetic plan of each seed.
"""

from __future__ import annotations

import argparse
import json
from typing import Callable

import numpy as np

from traffic_retrieval.core.attributes import Pedestrian, Vehicle
from traffic_retrieval.core.metrics import score
from traffic_retrieval.synthetic.plan import ground_truth, plan

VEHICLE_ORACLES: dict[str, Callable[[Vehicle], tuple]] = {
    "colour": lambda v: (v.colour,),
    "type": lambda v: (v.type,),
    "colour + type": lambda v: (v.colour, v.type),
    "brand": lambda v: (v.brand,),
    "colour + type + brand (all)": lambda v: (v.colour, v.type, v.brand),
}
BODY = ("gender", "age", "orientation")
CLOTHES = ("sleeve", "long_coat", "skirt_dress")
CARRIED = ("handbag", "shoulder_bag", "backpack", "holding", "hat")
FINE = ("glasses", "upper_stripe", "upper_logo", "upper_plaid", "upper_splice", "boots")
PEDESTRIAN_ORACLES: dict[str, tuple[str, ...]] = {
    "gender + age + orientation": BODY,
    "+ sleeve, long coat, skirt": BODY + CLOTHES,
    "+ bags, holding, hat": BODY + CLOTHES + CARRIED,
    "+ glasses, upper patterns, boots (all)": BODY + CLOTHES + CARRIED + FINE,
}


def oracle_map(items, key, rng: np.random.Generator) -> float:
    """Official mAP@10 of the oracle that knows ``key(subject)`` of every test image of one kind."""
    names = [it.name for it in items]
    keys = [key(it.subject) for it in items]
    gt = ground_truth(items)
    relevant = [set(line.split("$")[1:]) for line in gt]
    rankings = []
    for query_key in keys:
        order = rng.permutation(len(items))
        agree = [i for i in order if keys[i] == query_key]
        rest = [i for i in order if keys[i] != query_key]
        rankings.append([names[i] for i in (agree + rest)[:10]])
    return score(rankings, relevant)["map_official"]


def ceilings(seed: int, test: int) -> dict[str, float]:
    items = plan({"test": test}, seed)["test"]
    vehicles = [it for it in items if isinstance(it.subject, Vehicle)]
    pedestrians = [it for it in items if isinstance(it.subject, Pedestrian)]
    rng = np.random.default_rng(seed)
    out = {f"vehicle: {name}": oracle_map(vehicles, key, rng) for name, key in VEHICLE_ORACLES.items()}
    for name, fields in PEDESTRIAN_ORACLES.items():
        out[f"pedestrian: {name}"] = oracle_map(pedestrians, lambda p, f=fields: tuple(getattr(p, x) for x in f), rng)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--test", type=int, default=1000, help="test images (= queries) per seed, as the default run")
    a = ap.parse_args()
    results = {seed: ceilings(seed, a.test) for seed in a.seeds}
    rows = list(next(iter(results.values())))
    print(f"Oracle ceilings, official mAP@10 on the synthetic test split ({a.test} queries), seeds "
          f"{', '.join(map(str, a.seeds))}: mean (min-max over seeds).\n")
    print("| the oracle knows | mAP@10 official |\n|---|---|")
    for row in rows:
        values = [results[s][row] for s in a.seeds]
        print(f"| {row} | {np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f}) |")
    print("\n" + json.dumps({str(s): r for s, r in results.items()}))


if __name__ == "__main__":
    main()
