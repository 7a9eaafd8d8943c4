#!/usr/bin/python3
"""What the shared feature cache saves a sweep of frozen-backbone heads.

Runs the same GRID sweep twice through a real tlserver and tlworker on
127.0.0.1: 8 FEATURE_EXTRACTION trials (learning rate x label smoothing) of
ResNet-18 on generated photos, every trial on the same images. Once with
the worker's feature cache
(the default: the first trial computes the backbone's features of the whole
folder, the others read them), once with --feature_cache=false (each trial
computes its own). Prints each trial's wall time and the sweeps' ratio, and
writes OUT/sweep_features.json.

  bench/sweep_features.py                 # 8 trials, 600 photos at 160 px
  TL_BENCH_QUICK=1 bench/sweep_features.py

Knobs (environment): TL_BENCH_BUILD (build folder, default build/; needs
tlserver, tlworker and tl_python_stubs built), TL_BENCH_OUT (default
bench-results/).
"""
import json
import os
import pathlib
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from local_cluster import (LocalCluster, exported_backbone, generated_photos,  # noqa: E402
                           import_client, seconds, wait_for_sweep)

QUICK = os.environ.get("TL_BENCH_QUICK") == "1"
BUILD = pathlib.Path(os.environ.get("TL_BENCH_BUILD", ROOT / "build")).resolve()
OUT = pathlib.Path(os.environ.get("TL_BENCH_OUT", ROOT / "bench-results")).resolve()
CLASSES = 3
PER_CLASS = 20 if QUICK else 200
IMAGE_SIZE = 96 if QUICK else 160
EPOCHS = 10 if QUICK else 30


def prepare(data: pathlib.Path):
    generated_photos(data / "photos", CLASSES, PER_CLASS)
    exported_backbone(data / "resnet18.pt")


def sweep_spec(name):
    return {
        "name": name,
        "base": {
            "backbone": {"path": "resnet18.pt"},
            "dataset": {"trainDir": "photos", "valFraction": 0.2},
            "preprocessing": {"imageSize": IMAGE_SIZE, "horizontalFlip": False},
            # Float32, as the figures in docs/BENCHMARKS.md were measured.
            "training": {"strategy": "FEATURE_EXTRACTION", "epochs": EPOCHS, "batchSize": 32,
                         "precision": "FP32"},
        },
        "space": [
            {"field": "training.learning_rate", "values": [0.001, 0.003, 0.01, 0.03]},
            {"field": "training.label_smoothing", "values": [0, 0.1]},
        ],
        "method": "GRID",
        "objective": {"metric": "VAL_ACCURACY"},
        "maxTrials": 8,
        "maxParallelTrials": 1,
        # The trials alone: a refit would be a ninth job on the features.
        "refit": False,
    }


def run_sweep(run_dir: pathlib.Path, data: pathlib.Path, cache: bool):
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "artifacts").mkdir(parents=True)
    (run_dir / "data").symlink_to(data)
    flags = [] if cache else ["--feature_cache=false"]
    from tl_client import Client
    with LocalCluster(run_dir, BUILD, flags) as cluster:
        with Client(cluster.address, token=cluster.token) as client:
            spec = sweep_spec("features-" + ("shared" if cache else "per-trial"))
            sweep = wait_for_sweep(client, client.submit_sweep(spec).id, limit_s=3600)
            if sweep.state != 2:
                raise SystemExit(f"sweep {sweep.id} ended {sweep.state}: {sweep.error}")
            trials = []
            for trial in sorted(sweep.trials, key=lambda t: t.index):
                job = client.get(trial.job_id)
                trials.append({"index": trial.index,
                               "wall_s": seconds(job.end_time) - seconds(job.create_time),
                               "features_from_disk": job.result.features_from_disk,
                               "val_accuracy": trial.objective})
            return {"sweep_s": seconds(sweep.end_time) - seconds(sweep.create_time),
                    "trials": trials}


def main():
    started = time.time()
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "sweep-features-data"
    prepare(data)
    import_client(BUILD)
    figures = {}
    # The run without the cache first: the other then starts from no file either.
    for cache in (False, True):
        key = "shared" if cache else "per_trial"
        figures[key] = run_sweep(OUT / f"sweep-features-{key}", data, cache)
        print(f"sweep_features: {key}: {figures[key]['sweep_s']:.1f} s", file=sys.stderr,
              flush=True)
    shared, per_trial = figures["shared"], figures["per_trial"]
    later = [t["wall_s"] for t in shared["trials"][1:]]
    result = {
        "images": CLASSES * PER_CLASS, "image_size": IMAGE_SIZE, "epochs": EPOCHS,
        "trials": len(shared["trials"]),
        "per_trial_sweep_s": per_trial["sweep_s"], "shared_sweep_s": shared["sweep_s"],
        "ratio": shared["sweep_s"] / per_trial["sweep_s"],
        "shared_first_trial_s": shared["trials"][0]["wall_s"],
        "shared_later_trial_s": statistics.median(later),
        "per_trial_trial_s": statistics.median(t["wall_s"] for t in per_trial["trials"]),
        "later_trials_from_disk": sum(t["features_from_disk"] for t in shared["trials"][1:]),
        "run_s": time.time() - started,
        "raw": figures,
    }
    (OUT / "sweep_features.json").write_text(json.dumps(result, indent=1))
    print("| trials | images | per-trial features: sweep (s) | shared: sweep (s) | ratio | "
          "shared: first trial (s) | shared: later trial, median (s) | later trials from disk |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {result['trials']} | {result['images']} at {IMAGE_SIZE} px | "
          f"{result['per_trial_sweep_s']:.1f} | {result['shared_sweep_s']:.1f} | "
          f"{result['ratio']:.2f} | {result['shared_first_trial_s']:.1f} | "
          f"{result['shared_later_trial_s']:.1f} | {result['later_trials_from_disk']} of "
          f"{result['trials'] - 1} |")
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}))


if __name__ == "__main__":
    main()
