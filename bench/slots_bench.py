#!/usr/bin/python3
"""What worker slots buy: 4 feature-extraction jobs on one CPU worker.

Submits the same 4 FEATURE_EXTRACTION jobs (ResNet-18 on generated photos,
each job its own folder of images, no feature cache, float32) to a real
tlserver and tlworker on 127.0.0.1 twice: once to a worker with one slot
(the jobs run one after another, each on every core) and once to a worker
started with --slots 2 (two at a time, each slot on half the cores). Prints
each job's wall time, the makespan of the four (first submission to last
end) and the ratio, and writes OUT/slots_bench.json.

  bench/slots_bench.py
  TL_BENCH_QUICK=1 bench/slots_bench.py

Knobs (environment): TL_BENCH_BUILD (build folder, default build/; needs
tlserver, tlworker and tl_python_stubs built), TL_BENCH_OUT (default
bench-results/), TL_BENCH_SLOTS (default 2).
"""
import json
import os
import pathlib
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from local_cluster import (LocalCluster, exported_backbone, generated_photos,  # noqa: E402
                           import_client, seconds, wait_for_job)

QUICK = os.environ.get("TL_BENCH_QUICK") == "1"
BUILD = pathlib.Path(os.environ.get("TL_BENCH_BUILD", ROOT / "build")).resolve()
OUT = pathlib.Path(os.environ.get("TL_BENCH_OUT", ROOT / "bench-results")).resolve()
SLOTS = int(os.environ.get("TL_BENCH_SLOTS", "2"))
JOBS = 4
CLASSES = 3
PER_CLASS = 10 if QUICK else 60  # of each job's folder
IMAGE_SIZE = 96 if QUICK else 160
EPOCHS = 5 if QUICK else 20


def prepare(data: pathlib.Path):
    """A folder of photos per job (generated once, split), and the backbone."""
    every = data / "photos-all"
    generated_photos(every, CLASSES, JOBS * PER_CLASS)
    for job in range(JOBS):
        folder = data / f"photos-{job}"
        if folder.exists():
            continue
        for name in sorted(p.name for p in every.iterdir()):
            (folder / name).mkdir(parents=True)
            images = sorted((every / name).iterdir())[job * PER_CLASS:(job + 1) * PER_CLASS]
            for image in images:
                os.link(image, folder / name / image.name)
    exported_backbone(data / "resnet18.pt")


def job_spec(job: int):
    return {
        "name": f"slots-fe-{job}",
        "backbone": {"path": "resnet18.pt"},
        "dataset": {"trainDir": f"photos-{job}", "valFraction": 0.2},
        "preprocessing": {"imageSize": IMAGE_SIZE, "horizontalFlip": False},
        "training": {"strategy": "FEATURE_EXTRACTION", "epochs": EPOCHS, "batchSize": 32,
                     "precision": "FP32"},
    }


def run(run_dir: pathlib.Path, data: pathlib.Path, slots: int):
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "artifacts").mkdir(parents=True)
    (run_dir / "data").symlink_to(data)
    from tl_client import Client
    flags = ["--feature_cache=false", f"--slots={slots}"]
    with LocalCluster(run_dir, BUILD, flags) as cluster:
        with Client(cluster.address, token=cluster.token) as client:
            # Every slot connected before the first submission, so the runs start alike.
            cluster.wait_for_worker_sessions(slots)
            started = time.time()
            ids = [client.submit(job_spec(job)).id for job in range(JOBS)]
            jobs = [wait_for_job(client, job_id, limit_s=3600) for job_id in ids]
            makespan = time.time() - started
            for job in jobs:
                if job.state != 4:
                    raise SystemExit(f"job {job.id} ended {job.state}: {job.error}")
            return {"slots": slots, "makespan_s": makespan,
                    "jobs": [{"id": job.id, "worker_id": job.worker_id,
                              "wall_s": seconds(job.end_time) - seconds(job.create_time),
                              "val_accuracy": job.result.final_metrics.val_accuracy}
                             for job in jobs]}


def main():
    started = time.time()
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "slots-data"
    prepare(data)
    import_client(BUILD)
    figures = {}
    for slots in (1, SLOTS):
        figures[slots] = run(OUT / f"slots-{slots}", data, slots)
        print(f"slots_bench: {slots} slot(s): {figures[slots]['makespan_s']:.1f} s",
              file=sys.stderr, flush=True)
    one, many = figures[1], figures[SLOTS]
    result = {"jobs": JOBS, "images_per_job": CLASSES * PER_CLASS, "image_size": IMAGE_SIZE,
              "epochs": EPOCHS, "cores": os.cpu_count(), "slots": SLOTS,
              "one_slot_makespan_s": one["makespan_s"],
              "slots_makespan_s": many["makespan_s"],
              "speedup": one["makespan_s"] / many["makespan_s"],
              "run_s": time.time() - started, "raw": figures}
    (OUT / "slots_bench.json").write_text(json.dumps(result, indent=1))
    print(f"| jobs | images per job | one slot: makespan (s) | {SLOTS} slots: makespan (s) | "
          "speedup | one slot: job wall (s) | slots: job wall (s) |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | --- |")
    print(f"| {JOBS} | {CLASSES * PER_CLASS} at {IMAGE_SIZE} px | {one['makespan_s']:.1f} | "
          f"{many['makespan_s']:.1f} | {result['speedup']:.2f} | "
          f"{', '.join('%.1f' % j['wall_s'] for j in one['jobs'])} | "
          f"{', '.join('%.1f' % j['wall_s'] for j in many['jobs'])} |")
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}))


if __name__ == "__main__":
    main()
