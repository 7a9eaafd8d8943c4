#!/usr/bin/python3
"""Measures what transfer learning and tl's defaults buy, on two tasks, and
writes docs/RESULTS.md. Run by scripts/results (which installs and builds
first); everything it writes besides the table lives in results-run/.

It starts tlserver (with bearer tokens) and one tlworker on 127.0.0.1 and
runs real jobs through the Python client:
  1. pretraining: smallcnn (FULL) on Fashion-MNIST classes 0-4 for the first
     task, on all ten classes for the second (transfer_tasks.py);
  2. for each task, number of training images per class and seed:
     - the hand-set recipes: scratch (FULL from a random smallcnn), feature
       extraction, fine-tuning of the last 2 layer groups, and fine-tuning
       of every layer (FULL from the pretrained backbone), each with epochs,
       batch and learning rate set by hand per size;
     - defaults only: a job naming the backbone, the training images, the
       test images and the seed, nothing else;
     - AUTO: the same with `strategy: AUTO`;
     - a sweep (ASHA, at most 16 trials) over strategy, learning rate and
       layer groups, its result the best trial's model;
     each scored once, at its end, on the task's test images;
  3. the table: means over the seeds, the gaps to the best hand-set recipe,
     and what AUTO's probe measured.

Environment (defaults give the full table):
  TL_RESULTS_SIZES              Fashion-MNIST images per class ("10 50 500")
  TL_RESULTS_DIGITS_SIZES       digits images per class ("10 30")
  TL_RESULTS_SEEDS              training.seed values ("1 2 3")
  TL_RESULTS_PRETRAIN_PER_CLASS pretraining images per class of classes 0-4
                                (6000: all); the ten-class source uses half
                                as many per class, the same 30,000 in all
  TL_RESULTS_PRETRAIN_EPOCHS    pretraining epochs (3)
  TL_RESULTS_EPOCHS             hand-set transfer epochs for every size
  TL_RESULTS_SWEEP_TRIALS       trials per sweep (9; at most 16)
  TL_RESULTS_OUT                the Markdown file written (docs/RESULTS.md)
  TL_RESULTS_RESUME             1: keep the finished jobs in results-run/
"""
import argparse
import datetime
import json
import os
import pathlib
import shutil
import statistics
import time

import transfer_tasks as tasks
from local_cluster import LocalCluster, import_client, seconds, wait_for_job, wait_for_sweep

REPO = tasks.REPO
SUCCEEDED, SWEEP_SUCCEEDED = 4, 2


class Task:
    def __init__(self, key, title, source, classes, sizes, test, test_note, flips):
        self.key = key
        self.title = title
        self.source = source        # what the backbone was pretrained on
        self.classes = classes
        self.sizes = sizes
        self.test = test            # folder under data/
        self.test_note = test_note
        self.flips = flips          # whether the hand-set recipes flip


