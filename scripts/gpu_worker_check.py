#!/usr/bin/python3
"""The whole worker on one device, driven through tlctl: run by
scripts/gpu-worker-check once tlserver, tlworker, tlctl and engine_bench are
built. It starts tlserver (with bearer tokens) on 127.0.0.1 and checks, in
order:
  1. on a worker of one slot (every core its own, as the peer's): a FULL
     fine-tune of the backbone from a folder of generated JPEGs, beside
     bench/torch_peer.py (torchvision's ImageFolder, a DataLoader with one
     worker process per core) on the same files, the same backbone file and
     the same precision, and beside engine_bench's figure for the same step
     on synthetic, pre-decoded images;
then, on a worker of two slots:
  2. two feature-extraction jobs at once, one on each slot;
  3. cancel of a running job;
  4. kill -9 of the worker mid-job: a worker started again under its id
     resumes the job from its checkpoint.
Writes gpu-worker-check.json after every step and gpu-worker-check.md (the
table) at the end to --out; exits 1 when a check fails. A step that fails
(a job, the peer, engine_bench) is recorded as a failed check and the steps
after it still run: the machine this runs on is lent for minutes. The speed
targets are reported, not enforced. Every wait is bounded (--job-limit for a
job).
"""
import argparse
import calendar
import contextlib
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
from local_cluster import LocalCluster, exported_backbone, generated_photos  # noqa: E402

ENDED = {"SUCCEEDED", "FAILED", "CANCELLED", "STOPPED_EARLY"}


