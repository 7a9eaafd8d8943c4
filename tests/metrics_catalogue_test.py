"""docs/METRICS.md against a running tlserver and tlworker: every series
their /metrics serve is listed, every listed metric is served, and the
per-job and per-worker series appear while a job runs or a worker is
connected and go afterwards, as the catalogue says.

A stand-in worker (a WorkerService stream driven from here) takes the job
and reports a start, progress and an epoch, so that no training runs. The
real tlworker runs no job: its idle /metrics is compared with its section.

    metrics_catalogue_test.py --tlserver build/server/tlserver --tlworker build/worker/tlworker
(with client/python and build/client/python/gen on PYTHONPATH)
"""
import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_check  # noqa: E402
from tl_client import Client, jobs_pb2, service_pb2, service_pb2_grpc  # noqa: E402
from tl_client.testing import (DEADLINE_SECONDS, LocalServer, tiny_spec,  # noqa: E402
                               tlserver_from_argv, wait_for)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TLSERVER = tlserver_from_argv()
_worker_arguments = argparse.ArgumentParser(add_help=False)
_worker_arguments.add_argument("--tlworker", required=True, help="the tlworker binary to start")
_parsed, sys.argv[1:] = _worker_arguments.parse_known_args()
TLWORKER = _parsed.tlworker
# Series that exist per running job, per running sweep, per connected worker, per CUDA device.
PER_SERIES_LABELS = ("job_id", "sweep_id", "worker_id", "device")
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(url: str) -> dict:
    """{(name, labels text): value} of every series served."""
    with urllib.request.urlopen(url, timeout=DEADLINE_SECONDS) as response:
        text = response.read().decode()
    series = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match and not line.startswith("#"):
            series[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return series


class StandInWorker:
    """One WorkerService.Connect stream whose messages the test writes."""

    def __init__(self, channel: grpc.Channel, worker_id: str):
        self._outbox: "queue.Queue" = queue.Queue()
        self.send(hello=service_pb2.WorkerHello(
            worker_id=worker_id, hostname="test", devices=[service_pb2.Device(kind="cpu")]))
        stub = service_pb2_grpc.WorkerServiceStub(channel)
        self._inbox = stub.Connect(iter(self._outbox.get, None), timeout=4 * DEADLINE_SECONDS)

    def send(self, **message) -> None:
        self._outbox.put(service_pb2.WorkerMessage(**message))

    def next_assignment(self) -> "service_pb2.Assignment":
        for message in self._inbox:
            if message.WhichOneof("message") == "assignment":
                return message.assignment
        raise AssertionError("the scheduler closed the stream without an assignment")

    def close(self) -> None:
        self._outbox.put(None)
        self._inbox.cancel()


class MetricsCatalogueTest(unittest.TestCase):
    def setUp(self):
        directory = tempfile.TemporaryDirectory(prefix="tl-metrics-")
        self.addCleanup(directory.cleanup)
        self.server = LocalServer(TLSERVER, directory.name)
        self.addCleanup(self.server.stop)
        documented = deploy_check.documented_metrics(os.path.join(ROOT, deploy_check.METRICS_DOC))
        self.documented = documented
        self.allowed = deploy_check.scrapable_names(documented)
        scheduler = {name: row for name, row in documented.items() if row[2].startswith("Scheduler")}
        self.per_job = {name for name, row in scheduler.items() if "job_id" in row[1]}
        self.per_worker = {name for name, row in scheduler.items() if "worker_id" in row[1]}
        self.per_sweep = {name for name, row in scheduler.items() if "sweep_id" in row[1]}
        self.always = set(scheduler) - self.per_job - self.per_worker - self.per_sweep
        self.assertTrue(self.per_job and self.per_worker and self.always,
                        "the catalogue lost its scheduler tables")

    def served_names(self, series) -> set:
        """The catalogue names served: a histogram or summary counts as
        served when its _count series is."""
        names = set()
        for name, _ in series:
            names.add(name)
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and self.documented.get(name[:-len(suffix)], ("",))[0] in (
                        "histogram", "summary"):
                    names.add(name[:-len(suffix)])
        return names

    def assertAllListed(self, series):
        unlisted = self.served_names(series) - self.allowed
        self.assertFalse(unlisted, f"served but not in docs/METRICS.md: {sorted(unlisted)}")

    def test_served_and_listed_match(self):
        series = scrape(self.server.metrics_url)
        self.assertAllListed(series)
        # A summary is served as its name with quantiles, _sum and _count.
        missing = self.always - self.served_names(series)
        self.assertFalse(missing, f"listed but not served: {sorted(missing)}")
        self.assertFalse(self.per_job & self.served_names(series), "per-job series with no job")
        self.assertFalse(self.per_worker & self.served_names(series), "per-worker series with no worker")
        self.assertFalse(self.per_sweep & self.served_names(series), "per-sweep series with no sweep")

    def test_worker_serves_its_section(self):
        worker = self.start_tlworker("catalogue-worker")
        series = scrape(worker)
        self.assertAllListed(series)
        section = {name: row for name, row in self.documented.items() if row[2].startswith("Worker")}
        always = {name for name, row in section.items()
                  if not any(label in row[1] for label in PER_SERIES_LABELS)}
        self.assertTrue(always and len(always) < len(section), "the catalogue lost its worker tables")
        missing = always - self.served_names(series)
        self.assertFalse(missing, f"listed but not served: {sorted(missing)}")
        idle = (set(section) - always) & self.served_names(series)
        self.assertFalse(idle, f"an idle CPU worker serves {sorted(idle)}")
        self.assertGreater(series[("process_resident_memory_bytes", "")], 1 << 20)
        # The scheduler holds a lease for the real worker too.
        wait_for(lambda: ("tl_worker_lease_age_seconds", '{worker_id="catalogue-worker"}')
                 in scrape(self.server.metrics_url), "the worker's lease age")

    def start_tlworker(self, worker_id: str) -> str:
        """Starts tlworker against the test's server; the URL of its /metrics."""
        directory = self.server.directory
        ready = os.path.join(directory, worker_id + ".ready")
        log = open(os.path.join(directory, worker_id + ".log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [TLWORKER, "--server=" + self.server.address, "--worker_id=" + worker_id,
             "--data_root=" + os.path.join(directory, "data"),
             "--artifact_root=" + os.path.join(directory, "artifacts"),
             "--metrics_listen=127.0.0.1:0", "--ready_file=" + ready],
            stdout=log, stderr=subprocess.STDOUT)

        def stop():
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.addCleanup(stop)
        wait_for(lambda: os.path.exists(ready) or process.poll() is not None, "tlworker's ready file")
        self.assertIsNone(process.poll(), "tlworker exited at start")
        with open(ready) as file:
            port = re.fullmatch(r"metrics=(\d+)\s*", file.read())
        self.assertTrue(port, "ready file not in the form 'metrics=PORT'")
        return f"http://127.0.0.1:{port.group(1)}/metrics"

    def test_per_job_series_live_while_the_job_runs(self):
        channel = grpc.insecure_channel(self.server.address)
        self.addCleanup(channel.close)
        job = Client(channel=channel, timeout=DEADLINE_SECONDS).submit(tiny_spec())
        worker = StandInWorker(channel, "metrics-test-worker")
        self.addCleanup(worker.close)
        assignment = worker.next_assignment()
        self.assertEqual(assignment.job_id, job.id)
        attempt = assignment.attempt
        worker.send(started=service_pb2.JobStarted(job_id=job.id, attempt=attempt))
        worker.send(progress=service_pb2.ProgressReport(job_id=job.id, attempt=attempt,
                                                        progress=jobs_pb2.Progress(
                                                            epoch=1, epochs=2, batch=1, batches=4,
                                                            loss=0.5, images_per_second=40)))
        worker.send(epoch=service_pb2.EpochReport(job_id=job.id, metrics=jobs_pb2.EpochMetrics(
            epoch=1, attempt=attempt, train_loss=0.7, val_loss=0.8, val_accuracy=0.625,
            val_macro_f1=0.5, images_per_second=50, seconds=3)))

        labels = f'{{job_id="{job.id}"}}'
        # One epoch of two left, at the 3 s the first one took. Set last of the job's gauges.
        wait_for(lambda: scrape(self.server.metrics_url).get(("tl_job_eta_seconds", labels)) == 3,
                 "tl_job_eta_seconds of the running job")
        series = scrape(self.server.metrics_url)
        self.assertAllListed(series)
        for name in self.per_job:
            self.assertIn((name, labels), series, f"{name} of the running job")
        self.assertEqual(series[("tl_job_epoch_progress_ratio", labels)], 0.25)
        self.assertEqual(series[("tl_job_val_accuracy", labels)], 0.625)
        self.assertEqual(series[("tl_job_val_macro_f1", labels)], 0.5)
        self.assertEqual(series[("tl_job_epoch", labels)], 1)
        self.assertEqual(series[("tl_epoch_duration_seconds_count", "")], 1)
        self.assertEqual(series[("tl_epoch_duration_seconds_sum", "")], 3)
        self.assertEqual(series[("tl_job_queue_wait_seconds_count", "")], 1)
        lease = ("tl_worker_lease_age_seconds", '{worker_id="metrics-test-worker"}')
        self.assertIn(lease, series)
        self.assertGreaterEqual(series[lease], 0)
        self.assertEqual(series[("tl_job_images_per_second", labels)], 50)
        self.assertEqual(series[("tl_workers_connected", "")], 1)
        self.assertEqual(series[("tl_workers_busy", "")], 1)
        self.assertEqual(series[("tl_jobs", '{state="running"}')], 1)

        worker.send(finished=service_pb2.JobFinished(
            job_id=job.id, attempt=attempt, outcome=service_pb2.JobFinished.FAILED,
            error="stand-in worker stops here"))
        wait_for(lambda: scrape(self.server.metrics_url).get(
            ("tl_jobs_finished_total", '{outcome="failed"}')) == 1, "the failed job counted")
        series = scrape(self.server.metrics_url)
        self.assertFalse([key for key in series if key[1] == labels],
                         "per-job series must go when the job ends")
        self.assertEqual(series[("tl_workers_busy", "")], 0)
        self.assertEqual(series[("tl_job_duration_seconds_count", '{outcome="failed"}')], 1)

        worker.close()
        wait_for(lambda: lease not in scrape(self.server.metrics_url),
                 "the lease age series to go with the worker")


if __name__ == "__main__":
    unittest.main()