def knobs():
    env = os.environ
    sizes = [int(s) for s in env.get("TL_RESULTS_SIZES", "10 50 500").split()]
    digits_sizes = [int(s) for s in env.get("TL_RESULTS_DIGITS_SIZES", "10 30").split()]
    seeds = [int(s) for s in env.get("TL_RESULTS_SEEDS", "1 2 3").split()]
    k = {
        "seeds": seeds,
        "pretrain_per_class": int(env.get("TL_RESULTS_PRETRAIN_PER_CLASS", "6000")),
        "pretrain_epochs": int(env.get("TL_RESULTS_PRETRAIN_EPOCHS", "3")),
        "epochs": int(env["TL_RESULTS_EPOCHS"]) if env.get("TL_RESULTS_EPOCHS") else None,
        "sweep_trials": int(env.get("TL_RESULTS_SWEEP_TRIALS", "9")),
        "resume": env.get("TL_RESULTS_RESUME") == "1",
    }
    if not 2 <= k["sweep_trials"] <= 16:
        raise SystemExit("TL_RESULTS_SWEEP_TRIALS: between 2 and 16")
    for size in sizes:
        if size * max(seeds) > 6000:
            raise SystemExit(f"TL_RESULTS_SIZES: {size} images per class times seed "
                             f"{max(seeds)} exceeds the 6000 training images of a class")
    k["tasks"] = [
        Task("fashion", "Fashion-MNIST, classes 0-4 to classes 5-9",
             "Fashion-MNIST classes 0-4", 5, sizes, "fashion-test-5-9",
             "all 5,000 test images of classes 5-9", flips=True),
        Task("digits", "Fashion-MNIST (all ten classes) to handwritten digits",
             "all ten Fashion-MNIST classes", 10, digits_sizes, "digits-test",
             f"{tasks.DIGITS_TEST_PER_CLASS} test images per digit, 800 in all", flips=False),
    ]
    k["tasks"] = [t for t in k["tasks"] if t.sizes]
    if digits_sizes:
        if not tasks.DIGITS.exists():
            raise SystemExit(f"{tasks.DIGITS} is missing: install python3-sklearn")
        room = tasks.digits_train_per_class()
        if max(digits_sizes) * max(seeds) > room:
            raise SystemExit(f"TL_RESULTS_DIGITS_SIZES: {max(digits_sizes)} images per class "
                             f"times seed {max(seeds)} exceeds the {room} training images of "
                             "the smallest digit class")
    command = "scripts/results"
    for name in ("TL_RESULTS_SIZES", "TL_RESULTS_DIGITS_SIZES", "TL_RESULTS_SEEDS",
                 "TL_RESULTS_PRETRAIN_PER_CLASS", "TL_RESULTS_PRETRAIN_EPOCHS",
                 "TL_RESULTS_EPOCHS", "TL_RESULTS_SWEEP_TRIALS"):
        if env.get(name):
            command = f'{name}="{env[name]}" {command}'
    k["command"] = command
    # Any knob changes what is measured.
    k["reduced"] = command != "scripts/results"
    return k


def hand_set_length(size, knob):
    """(epochs, batch) of the hand-set recipes: fewer images train for more
    epochs, and the batch grows with the set so that 500 per class stays
    affordable on a CPU."""
    if size <= 10:
        epochs, batch = 30, 16
    elif size <= 50:
        epochs, batch = 20, 32
    else:
        epochs, batch = 8, 64
    return (knob or epochs), batch


# The methods in table order: key, label, whether a person set its recipe.
METHODS = [
    ("scratch", "scratch (FULL, random init)", True),
    ("feature-extraction", "feature extraction", True),
    ("fine-tune", "fine-tuning, last 2 groups", True),
    ("fine-tune-all", "fine-tuning, every layer (FULL)", True),
    ("defaults", "**defaults only**", False),
    # The same with float32 forward passes, beside the default precision (AUTO:
    # bf16 autocast on a CPU with bf16 instructions).
    ("defaults-fp32", "defaults only, `precision: FP32`", False),
    ("auto", "**AUTO**, defaults otherwise", False),
    ("sweep", "**sweep** (ASHA)", False),
]
HAND_SET = [m for m, _, hand in METHODS if hand]
LABEL = {m: label for m, label, _ in METHODS}


