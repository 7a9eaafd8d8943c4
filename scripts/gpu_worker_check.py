#!/usr/bin/python3
"""The whole worker on one device, driven through tlctl: run by
scripts/gpu-worker-check once tlserver, tlworker, tlctl and engine_bench are
built. It starts tlserver (with bearer tokens) and one tlworker with two
slots on 127.0.0.1, and checks, in order:
  1. a FULL fine-tune of the backbone from a folder of generated JPEGs,
     timed per epoch beside bench/torch_peer.py (torchvision's ImageFolder,
     a DataLoader with one worker process per core) on the same files, the
     same backbone file and the same precision, and beside engine_bench's
     figure for the same step on synthetic, pre-decoded images;
  2. two feature-extraction jobs at once, one on each slot;
  3. cancel of a running job;
  4. kill -9 of the worker mid-job: a new worker resumes the job from its
     checkpoint.
Writes gpu-worker-check.md (the table) and gpu-worker-check.json to --out;
exits 1 when a check fails. The speed targets are reported, not enforced.
"""
import argparse
import calendar
import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from local_cluster import LocalCluster  # noqa: E402

ENDED = {"SUCCEEDED", "FAILED", "CANCELLED", "STOPPED_EARLY"}


def log(line):
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


class Tlctl:
    def __init__(self, binary, address, token_file):
        self.base = [str(binary), "--server", address, "--token-file", str(token_file)]

    def __call__(self, *args):
        done = subprocess.run(self.base + list(args), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"tlctl {' '.join(args)} failed ({done.returncode}): "
                             f"{done.stdout}{done.stderr}")
        return done.stdout

    def submit(self, spec, folder):
        name = spec["name"]
        (folder / f"{name}.json").write_text(json.dumps(spec, indent=2))
        id_file = folder / f"{name}.id"
        self("submit", str(folder / f"{name}.json"), "--id-file", str(id_file))
        return id_file.read_text().strip()

    def get(self, job_id):
        return json.loads(self("get", job_id, "--json"))

    def wait(self, job_id, until, limit_s):
        """The job once until(job) holds; fails after limit_s."""
        deadline = time.time() + limit_s
        while True:
            job = self.get(job_id)
            if until(job):
                return job
            if job.get("state") in ENDED or time.time() > deadline:
                raise SystemExit(f"job {job_id} ({job.get('spec', {}).get('name')}) is "
                                 f"{job.get('state')} (epoch {job.get('epoch', 0)}) and not as "
                                 f"waited for; error: {job.get('error', '')}")
            time.sleep(0.2)

    def wait_ended(self, job_id, limit_s):
        return self.wait(job_id, lambda job: job.get("state") in ENDED, limit_s)


def stamp(text):
    """Seconds since the epoch of a protobuf JSON timestamp."""
    day, clock = text.rstrip("Z").split("T")
    whole, _, fraction = clock.partition(".")
    seconds = calendar.timegm(time.strptime(day + " " + whole, "%Y-%m-%d %H:%M:%S"))
    return seconds + (float("0." + fraction) if fraction else 0.0)


def make_photos(folder, classes, per_class, processes):
    """bench/make_photos.py's JPEGs, made in parallel chunks (each its own seed)
    and gathered into one folder per class."""
    if folder.exists():
        return
    chunks = max(1, min(processes, per_class))
    parts = folder.parent / (folder.name + ".parts")
    shutil.rmtree(parts, ignore_errors=True)

    def run(chunk):
        count = per_class // chunks + (1 if chunk < per_class % chunks else 0)
        subprocess.run([sys.executable, str(REPO / "bench" / "make_photos.py"), "--out",
                        str(parts / str(chunk)), "--classes", str(classes), "--per-class",
                        str(count), "--seed", str(chunk)], check=True)

    with concurrent.futures.ThreadPoolExecutor(chunks) as pool:
        list(pool.map(run, range(chunks)))
    for chunk in range(chunks):
        for class_dir in sorted((parts / str(chunk)).iterdir()):
            target = folder / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for photo in class_dir.iterdir():
                photo.rename(target / f"{chunk}-{photo.name}")
    shutil.rmtree(parts)


def epoch_rates(artifacts, metrics_path):
    """Training images per second of each epoch, from a job's metrics.json
    (its path relative to the artifact root)."""
    metrics = json.loads((artifacts / metrics_path).read_text())
    return [epoch["images_per_second"] for epoch in metrics["epochs"]], metrics


