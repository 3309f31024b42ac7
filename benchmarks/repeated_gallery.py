"""infer, index, search and serve, unchanged, on a gallery of N images made of a few thousand
synthetic ones repeated (hard links, no copies), with the time and peak RSS of each command.

    .venv/bin/python benchmarks/repeated_gallery.py --images 200000 | tee docs/scale/repeated_gallery-200k.txt

It draws a synthetic test split (``synth``, ``--distinct`` images and their queries) unless
``--source`` names a challenge layout, links its images ``--images`` times over into
``WORK/datasets/test/test_images`` (named ``NNNNNN-<name>``, so the gallery sorts as it was built),
saves one random initialisation of the tiny model (every command must use the same weights), and
runs each command as a user would, in its own process. Run again, it reuses the work folder
(an interrupted encoding continues from the store's shards). Repeated images rank as ties: the point is
that every command works at this size and what it costs, not the scores. ``serve`` is started,
asked 50 queries over HTTP, and stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

COMMAND = [sys.executable, "-m", "traffic_retrieval.apps.cli"]


def run(args: list[str], what: str) -> dict:
    """Run one command to its end: wall time and peak RSS (the largest of it and its waited children)."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"repeated-gallery-{os.getpid()}.log"
    start = time.perf_counter()
    with open(log, "w+") as out:
        proc = subprocess.Popen([*COMMAND, *args], stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    log.unlink()
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{what} failed ({proc.returncode}):\n{text[-3000:]}")
    rss = usage.ru_maxrss / 1024
    last = next((line for line in reversed(text.splitlines()) if line.strip() and "%|" not in line), "")
    print(f"{what:<28} {seconds:>8.1f} s  peak RSS {rss:>7,.0f} MiB   {last.strip()[:160]}", flush=True)
    return {"what": what, "seconds": seconds, "peak_rss_mib": rss}


def serve(args: list[str], queries: list[str], port: int) -> dict:
    """Start serve, time its start-up and 50 queries over HTTP, stop it."""
    start = time.perf_counter()
    proc = subprocess.Popen([*COMMAND, "serve", *args, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/info", timeout=5) as r:
                images = json.load(r)["images"]
            break
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"serve failed:\n{proc.stderr.read()[-3000:]}")
            time.sleep(0.5)
    up = time.perf_counter() - start
    times = []
    for query in (queries * 50)[:50]:
        t = time.perf_counter()
        with urllib.request.urlopen(f"{base}/api/search?q={urllib.parse.quote(query)}&k=10", timeout=60) as r:
            assert len(json.load(r)["results"]) == 10
        times.append(1000 * (time.perf_counter() - t))
    proc.terminate()
    proc.wait(30)
    times.sort()
    p50, p95 = times[len(times) // 2], times[int(0.95 * (len(times) - 1))]
    print(f"{'serve --index ivfpq':<28} {up:>8.1f} s to answer /api/info ({images:,} images); /api/search over HTTP "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
    return {"what": "serve", "startup_s": up, "p50_ms": p50, "p95_ms": p95}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--distinct", type=int, default=2000, help="synthetic images drawn when --source is not given")
    p.add_argument("--source", type=Path, default=None, help="a challenge layout whose test split is repeated")
    p.add_argument("--work", type=Path, default=Path("/tmp/repeated-gallery"))
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()

    made = args.work / "made.json"  # what an earlier run of this script made here, reused as it is
    wanted = {"images": args.images, "distinct": args.distinct, "source": str(args.source)}
    if made.is_file() and json.loads(made.read_text()) != wanted:
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    source = args.source or args.work / "source"
    data = args.work / "datasets"
    weights = args.work / "random.pt"
    if not made.is_file():
        if args.source is None:
            run(["synth", "--out", str(source), "--train", "0", "--val", "0", "--test", str(args.distinct),
                 "--pretrain", "0"], f"synth {args.distinct} images")
        images = sorted((source / "test" / "test_images").iterdir())
        gallery = data / "test" / "test_images"
        gallery.mkdir(parents=True)
        start = time.perf_counter()
        for i in range(args.images):
            original = images[i % len(images)]
            os.link(original, gallery / f"{i:06d}-{original.name}")
        queries = (source / "test" / "test_text.txt").read_text().splitlines()
        (data / "test" / "test_text.txt").write_text("\n".join(queries[:1000]) + "\n")
        print(f"{args.images:,} gallery entries linked to {len(images):,} images in {time.perf_counter() - start:.1f} "
              f"s; {min(1000, len(queries)):,} queries", flush=True)

        import torch

        from traffic_retrieval.retrieval.models import ModelSettings, load_model

        torch.manual_seed(0)
        torch.save(load_model(ModelSettings("TR-ViT-Tiny", None)).model.state_dict(), weights)
        made.write_text(json.dumps(wanted))
    else:
        print(f"reusing {args.work} (its store continues where an interrupted encoding stopped)", flush=True)
    queries = (data / "test" / "test_text.txt").read_text().splitlines()
    common = ["--data", str(data), "--pretrained", str(weights), "--cache-dir", str(args.work / "cache")]
    steps = [
        run(["infer", *common, "--out", str(args.work / "plain.json")], "infer (encodes the gallery)"),
        run(["infer", *common, "--out", str(args.work / "plain.json")], "infer (from the store)"),
        run(["index", *common, "--out", str(args.work / "flat")], "index --kind flat"),
        run(["index", *common, "--out", str(args.work / "ivfpq"), "--kind", "ivfpq"], "index --kind ivfpq"),
        run(["infer", *common, "--out", str(args.work / "ivfpq.json"), "--index", str(args.work / "ivfpq")],
            "infer --index ivfpq"),
        run(["search", queries[0], *common, "--index", str(args.work / "flat")], "search --index flat"),
        run(["search", queries[0], *common, "--index", str(args.work / "ivfpq")], "search --index ivfpq"),
        serve([*common, "--index", str(args.work / "ivfpq")], queries, args.port),
    ]
    print(json.dumps({**wanted, "steps": steps}))


if __name__ == "__main__":
    main()
