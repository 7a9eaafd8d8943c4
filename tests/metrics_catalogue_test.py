"""docs/METRICS.md against a running tlserver: every series /metrics serves
is listed, every listed scheduler metric is served, and the per-job series
appear while a job runs and go when it ends, as the catalogue says.

A stand-in worker (a WorkerService stream driven from here) takes the job
and reports a start, progress and an epoch, so that no training runs.

    metrics_catalogue_test.py --tlserver build/server/tlserver
(with client/python and build/client/python/gen on PYTHONPATH)
"""
import os
import queue
import re
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
        self.allowed = deploy_check.scrapable_names(documented)
        scheduler = {name: row for name, row in documented.items() if row[2].startswith("Scheduler")}
        self.per_job = {name for name, row in scheduler.items() if "job_id" in row[1]}
        self.always = set(scheduler) - self.per_job
        self.assertTrue(self.per_job and self.always, "the catalogue lost its scheduler tables")

    def served_names(self, series) -> set:
        return {name for name, _ in series}

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
            images_per_second=50)))

        labels = f'{{job_id="{job.id}"}}'
        wait_for(lambda: scrape(self.server.metrics_url).get(("tl_job_epoch", labels)) == 1,
                 "tl_job_epoch of the running job")
        series = scrape(self.server.metrics_url)
        self.assertAllListed(series)
        for name in self.per_job:
            self.assertIn((name, labels), series, f"{name} of the running job")
        self.assertEqual(series[("tl_job_epoch_progress_ratio", labels)], 0.25)
        self.assertEqual(series[("tl_job_val_accuracy", labels)], 0.625)
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


if __name__ == "__main__":
    unittest.main()
