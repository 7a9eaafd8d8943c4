#!/usr/bin/python3
"""Writes docs/RESULTS.md from the finished jobs scripts/results leaves behind.

Each job is read from JOBS/NAME.result.json (`tlctl get --json`), where NAME
is pretrain or METHOD-SIZE-SEED; figures are the test report's (the 5,000
test images of classes 5-9), wall time is the job's end_time - start_time.
"""

import argparse
import datetime
import json
import os
import statistics
import sys

METHODS = [
    ("scratch", "scratch (FULL, random init)"),
    ("feature-extraction", "feature extraction (frozen pretrained backbone)"),
    ("fine-tune", "fine-tuning (pretrained, last 2 groups)"),
    ("auto", "AUTO (its probe chooses the strategy)"),
]
STRATEGY_METHOD = {"FEATURE_EXTRACTION": "feature-extraction", "FINE_TUNE": "fine-tune"}
TRANSFER = ["feature-extraction", "fine-tune"]
SPOKEN = {"feature-extraction": "feature extraction", "fine-tune": "fine-tuning"}


def parse_time(text):
    # RFC 3339 as protobuf writes it: "2026-01-02T03:04:05.678Z", up to 9 digits.
    stamp, _, fraction = text.rstrip("Z").partition(".")
    seconds = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
    return seconds.timestamp() + (float("0." + fraction) if fraction else 0.0)


def load(jobs_dir, name):
    path = os.path.join(jobs_dir, name + ".result.json")
    try:
        with open(path) as f:
            job = json.load(f)
    except (OSError, ValueError) as error:
        sys.exit(f"results_table: cannot read {path}: {error}")
    if job.get("state") != "SUCCEEDED":
        sys.exit(f"results_table: {path}: job state is {job.get('state')}, not SUCCEEDED")
    return job


def wall_seconds(job):
    return parse_time(job["end_time"]) - parse_time(job["start_time"])