def job_specs(task, size, seed, pretrain_job, k):
    """The hand-set, defaults-only and AUTO jobs of one size and seed."""
    epochs, batch = hand_set_length(size, k["epochs"])
    train = f"{task.key}-{size}-seed-{seed}"
    # No validation split: the test images are scored once, at the end.
    data = {"trainDir": train, "valFraction": 0, "testDir": task.test}
    name = f"results-{task.key}-{{}}-{size}-seed-{seed}"
    pretrained = {"fromJob": pretrain_job}
    length = {"epochs": epochs, "batchSize": batch, "seed": seed, "optimizer": "ADAM"}
    return {
        "scratch": {
            "name": name.format("scratch"),
            "backbone": {"path": f"backbones/smallcnn-seed-{seed}.pt"}, "dataset": data,
            "preprocessing": {"horizontalFlip": task.flips},
            "training": {"strategy": "FULL", **length, "learningRate": 0.003}},
        "feature-extraction": {
            "name": name.format("feature-extraction"), "backbone": pretrained, "dataset": data,
            "preprocessing": {"horizontalFlip": False},
            "training": {"strategy": "FEATURE_EXTRACTION", **length, "learningRate": 0.01}},
        "fine-tune": {
            "name": name.format("fine-tune"), "backbone": pretrained, "dataset": data,
            "preprocessing": {"horizontalFlip": task.flips},
            "training": {"strategy": "FINE_TUNE", "unfreezeGroups": 2, **length,
                         "learningRate": 0.003, "backboneLrScale": 0.1}},
        "fine-tune-all": {
            "name": name.format("fine-tune-all"), "backbone": pretrained, "dataset": data,
            "preprocessing": {"horizontalFlip": False},
            "training": {"strategy": "FULL", **length, "learningRate": 0.001}},
        "defaults": {
            "name": name.format("defaults"), "backbone": pretrained,
            "dataset": {"trainDir": train, "testDir": task.test}, "training": {"seed": seed}},
        "defaults-fp32": {
            "name": name.format("defaults-fp32"), "backbone": pretrained,
            "dataset": {"trainDir": train, "testDir": task.test},
            "training": {"seed": seed, "precision": "FP32"}},
        "auto": {
            "name": name.format("auto"), "backbone": pretrained,
            "dataset": {"trainDir": train, "testDir": task.test},
            "training": {"seed": seed, "strategy": "AUTO"}},
    }


