"""Per-kind fine-tuning on a selection run: the stage-1 model fine-tuned twice, on the vehicle and on the
pedestrian training rows apart (as the challenge's second team trained a model per kind), against the
run's shared fine-tuning, each kind's queries ranked by its own model, on the run's test split.

Two schedules: the same samples (the shared fine-tuning one epoch of the whole training CSV, each
per-kind one an epoch of its kind's rows), and the same number of steps (each per-kind one as many
epochs of its rows as make the shared one's length). A batch of one kind has harder negatives: every
caption in it is of the same kind. Each model gets its own attribute heads (fitted as the notebook fits them),
and the queries are ranked with the run's recorded settings, with the gallery balance and without it
(a per-kind model's balance weighs the gallery against its kind's queries only: the shared one's against
all of them).

    .venv/bin/python benchmarks/per_kind.py --run log/dev1-p4 > docs/shift/per-kind-seed1.txt
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from traffic_retrieval.core.evaluation import evaluate
from traffic_retrieval.core.fileio import atomic_write_text
from traffic_retrieval.core.attributes import kind_of
from traffic_retrieval.core.routing import merge_by_index, route, split_by_kind
from traffic_retrieval.core.submission import write_submission
from traffic_retrieval.retrieval.balance import Balance
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.fusion import AttributeHeads, Fusion
from traffic_retrieval.retrieval.gallery import encode_gallery
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.pipeline import rank_queries
from traffic_retrieval.retrieval.run_settings import resolve
from traffic_retrieval.training import heads as fitting
from traffic_retrieval.training import train
from traffic_retrieval.training.runs import recorded

from study_run import StudyRun, official


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a reproduce run (its stage 1 is RUN-pretrain)")
    ap.add_argument("--logs", type=Path, default=Path("log"))
    a = ap.parse_args()
    run = StudyRun.open(a.run)
    notebook = recorded(a.run)["notebook"]
    stage1 = str(a.run.parent / f"{a.run.name}-pretrain")
    csv = run.data.parent / "prepared" / "train.csv"
    rows = pd.read_csv(csv, sep="\t")
    encode = EncodeSettings(cache_dir=Path("data/cache"), workers=2, progress=False)
    shared = resolve(a.run).query
    settings = replace(shared, balance=Balance())
    kinds = route(run.queries, run.vocab)
    parts = split_by_kind(kinds)
    kind_rows = {kind: rows[[kind_of(attribute) == kind for attribute in rows["attribute"].astype(str)]]
                 for kind in ("vehicle", "pedestrian")}
    schedules = {"same samples (1 epoch each)": {kind: 1 for kind in kind_rows},
                 "same steps as the shared one": {kind: max(1, round(len(rows) / len(part)))
                                                  for kind, part in kind_rows.items()}}
    balances = {"balance": settings, "no balance": replace(settings, balance=None)}
    gallery = encode_gallery(run.loaded, run.paths, encode, shared.flip_tta)
    out = {f"shared fine-tuning (the run's), {b}": _score(run, rank_queries(run.loaded, gallery, run.queries, run.vocab,
                                                                           q).top_names())
           for b, q in balances.items()}
    seconds = {}
    for label, epochs in schedules.items():
        rankings = {b: {} for b in balances}
        for kind, part in kind_rows.items():
            kind_csv = run.data.parent / "prepared" / f"train-{kind}.csv"
            atomic_write_text(kind_csv, part.to_csv(sep="\t", index=False, lineterminator="\n"))
            name = f"{a.run.name}-{kind}-e{epochs[kind]}"
            s = train.default_settings(notebook["model"], stage1)
            s.seed, s.workers, s.epochs = notebook["seed"], 2, epochs[kind]
            s.batch_size = notebook.get("batch_size") or s.batch_size
            start = time.perf_counter()
            job = train.TrainJob(kind_csv, notebook["model"], stage1, logs=a.logs, name=name,
                                 resume=(a.logs / name).exists())
            checkpoint = train.train(job, s)
            seconds[name] = time.perf_counter() - start
            loaded = load_model(ModelSettings(notebook["model"], str(checkpoint)))
            heads_file = a.logs / name / "attribute_heads.safetensors"
            if not heads_file.exists():
                fitting.fit_heads(loaded, run.data, run.vocab, encode, fitting.HeadData(degraded=1)).save(heads_file)
            fusion = Fusion(AttributeHeads.load(heads_file), shared.fusion.weight, adapt=shared.fusion.adapt)
            kind_gallery = encode_gallery(loaded, run.paths, encode, shared.flip_tta)
            queries = [run.queries[i] for i in parts[kind]]
            for b, query in balances.items():
                rankings[b][kind] = rank_queries(loaded, kind_gallery, queries, run.vocab,
                                                 replace(query, fusion=fusion)).top_names()
        detail = ", ".join(f"{kind} {n} epoch{'s' if n > 1 else ''} of {len(kind_rows[kind])} rows"
                           for kind, n in epochs.items())
        for b in balances:
            names = merge_by_index({k: (parts[k], rankings[b][k]) for k in kind_rows}, len(run.queries))
            out[f"per-kind fine-tunings, {label}: {detail}; {b}"] = _score(run, names)
    print(f"Per-kind fine-tuning on {run.data}, run {a.run} (stage 1 {stage1}, the shared fine-tuning 1 epoch of "
          f"{len(rows)} rows): official mAP@10 on its test split; fine-tuning seconds: "
          + ", ".join(f"{name} {t:.0f}" for name, t in seconds.items()) + ".\n")
    print("| ranking | all | vehicle | pedestrian |\n|---|---|---|---|")
    for label, r in out.items():
        print(f"| {label} | {r['all']:.4f} | {r['vehicle']:.4f} | {r['pedestrian']:.4f} |")
    print("\n" + json.dumps({"rows": out, "seconds": seconds}))


def _score(run: StudyRun, top: list[list[str]]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.json"
        write_submission(path, list(zip(run.queries, top)))
        return official(evaluate(path, run.data / "test" / "test_ground_truth.txt"))


if __name__ == "__main__":
    main()
