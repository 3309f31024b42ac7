"""Does attribute supervision in fine-tuning put the attributes into the image embeddings?

For each weight W, fine-tunes the stage-1 model of a selection run (RUN-pretrain) as the reproduce
notebook does, with ``--attribute-loss W`` (training/attribute_loss.py; W 0 is the run itself, the
default fine-tuning), fits the attribute heads as the notebook does, and prints the heads' accuracy per
group on the raw training images (web style, the images the loss trained on) and on the test
gallery (surveillance style), the accuracy of a probe fitted on half the gallery with the labels the
synthetic data knows and scored on the other half (what the surveillance embeddings hold at all, shift
or not), and official mAP@10 with the default fusion. Run it on a run of
another seed than the one reported (each fine-tuning about 2.5 minutes on 2 cores, then the heads):

    .venv/bin/python benchmarks/attribute_loss.py --run log/dev-seed1 --weights 0 1 8 > docs/shift/attribute-loss-seed1.txt
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from traffic_retrieval.core.attribute_groups import encode_subject
from traffic_retrieval.core.evaluation import evaluate
from traffic_retrieval.core.layout import find_vocabulary, split_queries_and_gallery
from traffic_retrieval.core.submission import write_submission
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.fusion import AttributeHeads, Fusion
from traffic_retrieval.retrieval.gallery import encode_gallery
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.pipeline import QuerySettings, rank_queries
from traffic_retrieval.synthetic.generate import drawn_subjects, written_by_synth
from traffic_retrieval.training import augment, heads, prepare, train
from traffic_retrieval.retrieval.weights import run_model
from traffic_retrieval.training.runs import run_data

from study_run import official

GROUPS = ("colour", "type", "brand", "gender", "age", "orientation", "sleeve", "handbag", "backpack", "skirt_dress")


def measure(run: Path, data: Path, encode: EncodeSettings) -> dict:
    """Heads fitted as the notebook fits them; their accuracy on the raw train images and the gallery; mAP@10."""
    loaded = load_model(ModelSettings(None, str(run)))
    vocab = find_vocabulary(data)
    d = heads.HeadData(degraded=1)
    emb, targets, groups = heads.training_views(loaded, data, vocab, encode, d)
    fitted = AttributeHeads(groups, emb.shape[1], meta={"model": loaded.name}).fit(emb, targets)
    raw = len(emb) // (d.degraded + 1)  # the raw views come first
    queries, paths = split_queries_and_gallery(data, "test")
    gallery = encode_gallery(loaded, paths, encode)
    subjects = drawn_subjects(data, "test")
    truth = np.array([encode_subject(subjects[p.name], groups) for p in paths])
    half = np.random.default_rng(0).permutation(len(paths))
    fit_on, score_on = half[:len(half) // 2], half[len(half) // 2:]
    probe = AttributeHeads(groups, emb.shape[1]).fit(np.asarray(gallery.embeddings)[fit_on], truth[fit_on])
    ranking = rank_queries(loaded, gallery, queries, vocab, QuerySettings(fusion=Fusion(fitted)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "submission.json"
        write_submission(out, list(zip(queries, ranking.top_names())))
        m = evaluate(out, data / "test" / "test_ground_truth.txt")
    return {"train": fitted.accuracy(emb[:raw], targets[:raw]),
            "test": fitted.accuracy(np.asarray(gallery.embeddings), truth, gallery.mean()),
            "probe": probe.accuracy(np.asarray(gallery.embeddings)[score_on], truth[score_on]),
            "map": official(m)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a reproduce run folder (its stage 1: RUN-pretrain)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 8.0])
    a = ap.parse_args()
    data = run_data(a.run)
    seed = written_by_synth(data)["seed"]
    stage1, model = a.run.parent / f"{a.run.name}-pretrain", run_model(a.run)  # fine-tuned as the run was
    csv = prepare.prepare(data, train_labels=augment.augmented_path(data, "train"), progress=False) / "train.csv"
    encode = EncodeSettings(cache_dir=Path("data/cache"), workers=2, progress=False)
    results = {}
    for weight in a.weights:
        if weight == 0:
            results[weight] = measure(a.run, data, encode)
            continue
        name = f"{a.run.name}-attribute-loss-{weight:g}"
        s = train.default_settings(model, str(stage1))
        s.seed, s.attribute_loss = seed, weight
        run = a.run.parent / name
        if not train.final_checkpoint(a.run.parent, name, s.epochs).is_file():
            train.train(train.TrainJob(csv, model, str(stage1), logs=a.run.parent, name=name,
                                       resume=run.exists()), s)
        results[weight] = measure(run, data, encode)
    print(f"Attribute supervision in fine-tuning, on {data} (seed {seed}), from {stage1}: heads fitted as the "
          "reproduce notebook fits them, their accuracy on the raw training images (train: web style) and on the "
          "test gallery (test: centred on its mean); a probe fitted on half the gallery with its drawn labels, "
          "scored on the other half (probe); official mAP@10 with the default fusion.\n")
    print("| --attribute-loss | images | " + " | ".join(GROUPS) + " |\n|---|---|" + "---|" * len(GROUPS))
    for weight, r in results.items():
        for where in ("train", "test", "probe"):
            print(f"| {weight:g} | {where} | " + " | ".join(f"{r[where][g]:.3f}" for g in GROUPS) + " |")
    print("\n| --attribute-loss | all | vehicle | pedestrian |\n|---|---|---|---|")
    for weight, r in results.items():
        print(f"| {weight:g} | {r['map']['all']:.4f} | {r['map']['vehicle']:.4f} | {r['map']['pedestrian']:.4f} |")
    print("\n" + json.dumps({f"{w:g}": r for w, r in results.items()}))


if __name__ == "__main__":
    main()