def log(line):
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def run(command, **kwargs):
    """A child's stdout; its stderr is in the error when it fails."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(str(p) for p in command)} failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


class Tlctl:
    def __init__(self, binary, address, token_file):
        self.base = [binary, "--server", address, "--token-file", token_file]

    def __call__(self, *args):
        return run(self.base + list(args))

    def submit(self, spec, folder):
        name = spec["name"]
        (folder / f"{name}.json").write_text(json.dumps(spec, indent=2))
        id_file = folder / f"{name}.id"
        self("submit", folder / f"{name}.json", "--id-file", id_file)
        return id_file.read_text().strip()

    def get(self, job_id):
        return json.loads(self("get", job_id, "--json"))

    def wait(self, job_id, until, limit_s, what):
        """The job once until(job) holds; fails, saying `what` was waited for, once it has
        ended otherwise or limit_s has passed."""
        deadline = time.time() + limit_s
        while True:
            job = self.get(job_id)
            if until(job):
                return job
            if job.get("state") in ENDED or time.time() > deadline:
                raise SystemExit(f"job {job_id} ({job.get('spec', {}).get('name')}) is "
                                 f"{job.get('state')} on attempt {job.get('attempt')}, epoch "
                                 f"{job.get('epoch', 0)}, after waiting for {what}; error: "
                                 f"{job.get('error', '')}")
            time.sleep(0.2)

    def wait_ended(self, job_id, limit_s):
        return self.wait(job_id, lambda job: job.get("state") in ENDED, limit_s, "its end")


def stamp(text):
    """Seconds since the epoch of a protobuf JSON timestamp."""
    day, clock = text.rstrip("Z").split("T")
    whole, _, fraction = clock.partition(".")
    seconds = calendar.timegm(time.strptime(day + " " + whole, "%Y-%m-%d %H:%M:%S"))
    return seconds + (float("0." + fraction) if fraction else 0.0)


def job_seconds(job):
    return stamp(job["end_time"]) - stamp(job["start_time"])


def steady(rates):
    """The median of the epochs after the first (which pays for warm-up), or
    the one epoch there is."""
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
    parser.add_argument("--job-limit", type=float, default=420,
                        help="seconds any one job may take")
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
              "batch": args.batch, "epochs": args.epochs, "cores": cores, "checks": {}}
    failures = []

    def save():
        (out / "gpu-worker-check.json").write_text(json.dumps(report, indent=2) + "\n")

    def check(name, ok, detail):
        report["checks"][name] = {"ok": bool(ok), "detail": detail}
        log(("ok  " if ok else "FAIL") + f" {name}: {detail}")
        if not ok:
            failures.append(name)
        save()

    @contextlib.contextmanager
    def step(name, tlctl=None):
        """A step that raises is a failed check named `name`, and the jobs it submitted
        (ids it appended to the list it yields) are cancelled, so that the next steps, which
        still run, find the slots free. At the deadline's SIGINT the report says where it
        stopped before the cluster's teardown."""
        submitted = []
        try:
            yield submitted
        except KeyboardInterrupt:
            report["error"] = f"stopped at the deadline during: {name}"
            save()
            raise
        except (Exception, SystemExit) as error:  # run() and Tlctl's waits end in SystemExit
            check(name, False, f"{type(error).__name__}: {str(error)[-1500:]}")
            for job_id in submitted:
                try:
                    tlctl("cancel", job_id)
                except (Exception, SystemExit):  # it may have ended meanwhile
                    pass

    started = time.time()
    photos = data / f"photos-{args.classes}x{args.per_class}"
    generated_photos(photos, args.classes, args.per_class, processes=cores)
    images = sum(1 for _ in photos.rglob("*.jpg"))
    report["images"] = images
    log(f"{images} JPEGs in {photos}")
    backbone = data / "backbones" / f"{args.arch}.pt"
    exported_backbone(backbone, args.arch)
    shutil.rmtree(run_dir / "artifacts", ignore_errors=True)
    for stale in ("tl.db", "tl.db-wal", "tl.db-shm"):
        (run_dir / stale).unlink(missing_ok=True)
    precision = args.precision.upper()

    def spec(name, strategy, epochs):
        return {"name": name, "backbone": {"path": f"backbones/{args.arch}.pt"},
                "dataset": {"trainDir": photos.name, "valFraction": 0},
                "preprocessing": {"imageSize": args.image_size},
                "training": {"strategy": strategy, "epochs": epochs, "batchSize": args.batch,
                             "optimizer": "SGD", "learningRate": 0.01, "momentum": 0.9,
                             "precision": precision, "channelsLast": args.channels_last,
                             "seed": 1},
                "resources": {"device": args.device}}

    one_slot = ["--device", args.device, "--slots", "1"]
    two_slots = ["--device", args.device, "--slots", "2"]
    try:
        with LocalCluster(run_dir, build, one_slot) as cluster:
            token_file = run_dir / "user.token"
            old = os.umask(0o077)
            token_file.write_text(cluster.token + "\n")
            os.umask(old)
            tlctl = Tlctl(build / "client" / "tlctl", cluster.address, token_file)
            cluster.wait_for_worker_sessions(1, limit_s=120)

            # 1. The fine-tune from JPEG files, on one slot.
            log("fine-tune through tlctl, on a worker of one slot")
            with step("fine-tune ran and its figures were read", tlctl) as submitted:
                job_id = tlctl.submit(spec("fine-tune", "FULL", args.epochs), specs)
                submitted.append(job_id)
                job = tlctl.wait_ended(job_id, limit_s=args.job_limit)
                ok = job["state"] == "SUCCEEDED"
                check("fine-tune succeeded", ok, f"{job['state']} {job.get('error', '')}".strip())
                if ok:
                    metrics = json.loads((run_dir / "artifacts" /
                                          job["result"]["metrics_path"]).read_text())
                    report["tl_epochs_images_per_second"] = [
                        epoch["images_per_second"] for epoch in metrics["epochs"]]
                    # The whole job, from its start on the worker (data checks, decoding every
                    # file, training, export) to its end.
                    report["tl_job_images_per_second"] = images * args.epochs / job_seconds(job)
                    report["tl_precision_used"] = job.get("result", {}).get("precision", "")
                save()

            log("the PyTorch DataLoader peer on the same files")
            peer_command = [sys.executable, REPO / "bench" / "torch_peer.py", "train",
                            "--backbone", backbone, "--data", photos, "--image-size",
                            args.image_size, "--batch", args.batch, "--epochs", args.epochs,
                            "--threads", cores, "--workers", cores, "--no-flip",
                            "--precision", args.precision, "--device", args.device]
            if args.channels_last:
                peer_command.append("--channels-last")
            with step("the PyTorch DataLoader peer ran"):
                peer = last_json(run(peer_command, timeout=args.job_limit))
                report["pytorch_epochs_images_per_second"] = [
                    epoch["images_per_second"] for epoch in peer["epochs"]]
                report["pytorch_job_images_per_second"] = (
                    peer["train_images"] * args.epochs / peer["job_seconds"])
                save()

            log("engine_bench: the same step on synthetic, pre-decoded images")
            bench_command = [build / "bench" / "engine_bench", "--backbone", backbone,
                             "--device", args.device, "--precision", args.precision,
                             "--strategy", "full", "--optimizer", "sgd", "--batch", args.batch,
                             "--image_size", args.image_size, "--classes", args.classes,
                             "--steps", "20"]
            if args.channels_last:
                bench_command.append("--channels_last")
            with step("engine_bench ran"):
                synthetic = last_json(run(bench_command, timeout=args.job_limit))
                report["engine_bench_images_per_second"] = synthetic["images_per_second"]
                save()

            # The rest on two slots: the one-slot worker hands back nothing (it is idle).
            with step("a worker of two slots started"):
                cluster.worker.send_signal(signal.SIGTERM)
                cluster.worker.wait(timeout=60)
                # Both new slots, whatever reconnects the first worker logged meanwhile.
                sessions = cluster.sessions_logged()
                cluster.worker = cluster.start_worker(two_slots)
                cluster.wait_for_worker_sessions(sessions + 2, limit_s=120)

            # 2. Two feature-extraction jobs at once, one per slot.
            with step("two feature-extraction jobs ran at once", tlctl) as submitted:
                log("two feature-extraction jobs at once, on a worker of two slots")
                fe_ids = [tlctl.submit(spec(f"features-{n}", "FEATURE_EXTRACTION", 3), specs)
                          for n in (1, 2)]
                submitted.extend(fe_ids)
                fe_jobs = [tlctl.wait_ended(i, limit_s=args.job_limit) for i in fe_ids]
                both_ok = all(j["state"] == "SUCCEEDED" for j in fe_jobs)
                spans = [(stamp(j["start_time"]), stamp(j["end_time"])) for j in fe_jobs] \
                    if both_ok else [(0, 0), (0, 0)]
                overlap = min(spans[0][1], spans[1][1]) - max(spans[0][0], spans[1][0])
                report["feature_jobs_seconds"] = [end - start for start, end in spans]
                report["feature_jobs_overlap_seconds"] = overlap
                report["feature_jobs_workers"] = [j.get("worker_id", "") for j in fe_jobs]
                check("two feature-extraction jobs ran at once", both_ok and overlap > 0,
                      f"{[j['state'] for j in fe_jobs]}, each "
                      f"{', '.join(f'{end - start:.1f} s' for start, end in spans)}, "
                      f"together for {overlap:.1f} s")

            # 3. Cancel of a running job.
            with step("cancel of a running job", tlctl) as submitted:
                log("cancel of a running job")
                long_id = tlctl.submit(spec("cancelled", "FULL", 1000), specs)
                submitted.append(long_id)
                tlctl.wait(long_id,
                           lambda j: j.get("state") == "RUNNING" and j.get("epoch", 0) >= 1,
                           limit_s=args.job_limit, what="its first epoch")
                asked = time.time()
                tlctl("cancel", long_id)
                job = tlctl.wait_ended(long_id, limit_s=120)
                report["cancel_seconds"] = time.time() - asked
                check("cancel of a running job", job["state"] == "CANCELLED",
                      f"{job['state']} {report['cancel_seconds']:.1f} s after the request")

            # 4. kill -9 of the worker mid-job; it is started again and resumes the job.
            with step("kill -9 mid-job: resumed from its checkpoint", tlctl) as submitted:
                log("kill -9 of the worker mid-job")
                epochs = max(6, args.epochs)
                resumed_id = tlctl.submit(spec("resumed", "FULL", epochs), specs)
                submitted.append(resumed_id)
                # At least two epochs left: the kill lands mid-job, however fast an epoch is.
                tlctl.wait(resumed_id,
                           lambda j: (j.get("state") == "RUNNING" and
                                      1 <= j.get("epoch", 0) <= epochs - 2),
                           limit_s=args.job_limit, what="an epoch between 1 and the last two")
                cluster.worker.send_signal(signal.SIGKILL)
                cluster.worker.wait()
                killed_at = time.time()
                # Started again under the same id, as a supervisor would: its hello holds no job,
                # so the scheduler queues the one the old process had at once.
                cluster.worker = cluster.start_worker(two_slots)
                tlctl.wait(resumed_id, lambda j: j.get("attempt", 0) >= 2 and
                           j.get("state") in {"RUNNING"} | ENDED, limit_s=120, what="attempt 2")
                report["requeue_seconds"] = time.time() - killed_at
                job = tlctl.wait_ended(resumed_id, limit_s=args.job_limit)
                # The trainer logs where it resumed ("... after epoch N").
                resumed_after = 0
                for line in tlctl("logs", resumed_id).splitlines():
                    found = re.search(r"resuming from the checkpoint after epoch (\d+)", line)
                    if found:
                        resumed_after = int(found.group(1))
                report["resumed_after_epoch"] = resumed_after
                check("kill -9 mid-job: resumed from its checkpoint",
                      job["state"] == "SUCCEEDED" and job.get("attempt") == 2 and
                      resumed_after >= 1,
                      f"{job['state']} on attempt {job.get('attempt')}, running again "
                      f"{report['requeue_seconds']:.1f} s after the kill, resumed after epoch "
                      f"{resumed_after} of {epochs}")
    finally:
        report["seconds"] = time.time() - started
        error = sys.exc_info()[1]
        if error is not None:  # what ended the run before its table, unless a step said
            report.setdefault("error", f"{type(error).__name__}: {str(error)[-1500:]}")
        save()

    # A figure a failed step did not measure is None, and "-" in the table: a 0 would read as
    # measured.
    tl_rates = report.get("tl_epochs_images_per_second")
    peer_rates = report.get("pytorch_epochs_images_per_second")
    tl_steady = steady(tl_rates) if tl_rates else None
    peer_steady = steady(peer_rates) if peer_rates else None
    tl_job = report.get("tl_job_images_per_second")
    peer_job = report.get("pytorch_job_images_per_second")
    synthetic_rate = report.get("engine_bench_images_per_second")
    report["tl_over_pytorch"] = tl_job / peer_job if tl_job and peer_job else None
    report["tl_steady_over_synthetic"] = (
        tl_steady / synthetic_rate if tl_steady and synthetic_rate else None)
    save()

    def shown(value, form=".1f", suffix=""):
        return "-" if value is None else f"{value:{form}}{suffix}"

    rows = [
        "| what | tl | PyTorch |",
        "| --- | ---: | ---: |",
        f"| whole job from JPEG files: images x epochs / seconds from start to end | "
        f"{shown(tl_job)} | {shown(peer_job)} |",
        f"| training epochs 2-{args.epochs}, median images/s (tl trains from the images it "
        f"decoded once, before epoch 1) | {shown(tl_steady)} | {shown(peer_steady)} |",
        f"| engine_bench, the same step on synthetic pre-decoded images (images/s) | "
        f"{shown(synthetic_rate)} | |",
        "",
        "| target | figure |",
        "| --- | ---: |",
        f"| tl / PyTorch, whole job (at least 1.0) | "
        f"{shown(report['tl_over_pytorch'], '.2f', 'x')} |",
        f"| tl's training epochs / its synthetic figure (at least 0.80) | "
        f"{shown(report['tl_steady_over_synthetic'], '.2f')} |",
        f"| two feature-extraction jobs on two slots, each (s), overlapping "
        f"{shown(report.get('feature_jobs_overlap_seconds'))} s | "
        f"{', '.join(f'{s:.1f}' for s in report.get('feature_jobs_seconds', [])) or '-'} |",
        f"| cancel of a running job, request to CANCELLED (s) | "
        f"{shown(report.get('cancel_seconds'))} |",
        f"| kill -9 of the worker, to the job running again (s) | "
        f"{shown(report.get('requeue_seconds'))} |",
    ]
    table = (f"{args.arch} at {args.image_size} px, {args.precision}"
             f"{', channels-last' if args.channels_last else ''}, batch {args.batch}, "
             f"FULL with SGD, {images} generated JPEGs in {args.classes} classes, "
             f"{args.epochs} epochs, device {args.device}, {cores} cores; the fine-tune on a "
             f"worker of one slot, tl's job in {report.get('tl_precision_used') or '?'}.\n\n"
             + "\n".join(rows) + "\n")
    print("\n" + table)
    (out / "gpu-worker-check.md").write_text(table)
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


if __name__ == "__main__":
    main(sys.argv[1:])