def steady(rates):
    """The median of the epochs after the first (which pays for warm-up),
    or the one epoch there is."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", required=True, help="CMake build folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    build = pathlib.Path(args.build).resolve()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = build / "gpu-worker-run"
    data = run_dir / "data"
    (data / "backbones").mkdir(parents=True, exist_ok=True)
    specs = run_dir / "specs"
    specs.mkdir(exist_ok=True)
    cores = os.cpu_count() or 2
    report = {"device": args.device, "arch": args.arch, "image_size": args.image_size,
              "precision": args.precision, "channels_last": args.channels_last,
              "batch": args.batch, "cores": cores, "checks": {}}
    failures = []

    def check(name, ok, detail):
        report["checks"][name] = {"ok": bool(ok), "detail": detail}
        log(("ok  " if ok else "FAIL") + f" {name}: {detail}")
        if not ok:
            failures.append(name)

    started = time.time()
    photos = data / "photos"
    make_photos(photos, args.classes, args.per_class, cores)
    images = sum(1 for _ in photos.rglob("*.jpg"))
    log(f"{images} JPEGs in {photos}")
    backbone = data / "backbones" / f"{args.arch}.pt"
    if not backbone.exists():
        subprocess.run([sys.executable, str(REPO / "tools" / "export_backbone.py"), "--arch",
                        args.arch, "--out", str(backbone), "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL)
    shutil.rmtree(run_dir / "artifacts", ignore_errors=True)
    for stale in ("tl.db", "tl.db-wal", "tl.db-shm"):
        (run_dir / stale).unlink(missing_ok=True)

    worker_flags = ["--device", args.device, "--slots", "2"]
    with LocalCluster(run_dir, build, worker_flags) as cluster:
        token_file = run_dir / "user.token"
        old = os.umask(0o077)
        token_file.write_text(cluster.token + "\n")
        os.umask(old)
        tlctl = Tlctl(build / "client" / "tlctl", cluster.address, token_file)
        cluster.wait_for_worker_sessions(2, limit_s=120)
        precision = args.precision.upper()

        def spec(name, strategy, epochs, **training):
            return {"name": name, "backbone": {"path": f"backbones/{args.arch}.pt"},
                    "dataset": {"trainDir": "photos", "valFraction": 0},
                    "preprocessing": {"imageSize": args.image_size},
                    "training": {"strategy": strategy, "epochs": epochs,
                                 "batchSize": args.batch, "optimizer": "SGD",
                                 "learningRate": 0.01, "momentum": 0.9,
                                 "precision": precision, "channelsLast": args.channels_last,
                                 "seed": 1, **training},
                    "resources": {"device": args.device}}

        # 1. The fine-tune, end to end from JPEG files.
        log("fine-tune through tlctl")
        job_id = tlctl.submit(spec("fine-tune", "FULL", args.epochs), specs)
        job = tlctl.wait_ended(job_id, limit_s=1800)
        check("fine-tune succeeded", job["state"] == "SUCCEEDED",
              f"{job['state']} {job.get('error', '')}".strip())
        tl_rates, _ = epoch_rates(run_dir / "artifacts", job["result"]["metrics_path"]) \
            if job["state"] == "SUCCEEDED" else ([0.0], None)
        report["tl_epochs_images_per_second"] = tl_rates
        report["tl_precision_used"] = job.get("result", {}).get("precision", "")

        log("the PyTorch DataLoader peer on the same files")
        peer_command = [sys.executable, str(REPO / "bench" / "torch_peer.py"), "train",
                        "--backbone", str(backbone), "--data", str(photos), "--image-size",
                        str(args.image_size), "--batch", str(args.batch), "--epochs",
                        str(args.epochs), "--threads", str(cores), "--workers", str(cores),
                        "--no-flip", "--precision", args.precision, "--device", args.device]
        if args.channels_last:
            peer_command.append("--channels-last")
        peer = json.loads(subprocess.run(peer_command, check=True, capture_output=True,
                                         text=True).stdout.strip().splitlines()[-1])
        peer_rates = [epoch["images_per_second"] for epoch in peer["epochs"]]
        report["pytorch_epochs_images_per_second"] = peer_rates

        log("engine_bench: the same step on synthetic, pre-decoded images")
        bench_command = [str(build / "bench" / "engine_bench"), "--backbone", str(backbone),
                         "--device", args.device, "--precision", args.precision,
                         "--strategy", "full", "--optimizer", "sgd", "--batch",
                         str(args.batch), "--image_size", str(args.image_size), "--classes",
                         str(args.classes), "--steps", "20"]
        if args.channels_last:
            bench_command.append("--channels_last")
        synthetic = json.loads(subprocess.run(bench_command, check=True, capture_output=True,
                                              text=True).stdout.strip().splitlines()[-1])
        report["engine_bench_images_per_second"] = synthetic["images_per_second"]

        # 2. Two feature-extraction jobs at once, one per slot.
        log("two feature-extraction jobs at once")
        fe_ids = [tlctl.submit(spec(f"features-{n}", "FEATURE_EXTRACTION", 3), specs)
                  for n in (1, 2)]
        fe_jobs = [tlctl.wait_ended(i, limit_s=1800) for i in fe_ids]
        both_ok = all(j["state"] == "SUCCEEDED" for j in fe_jobs)
        spans = [(stamp(j["start_time"]), stamp(j["end_time"])) for j in fe_jobs] if both_ok \
            else [(0, 0), (0, 0)]
        overlap = min(spans[0][1], spans[1][1]) - max(spans[0][0], spans[1][0])
        report["feature_jobs_seconds"] = [end - start for start, end in spans]
        report["feature_jobs_overlap_seconds"] = overlap
        check("two feature-extraction jobs ran at once", both_ok and overlap > 0,
              f"{[j['state'] for j in fe_jobs]}, each "
              f"{', '.join(f'{end - start:.1f} s' for start, end in spans)}, "
              f"together for {overlap:.1f} s")

        # 3. Cancel of a running job.
        log("cancel of a running job")
        long_id = tlctl.submit(spec("cancelled", "FULL", 1000), specs)
        tlctl.wait(long_id, lambda j: j.get("state") == "RUNNING" and j.get("epoch", 0) >= 1,
                   limit_s=600)
        asked = time.time()
        tlctl("cancel", long_id)
        job = tlctl.wait_ended(long_id, limit_s=120)
        report["cancel_seconds"] = time.time() - asked
        check("cancel of a running job", job["state"] == "CANCELLED",
              f"{job['state']} {report['cancel_seconds']:.1f} s after the request")

        # 4. kill -9 of the worker mid-job; a new worker resumes it.
        log("kill -9 of the worker mid-job")
        epochs = max(3, args.epochs)
        resumed_id = tlctl.submit(spec("resumed", "FULL", epochs), specs)
        tlctl.wait(resumed_id,
                   lambda j: j.get("state") == "RUNNING" and 1 <= j.get("epoch", 0) < epochs,
                   limit_s=600)
        cluster.worker.send_signal(signal.SIGKILL)
        cluster.worker.wait()
        killed_at = time.time()
        # A worker started again under the same id, as a supervisor would:
        # its hello holds no job, so the scheduler need not wait out the
        # lease of the one that died.
        cluster.worker = cluster.start_worker(worker_flags)
        tlctl.wait(resumed_id, lambda j: j.get("state") == "RUNNING" and j.get("attempt") == 2,
                   limit_s=600)
        report["requeue_seconds"] = time.time() - killed_at
        job = tlctl.wait_ended(resumed_id, limit_s=1800)
        # The trainer logs where it resumed ("... after epoch N").
        resumed_after = 0
        for line in tlctl("logs", resumed_id).splitlines():
            if "resuming from the checkpoint after epoch" in line:
                resumed_after = int(re.search(r"after epoch (\d+)", line).group(1))
        report["resumed_after_epoch"] = resumed_after
        check("kill -9 mid-job: resumed from its checkpoint",
              job["state"] == "SUCCEEDED" and job.get("attempt") == 2 and resumed_after >= 1,
              f"{job['state']} on attempt {job.get('attempt')}, running again "
              f"{report['requeue_seconds']:.1f} s after the kill, resumed after epoch "
              f"{resumed_after} of {epochs}")

    tl_steady, peer_steady = steady(tl_rates), steady(peer_rates)
    synthetic_rate = report["engine_bench_images_per_second"]
    report["seconds"] = time.time() - started
    vs_peer = tl_steady / peer_steady if peer_steady else 0.0
    vs_synthetic = tl_steady / synthetic_rate if synthetic_rate else 0.0
    rows = [
        "| what | figure |",
        "| --- | ---: |",
        f"| tl, end to end from JPEG files (images/s, median of epochs 2-{args.epochs}) | "
        f"{tl_steady:.1f} |",
        f"| PyTorch, ImageFolder + DataLoader with {cores} workers, same files (images/s) | "
        f"{peer_steady:.1f} |",
        f"| tl's engine_bench, synthetic pre-decoded images (images/s) | {synthetic_rate:.1f} |",
        f"| tl / PyTorch (target: at least 1.0) | {vs_peer:.2f}x |",
        f"| tl end to end / tl synthetic (target: at least 0.80) | {vs_synthetic:.2f} |",
        f"| two feature-extraction jobs on two slots, each (s) | "
        f"{', '.join(f'{s:.1f}' for s in report['feature_jobs_seconds'])} |",
        f"| cancel of a running job, request to CANCELLED (s) | {report['cancel_seconds']:.1f} |",
        f"| kill -9 of the worker, to the job running again on a new worker (s) | "
        f"{report['requeue_seconds']:.1f} |",
    ]
    table = (f"{args.arch} at {args.image_size} px, {args.precision}"
             f"{', channels-last' if args.channels_last else ''}, batch {args.batch}, "
             f"FULL with SGD, {images} generated JPEGs in {args.classes} classes, "
             f"{args.epochs} epochs, device {args.device}, {cores} cores; tl's job used "
             f"{report['tl_precision_used'] or 'its precision'}.\n\n" + "\n".join(rows) + "\n")
    print("\n" + table)
    (out / "gpu-worker-check.md").write_text(table)
    report["tl_images_per_second"] = tl_steady
    report["pytorch_images_per_second"] = peer_steady
    (out / "gpu-worker-check.json").write_text(json.dumps(report, indent=2) + "\n")
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


if __name__ == "__main__":
    main(sys.argv[1:])