def mean_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sizes", required=True, help="space-separated images per class")
    parser.add_argument("--seeds", required=True, help="space-separated seeds")
    parser.add_argument("--nproc", required=True)
    parser.add_argument("--cpu", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--pretrain-per-class", type=int, required=True)
    parser.add_argument("--pretrain-epochs", type=int, required=True)
    parser.add_argument("--run-seconds", type=int, required=True)
    parser.add_argument("--reduced", action="store_true",
                        help="the run changed the defaults that give the full table")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split()]
    seeds = [int(s) for s in args.seeds.split()]

    pretrain = load(args.jobs, "pretrain")
    rows = []
    accuracy = {}  # (size, method) -> mean test accuracy
    for size in sizes:
        for method, label in METHODS:
            jobs = [load(args.jobs, f"{method}-{size}-{seed}") for seed in seeds]
            reports = [job["result"]["test_report"] for job in jobs]
            acc = mean_sd([r.get("accuracy", 0.0) for r in reports])
            f1 = mean_sd([r.get("macro_f1", 0.0) for r in reports])
            wall = statistics.mean(wall_seconds(job) for job in jobs)
            training = jobs[0]["spec"]["training"]
            accuracy[(size, method)] = acc[0]
            rows.append(f"| {size} | {label} | {acc[0]:.4f} ± {acc[1]:.4f} | "
                        f"{f1[0]:.4f} ± {f1[1]:.4f} | {wall:.1f} | "
                        f"{training['epochs']} × {training['batch_size']} |")

    verdicts = []
    for size in [s for s in sizes if s in (10, 50)] or sizes:
        scratch = accuracy[(size, "scratch")]
        beaten = [m for m in TRANSFER if accuracy[(size, m)] > scratch]
        losing = [m for m in TRANSFER if m not in beaten]
        if not losing:
            verdicts.append(f"at {size} images per class both feature extraction and "
                            f"fine-tuning beat scratch in mean test accuracy "
                            f"({accuracy[(size, 'feature-extraction')]:.4f} and "
                            f"{accuracy[(size, 'fine-tune')]:.4f} against {scratch:.4f})")
        elif not beaten:
            verdicts.append(f"at {size} images per class neither feature extraction nor "
                            f"fine-tuning beats scratch ({scratch:.4f})")
        else:
            verdicts.append(f"at {size} images per class {SPOKEN[beaten[0]]} beats scratch "
                            f"({accuracy[(size, beaten[0])]:.4f} against {scratch:.4f}) "
                            f"but {SPOKEN[losing[0]]} does not ({accuracy[(size, losing[0])]:.4f})")
    large = [s for s in sizes if s not in (10, 50)]
    for size in large:
        scratch = accuracy[(size, "scratch")]
        best = max(TRANSFER, key=lambda m: accuracy[(size, m)])
        relation = "still beats" if accuracy[(size, best)] > scratch else "no longer beats"
        verdicts.append(f"at {size} images per class the better transfer method ({SPOKEN[best]}, "
                        f"{accuracy[(size, best)]:.4f}) {relation} scratch ({scratch:.4f})")

    # Where AUTO chose well: against the better of feature extraction and fine-tuning run on the
    # same images with the same seed.
    auto_rows = []
    well = 0
    for size in sizes:
        for seed in seeds:
            job = load(args.jobs, f"auto-{size}-{seed}")
            decision = job["result"].get("auto_strategy", {})
            chosen = decision.get("chosen", "?")
            test = {m: load(args.jobs, f"{m}-{size}-{seed}")["result"]["test_report"]
                    .get("accuracy", 0.0) for m in TRANSFER}
            best = max(TRANSFER, key=lambda m: test[m])
            picked = STRATEGY_METHOD.get(chosen)
            good = picked is not None and test[picked] >= test[best] - 0.005
            well += good
            auto_rows.append(
                f"| {size} | {seed} | {decision.get('feature_extraction_accuracy', 0.0):.3f} | "
                f"{decision.get('fine_tune_accuracy', 0.0):.3f} | {chosen} | "
                f"{test['feature-extraction']:.4f} / {test['fine-tune']:.4f} | "
                f"{'yes' if good else 'no'} |")
    auto_total = len(sizes) * len(seeds)

    p_report = pretrain["result"].get("val_report", {})
    p_spec = pretrain["spec"]["training"]
    today = datetime.date.today().isoformat()
    lines = [
        "# Results: what transfer learning buys on Fashion-MNIST",
        "",
        "Written by `scripts/results`; do not edit by hand, run it again.",
        "",
        "A small CNN (`smallcnn`, `tools/export_backbone.py`) is pretrained on the",
        "ten-class Fashion-MNIST's classes 0-4 (T-shirt, Trouser, Pullover, Dress,",
        "Coat) and then transferred to classes 5-9 (Sandal, Shirt, Sneaker, Bag,",
        "Ankle boot), which it never saw, from few training images per class.",
        "Every transfer job is scored once, at its end, on all 5,000 test images",
        "of classes 5-9 (`dataset.testDir`; no validation split during training).",
        "Figures are the mean ± sample standard deviation over the seeds "
        f"{', '.join(map(str, seeds))}.",
        "",
        "| images per class | method | test accuracy | test macro F1 | mean wall time per job (s) | epochs × batch |",
        "| ---: | --- | --- | --- | ---: | --- |",
        *rows,
        "",
        "Transfer against scratch: " + "; ".join(verdicts) + ".",
        "",
        "## What AUTO chose",
        "",
        "AUTO's probe (a frozen linear head against a short fine-tune, on a held-out",
        "slice of the job's training images) and its choice, beside the test accuracy",
        "that feature extraction and fine-tuning reached on the same images and seed.",
        "It chose well when its strategy is within 0.005 of the better one.",
        "",
        "| images per class | seed | probe: frozen head | probe: fine-tune | chosen | test: feature extraction / fine-tuning | chose well |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- |",
        *auto_rows,
        "",
        f"AUTO chose well in {well} of {auto_total} jobs.",
        "",
        "## How it was run",
        "",
        f"- Command: `{args.command}` (the whole run took {args.run_seconds} s).",
        *([] if not args.reduced else [
            "  **A reduced run**: the environment in the command changed the defaults",
            "  (images per class 10 50 500, seeds 1 2 3, 6000 pretraining images per class,",
            "  3 pretraining epochs, transfer epochs 30 / 20 / 8 by size)."]),
        f"- Machine: {args.nproc} cores (`nproc`), CPU \"{args.cpu}\", one `tlworker`; date {today}.",
        f"- Pretraining: FULL, {args.pretrain_per_class} training images per class "
        f"({args.pretrain_per_class * 5} in all), {args.pretrain_epochs} epochs, Adam "
        f"{p_spec['learning_rate']}; accuracy "
        f"{p_report.get('accuracy', 0.0):.4f} on the 5,000 test images of classes 0-4; "
        f"{wall_seconds(pretrain):.0f} s.",
        "- Scratch: FULL from a randomly initialised smallcnn exported with the job's",
        "  seed, Adam 0.003, horizontal flips.",
        "- Feature extraction: FEATURE_EXTRACTION from the pretrained backbone, Adam",
        "  0.01 on the new head, no flips (so the backbone's features are computed once).",
        "- Fine-tuning: FINE_TUNE from the pretrained backbone, its last 2 layer groups",
        "  and the head train, Adam 0.003 (backbone 0.1 ×), horizontal flips.",
        "- AUTO: as fine-tuning, with the strategy (and the backbone rate's default)",
        "  left to its probe; its wall time includes the probe.",
        "- Images: 28 px Fashion-MNIST resized to 36 and center-cropped to 32 (the",
        "  smallcnn manifest). Seed s trains on the s-th disjoint block of images per",
        "  class (`idx_to_folder --skip-per-class`), so seeds differ in their images as",
        "  well as in initialisation, shuffling and flips.",
        "- Wall time is a job's start to its end on the worker (data checks, training,",
        "  scoring the 5,000 test images, export).",
        "",
    ]
    # The section scripts/recipe_study.py writes (how the defaults were
    # chosen) comes from other runs: it is kept as it stands.
    kept = ""
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = f.read()
        start, end = "<!-- recipe-study: start -->", "<!-- recipe-study: end -->"
        if start in old and end in old:
            kept = "\n" + old[old.index(start):old.index(end) + len(end)] + "\n"
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + kept)


if __name__ == "__main__":
    main()