def sweep_spec(task, size, seed, pretrain_job, sized_epochs, k):
    """ASHA over strategy, learning rate and layer groups. Its trials train
    as long as the defaults-only job did and hold out a fifth of the images
    to be scored on (the objective), since a sweep needs a validation metric."""
    return {
        "name": f"results-{task.key}-sweep-{size}-seed-{seed}",
        "base": {
            "backbone": {"fromJob": pretrain_job},
            "dataset": {"trainDir": f"{task.key}-{size}-seed-{seed}", "valFraction": 0.2,
                        "testDir": task.test},
            "training": {"epochs": sized_epochs, "seed": seed}},
        "space": [
            {"field": "training.strategy", "values": ["FINE_TUNE", "FULL"]},
            {"field": "training.learning_rate", "min": 0.0003, "max": 0.01, "scale": "LOG"},
            {"field": "training.unfreeze_groups", "values": [1, 2, 3]},
        ],
        "method": "ASHA",
        "seed": seed,
        "objective": {"metric": "VAL_ACCURACY", "direction": "MAXIMIZE"},
        "maxTrials": k["sweep_trials"],
        # One worker: a second trial waits in the queue so that it never idles.
        "maxParallelTrials": 2,
        "maxFailedTrials": 2,
        "asha": {"minEpochs": max(1, sized_epochs // 9), "reductionFactor": 3},
    }


class Runner:
    def __init__(self, client, run_dir, started):
        from google.protobuf import json_format
        self.client = client
        self.jobs_dir = run_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.started = started
        self.to_dict = lambda m: json_format.MessageToDict(m, preserving_proto_field_name=True)

    def done(self, name):
        path = self.jobs_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, name, record):
        (self.jobs_dir / f"{name}.json").write_text(json.dumps(record, indent=1))
        print(f"{name}: {record['summary']} ({time.time() - self.started:.0f} s into the run)",
              flush=True)
        return record

    def job(self, name, spec):
        record = self.done(name)
        if record:
            return record
        (self.jobs_dir / f"{name}.spec.json").write_text(json.dumps(spec, indent=1))
        job = wait_for_job(self.client, self.client.submit(spec).id)
        if job.state != SUCCEEDED:
            raise SystemExit(f"job {name} ({job.id}) did not succeed: {job.error}; see "
                             "results-run/worker.log")
        # From submission, the one worker idle: the job starts at once, and the
        # figure counts what start_time would miss (its assignment and data scan).
        wall = seconds(job.end_time) - seconds(job.create_time)
        report = job.result.test_report if job.result.HasField("test_report") else \
            job.result.val_report
        return self.save(name, {"job": self.to_dict(job), "wall_s": round(wall, 2),
                                "summary": f"accuracy {report.accuracy:.4f}, {wall:.1f} s"})

    def sweep(self, name, spec):
        record = self.done(name)
        if record:
            return record
        (self.jobs_dir / f"{name}.spec.json").write_text(json.dumps(spec, indent=1))
        sweep_id = self.client.submit_sweep(spec).id
        sweep = wait_for_sweep(self.client, sweep_id)
        if sweep.state != SWEEP_SUCCEEDED:
            raise SystemExit(f"sweep {name} ({sweep_id}) did not succeed: {sweep.error}")
        # The sweep's model: its refit (the best trial's recipe on every training
        # image), else its best trial's.
        result_id = sweep.refit_job_id or sweep.best_job_id
        result = self.client.get(result_id)
        if not result.result.HasField("test_report"):
            raise SystemExit(f"sweep {name}: its result, job {result.id}, has no test report")
        best = self.client.get(sweep.best_job_id)
        wall = seconds(sweep.end_time) - seconds(sweep.create_time)
        accuracy = result.result.test_report.accuracy
        what = "refit" if sweep.refit_job_id else "best trial"
        return self.save(name, {"sweep": self.to_dict(sweep), "job": self.to_dict(result),
                                "best_trial": self.to_dict(best), "wall_s": round(wall, 2),
                                "summary": f"{what}'s accuracy {accuracy:.4f} (best trial's "
                                           f"{best.result.test_report.accuracy:.4f}), "
                                           f"{sum(1 for t in sweep.trials if not t.refit)} "
                                           f"trials, {wall:.1f} s"})


def prepare_data(run_dir, bin_dir, k):
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    idx = bin_dir / "tools" / "idx_to_folder"
    per_class = k["pretrain_per_class"]
    tasks.fashion_folder(idx, data, "train", "pretrain-0-4", "0,1,2,3,4",
                         "--per-class", str(per_class))
    tasks.fashion_folder(idx, data, "t10k", "test-0-4", "0,1,2,3,4")
    tasks.fashion_folder(idx, data, "train", "pretrain-all", "0,1,2,3,4,5,6,7,8,9",
                         "--per-class", str(per_class // 2))
    tasks.fashion_folder(idx, data, "t10k", "test-all", "0,1,2,3,4,5,6,7,8,9",
                         "--per-class", "500")
    for task in k["tasks"]:
        if task.key == "fashion":
            tasks.fashion_folder(idx, data, "t10k", task.test, "5,6,7,8,9")
            for size in task.sizes:
                for seed in k["seeds"]:
                    tasks.fashion_shots(idx, data, f"fashion-{size}-seed-{seed}", size, seed)
        else:
            tasks.write_digits(data, task.sizes, k["seeds"], test_folder=task.test)
    # Scratch starts from a different random smallcnn per seed; pretraining from the first.
    for seed in set(k["seeds"]) | {1}:
        tasks.export_smallcnn(data / "backbones" / f"smallcnn-seed-{seed}.pt", seed)


def pretrain_spec(name, train, val, k):
    return {"name": name, "backbone": {"path": "backbones/smallcnn-seed-1.pt"},
            "dataset": {"trainDir": train, "valDir": val},
            "training": {"strategy": "FULL", "epochs": k["pretrain_epochs"], "batchSize": 64,
                         "optimizer": "ADAM", "learningRate": 0.002}}


def measure(run_dir, bin_dir, k):
    started = time.time()
    if run_dir.exists() and not k["resume"]:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    print("== preparing data", flush=True)
    prepare_data(run_dir, bin_dir, k)
    import_client(bin_dir)
    from tl_client import Client
    print("== starting tlserver and tlworker (with generated bearer tokens)", flush=True)
    with LocalCluster(run_dir, bin_dir) as cluster:
        with Client(cluster.address, token=cluster.token) as client:
            runner = Runner(client, run_dir, started)
            pretrained = {
                "fashion": runner.job("pretrain-fashion", pretrain_spec(
                    "results-pretrain-classes-0-4", "pretrain-0-4", "test-0-4", k)),
                "digits": runner.job("pretrain-digits", pretrain_spec(
                    "results-pretrain-all-classes", "pretrain-all", "test-all", k)),
            }
            for task in k["tasks"]:
                pretrain_job = pretrained[task.key]["job"]["id"]
                for size in task.sizes:
                    for seed in k["seeds"]:
                        print(f"== {task.key}, {size} images per class, seed {seed}", flush=True)
                        specs = job_specs(task, size, seed, pretrain_job, k)
                        records = {}
                        for method in ("defaults", "defaults-fp32", "auto", "fine-tune",
                                       "fine-tune-all", "feature-extraction", "scratch"):
                            records[method] = runner.job(f"{task.key}-{method}-{size}-{seed}",
                                                         specs[method])
                        sized = records["defaults"]["job"]["result"]["data_sizing"]["epochs"]
                        runner.sweep(f"{task.key}-sweep-{size}-{seed}",
                                     sweep_spec(task, size, seed, pretrain_job, sized, k))
    return round(time.time() - started)


# ---- the table ---------------------------------------------------------------------------


def mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def load(jobs_dir, name):
    path = jobs_dir / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"results: {path} is missing; run the measurement first")
    return json.loads(path.read_text())


def test_report(record):
    return record["job"]["result"]["test_report"]


def bf16_flags():
    """This CPU's bf16 instructions, as /proc/cpuinfo names them."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in
                      open("/proc/cpuinfo").read().splitlines() if line.startswith("flags")), [])
    except OSError:
        flags = []
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return "bf16 flags: " + (", ".join(found) if found else "none")


def precision_of(jobs):
    """The precision the jobs' forward passes ran in (FP32 for jobs of
    versions that did not record it)."""
    used = sorted({j["result"].get("precision", "FP32") for j in jobs})
    return "/".join(used)


def recipe_of(method, records):
    """What the method's jobs trained with, in a few words."""
    jobs = [r["job"] for r in records]
    if method == "sweep":
        picks = []
        for r in records:
            t = r["job"]["spec"]["training"]
            what = t.get("strategy", "?")
            if what == "FINE_TUNE":
                what += f" {t.get('unfreeze_groups', 2)}"
            picks.append(f"{what} at {t.get('learning_rate', 0):.2g}")
        searched = [[t for t in r["sweep"].get("trials", []) if not t.get("refit")]
                    for r in records]
        trials = [len(t) for t in searched]
        stopped = [sum(1 for t in ts if t.get("state") == "STOPPED_EARLY") for ts in searched]
        refits = sum(1 for r in records if r["sweep"].get("refit_job_id"))
        refit = f"; refit on every image ({refits} of {len(records)})" if refits else ""
        return (f"{statistics.mean(trials):.0f} trials, {statistics.mean(stopped):.1f} stopped "
                f"early; best: {', '.join(picks)}{refit}")
    shapes = sorted({f"{j['spec']['training']['epochs']} × {j['spec']['training']['batch_size']}"
                     for j in jobs})
    if method == "auto":
        chosen = [j["result"].get("auto_strategy", {}).get("chosen", "?") for j in jobs]
        counts = ", ".join(f"{c} {chosen.count(c)}" for c in sorted(set(chosen)))
        return f"sized {', '.join(shapes)}; chose {counts}; {precision_of(jobs)}"
    if method in ("defaults", "defaults-fp32"):
        return f"sized {', '.join(shapes)}; {precision_of(jobs)}"
    training = jobs[0]["spec"]["training"]
    return f"{', '.join(shapes)}, Adam {training.get('learning_rate', 0):g}; {precision_of(jobs)}"


def task_section(task, k, jobs_dir):
    seeds = k["seeds"]
    accuracy, wall, lines = {}, {}, []
    rows = ["| images per class | method | recipe | test accuracy | test macro F1 | "
            "wall time per job (s) |", "| ---: | --- | --- | --- | --- | ---: |"]
    for size in task.sizes:
        for method, label, _ in METHODS:
            records = [load(jobs_dir, f"{task.key}-{method}-{size}-{seed}") for seed in seeds]
            acc = mean_sd([test_report(r).get("accuracy", 0.0) for r in records])
            f1 = mean_sd([test_report(r).get("macro_f1", 0.0) for r in records])
            accuracy[(size, method)] = acc[0]
            if method == "sweep":
                # What the sweep would give without its refit: its best trial's model.
                accuracy[(size, "sweep-best-trial")] = statistics.mean(
                    (r.get("best_trial") or r["job"])["result"].get("test_report", {})
                    .get("accuracy", 0.0) for r in records)
            wall[(size, method)] = statistics.mean(r["wall_s"] for r in records)
            rows.append(f"| {size} | {label} | {recipe_of(method, records)} | "
                        f"{acc[0]:.4f} ± {acc[1]:.4f} | {f1[0]:.4f} ± {f1[1]:.4f} | "
                        f"{wall[(size, method)]:.1f} |")
    lines += [f"## {task.title}", "",
              f"smallcnn pretrained on {task.source}; every transfer job scored once, at its "
              f"end, on {task.test_note}.", "", *rows, ""]

    # The targets against the best hand-set recipe of each size.
    target_rows = ["| images per class | best hand-set (accuracy) | defaults only | AUTO | "
                   "AUTO wall time / hand-set fine-tune's | AUTO wall time / defaults-only's | "
                   "sweep | its best trial, not refit | sweep wall time (s) |",
                   "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    verdicts = {"defaults": 0, "auto": 0, "auto_wall": 0, "sweep": 0}
    missed = []
    for size in task.sizes:
        best = max(HAND_SET, key=lambda m: accuracy[(size, m)])
        top = accuracy[(size, best)]
        gaps = {m: 100 * (accuracy[(size, m)] - top)
                for m in ("defaults", "auto", "sweep", "sweep-best-trial")}
        ratio = wall[(size, "auto")] / wall[(size, "fine-tune")]
        verdicts["defaults"] += gaps["defaults"] >= -3
        verdicts["auto"] += gaps["auto"] >= -1.5
        verdicts["auto_wall"] += ratio <= 3
        verdicts["sweep"] += gaps["sweep"] >= 0
        for method, gap, bound in (("defaults only", gaps["defaults"], -3),
                                   ("AUTO", gaps["auto"], -1.5), ("the sweep", gaps["sweep"], 0)):
            if gap < bound:
                missed.append(f"{method} at {size} per class ({gap:+.1f} points against "
                              f"{LABEL[best].replace('**', '')})")
        if ratio > 3:
            missed.append(f"AUTO's wall time at {size} per class ({ratio:.1f}× the hand-set "
                          "fine-tune's)")
        against_defaults = wall[(size, "auto")] / wall[(size, "defaults")]
        target_rows.append(
            f"| {size} | {LABEL[best]} ({top:.4f}) | {gaps['defaults']:+.1f} | "
            f"{gaps['auto']:+.1f} | {ratio:.1f}× | {against_defaults:.1f}× | "
            f"{gaps['sweep']:+.1f} | {gaps['sweep-best-trial']:+.1f} | "
            f"{wall[(size, 'sweep')]:.0f} |")
    n = len(task.sizes)
    lines += ["Gaps in points of mean test accuracy to the best hand-set recipe of the size. "
              "Targets: defaults only at -3 or above, AUTO at -1.5 or above within 3× the wall "
              "time of the hand-set fine-tune, the sweep at 0 or above.", "",
              *target_rows, "",
              f"Met at {verdicts['defaults']} of {n} sizes by defaults only, "
              f"{verdicts['auto']} of {n} by AUTO's accuracy and {verdicts['auto_wall']} of {n} "
              f"by its wall time, {verdicts['sweep']} of {n} by the sweep." +
              (f" Missed: {'; '.join(missed)}." if missed else ""), ""]

    # What AUTO's probe measured, per job.
    probe_rows = ["| images per class | seed | probe: mean held-out accuracy per candidate "
                  "(folds) | chosen | test accuracy | best hand-set, same images |",
                  "| ---: | ---: | --- | --- | ---: | ---: |"]
    for size in task.sizes:
        for seed in seeds:
            auto = load(jobs_dir, f"{task.key}-auto-{size}-{seed}")
            decision = auto["job"]["result"].get("auto_strategy", {})
            cells = []
            for c in decision.get("candidates", []):
                name = {"FEATURE_EXTRACTION": "FE", "FINE_TUNE": "FT", "FULL": "FULL"}.get(
                    c.get("strategy"), c.get("strategy", "?"))
                if name == "FT":
                    name += str(c.get("unfreeze_groups", ""))
                if c.get("first_fold_only"):
                    # The chosen strategy's second rate, on the first fold alone.
                    cells.append(f"{name} at {c.get('learning_rate', 0.0):g}: "
                                 f"{c.get('accuracy', 0.0):.3f} on fold 1")
                    continue
                cells.append(f"{name} {c.get('accuracy', 0.0):.3f}")
            hand = max(test_report(load(jobs_dir, f"{task.key}-{m}-{size}-{seed}"))
                       .get("accuracy", 0.0) for m in HAND_SET)
            probe_rows.append(f"| {size} | {seed} | {', '.join(cells) or '-'} "
                              f"({decision.get('folds', 1) or 1}) | {decision.get('chosen', '?')}"
                              f"{chosen_rate(decision)} | "
                              f"{test_report(auto).get('accuracy', 0.0):.4f} | {hand:.4f} |")
    lines += ["What AUTO's probe measured on the job's own training images, and what it chose.",
              "", *probe_rows, ""]
    return lines


def chosen_rate(decision):
    """' at RATE' where the probe tried a second rate of the chosen strategy."""
    if not any(c.get("first_fold_only") for c in decision.get("candidates", [])):
        return ""
    return f" at {decision.get('chosen_learning_rate', 0.0):g}"


def write_table(out, run_dir, k, run_seconds):
    jobs_dir = run_dir / "jobs"
    today = datetime.date.today().isoformat()
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pretrain = {key: load(jobs_dir, f"pretrain-{key}") for key in ("fashion", "digits")}
    lines = [
        "# Results: what transfer learning and tl's defaults buy",
        "",
        "Written by `scripts/results`; do not edit by hand, run it again.",
        "",
        "Two transfer tasks made from data Debian packages ship (`scripts/transfer_tasks.py`),",
        "each at a few sizes of training set. For every size and seed: four recipes set by",
        "hand (epochs, batch and learning rate chosen per size), a job that names only the",
        "backbone, the training images and the test images (**defaults only**: tl sizes",
        "the rest from the data), the same with `strategy: AUTO`, and a **sweep** with",
        "ASHA. Figures are the mean ± sample standard deviation over the seeds "
        f"{', '.join(map(str, k['seeds']))}; seed s trains on the s-th disjoint block of",
        "images per class, so seeds differ in their images as well as in their",
        "initialisation.",
        "",
    ]
    for task in k["tasks"]:
        lines += task_section(task, k, jobs_dir)
    lines += [
        "## How it was run",
        "",
        f"- Command: `{k['command']}` (the whole run took {run_seconds} s).",
        *([] if not k["reduced"] else [
            "  **A reduced run**: the environment in the command changed what the full",
            "  table measures."]),
        f"- Machine: {os.cpu_count()} cores, CPU \"{cpu}\" ({bf16_flags()}), one `tlworker`; "
        f"date {today}. Jobs run at the default precision, AUTO (bf16 autocast on a CPU",
        "  with bf16 instructions), unless their row names another; the recipe column says",
        "  which each ran.",
    ]
    for key, what in (("fashion", "classes 0-4"), ("digits", "all ten classes")):
        p = pretrain[key]
        spec = p["job"]["spec"]
        images = p["job"]["result"].get("dataset", {}).get("train_images", "?")
        lines.append(
            f"- Pretraining for {key}: FULL on Fashion-MNIST {what} ({images} images), "
            f"{spec['training']['epochs']} epochs of {spec['training']['batch_size']}, Adam "
            f"{spec['training']['learning_rate']}; validation accuracy "
            f"{p['job']['result'].get('val_report', {}).get('accuracy', 0.0):.4f}; "
            f"{p['wall_s']:.0f} s.")
    lines += [
        "- Hand-set recipes (Adam, no validation split): scratch trains every layer of a",
        "  random smallcnn at 0.003; feature extraction a new head on the frozen backbone at",
        "  0.01; fine-tuning the last 2 layer groups and the head at 0.003 (backbone 0.1 ×);",
        "  fine-tuning every layer (FULL from the pretrained backbone) at 0.001. Scratch and",
        "  the 2-group fine-tune flip images horizontally on Fashion-MNIST, not on the digits.",
        "- Defaults only and AUTO: the spec names `backbone.fromJob`, `dataset.trainDir`,",
        "  `dataset.testDir` and `training.seed` (and `strategy: AUTO`); the rest is what",
        "  docs/API.md's defaults give, sized by the data. AUTO's wall time includes its probe.",
        "- Sweep: ASHA (reduction factor 3, rungs from a ninth of the epochs) over",
        "  strategy {FINE_TUNE, FULL}, learning rate 0.0003-0.01 (log) and 1-3 layer groups,",
        f"  {k['sweep_trials']} trials, 2 at a time on the one worker; the trials hold out",
        "  a fifth of the training images as the validation set ASHA scores, and train as",
        "  many epochs as the defaults-only job. Then the sweep refits: the best trial's",
        "  recipe trains once more on every training image, and that job's model is the",
        "  sweep's result and its row. Its wall time is the whole sweep's, refit included,",
        "  from submission to its end.",
        "- Images: Fashion-MNIST 28 px, the digits 8 px, resized to 36 and center-cropped",
        "  to 32 (the smallcnn manifest).",
        "- Wall time of a job is from its submission to its end, the one worker idle before",
        "  (data checks, AUTO's probe, training, scoring the test images, export). They come",
        "  from one run on a shared machine whose speed varies: compare them between the",
        "  methods of one size, not across runs.",
        "",
    ]
    # The section scripts/recipe_study.py writes (how the defaults were chosen)
    # comes from other runs: it is kept as it stands.
    kept = ""
    if out.exists():
        old = out.read_text()
        start, end = "<!-- recipe-study: start -->", "<!-- recipe-study: end -->"
        if start in old and end in old:
            kept = "\n" + old[old.index(start):old.index(end) + len(end)] + "\n"
    out.write_text("\n".join(lines) + kept)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the CMake build folder")
    parser.add_argument("--run", default=str(REPO / "results-run"))
    parser.add_argument("--table-only", action="store_true",
                        help="write the table from the jobs RUN holds and stop")
    args = parser.parse_args()
    k = knobs()
    run_dir = pathlib.Path(args.run).resolve()
    out = pathlib.Path(os.environ.get("TL_RESULTS_OUT", REPO / "docs" / "RESULTS.md"))
    if not out.is_absolute():
        out = REPO / out
    seconds_file = run_dir / "run-seconds"
    # One line per run into RUN: the first measured everything, a resumed one
    # what the first left (or what was removed from RUN/jobs).
    runs = [int(line) for line in seconds_file.read_text().split()] \
        if seconds_file.exists() and (args.table_only or k["resume"]) else []
    if not args.table_only:
        runs.append(measure(run_dir, pathlib.Path(args.build).resolve(), k))
        seconds_file.write_text("".join(f"{r}\n" for r in runs))
    run_seconds = str(runs[0] if runs else 0)
    if len(runs) > 1:
        run_seconds += (" s; then resumed runs (TL_RESULTS_RESUME=1) measured again the jobs "
                        "removed from its jobs folder, in " +
                        " s, ".join(str(r) for r in runs[1:]))
    write_table(out, run_dir, k, run_seconds)
    print(out.read_text())
    print(f"jobs, logs and artifacts under {run_dir}")


if __name__ == "__main__":
    main()
