"""The Python client against a real tlserver on 127.0.0.1 (no worker: jobs
stay queued until cancelled): submit, get, list, watch, cancel, validation
errors, the bearer token, health checking, server reflection, the example
script, and watch() and logs() across a restart of the server.

    client_test.py --tlserver build/server/tlserver
(with client/python and build/client/python/gen on PYTHONPATH)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import json_format

import tl_client
from tl_client import CallError, Client, JobSpecError, Reflection, health_check, jobs_pb2
from tl_client.testing import DEADLINE_SECONDS, LocalServer, tiny_spec, tlserver_from_argv

HERE = os.path.dirname(os.path.abspath(__file__))
TLSERVER = tlserver_from_argv()


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.TemporaryDirectory(prefix="tl-python-client-")
        cls.server = LocalServer(TLSERVER, cls.directory.name)
        cls.client = Client(cls.server.address, timeout=DEADLINE_SECONDS)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()
        cls.directory.cleanup()

    def test_submit_get_list(self):
        job = self.client.submit(tiny_spec(), owner="py-test")
        self.assertTrue(job.id)
        self.assertEqual(job.state, jobs_pb2.Job.QUEUED)
        self.assertEqual(job.owner, "py-test")
        # The stored spec has the defaults filled in.
        self.assertEqual(job.spec.training.epochs, 2)
        self.assertEqual(job.spec.training.optimizer, jobs_pb2.TrainingSpec.ADAM)
        self.assertAlmostEqual(job.spec.training.learning_rate, 0.001)

        fetched = self.client.get(job.id)
        self.assertEqual(fetched.id, job.id)
        self.assertEqual(fetched.spec.name, "python-client-test")

        queued = [j.id for j in self.client.list(states=["QUEUED"], page_size=1000).jobs]
        self.assertIn(job.id, queued)
        succeeded = [j.id for j in self.client.list(states=["SUCCEEDED"]).jobs]
        self.assertNotIn(job.id, succeeded)
        self.assertIn(job.id, [j.id for j in self.client.list_all()])
        self.client.cancel(job.id)

    def test_job_spec_message_is_accepted_as_is(self):
        spec = json_format.ParseDict(tiny_spec(), jobs_pb2.JobSpec())
        job = self.client.submit(spec)
        self.assertEqual(job.owner, "anonymous")
        self.client.cancel(job.id)

    def test_watch_then_cancel(self):
        job = self.client.submit(tiny_spec(), owner="py-test")
        events = self.client.watch(job.id, timeout=DEADLINE_SECONDS)
        first = next(events)
        self.assertEqual(first.WhichOneof("event"), "job")
        self.assertEqual(first.job.id, job.id)
        self.assertEqual(first.job.state, jobs_pb2.Job.QUEUED)

        cancelled = self.client.cancel(job.id, reason="test over")
        self.assertEqual(cancelled.state, jobs_pb2.Job.CANCELLED)
        # The stream carries the change and then ends by itself.
        rest = [e.job.state for e in events if e.WhichOneof("event") == "job"]
        self.assertEqual(rest[-1:], [jobs_pb2.Job.CANCELLED])
        self.assertEqual(self.client.get(job.id).state, jobs_pb2.Job.CANCELLED)

    def test_repeated_request_id_returns_the_same_job(self):
        first = self.client.submit(tiny_spec(), owner="py-test", request_id="py-req-1")
        again = self.client.submit(tiny_spec(), owner="py-test", request_id="py-req-1")
        self.assertEqual(again.id, first.id)
        self.assertEqual(again.request_id, "py-req-1")
        other = self.client.submit(tiny_spec(), owner="py-test")
        self.assertNotEqual(other.id, first.id)
        self.client.cancel(first.id)
        self.client.cancel(other.id)

    def test_pause_resume_and_watch_after_a_sequence(self):
        job = self.client.submit(tiny_spec(), owner="py-test")
        paused = self.client.pause(job.id)
        self.assertEqual(paused.state, jobs_pb2.Job.PAUSED)
        resumed = self.client.resume(job.id)
        self.assertEqual(resumed.state, jobs_pb2.Job.QUEUED)
        self.client.cancel(job.id)
        # The whole history, numbered; then only what follows a given number.
        history = list(self.client.watch(job.id, timeout=DEADLINE_SECONDS))
        self.assertEqual([e.job.state for e in history],
                         [jobs_pb2.Job.QUEUED, jobs_pb2.Job.PAUSED, jobs_pb2.Job.QUEUED,
                          jobs_pb2.Job.CANCELLED])
        self.assertEqual([e.sequence for e in history], [1, 2, 3, 4])
        tail = list(self.client.watch(job.id, after_sequence=2, timeout=DEADLINE_SECONDS))
        self.assertEqual([e.sequence for e in tail], [3, 4])
        # No worker ran it: no log lines.
        self.assertEqual(list(self.client.logs(job.id, timeout=DEADLINE_SECONDS)), [])

    def test_invalid_spec_names_the_field(self):
        with self.assertRaises(CallError) as raised:
            self.client.submit(tiny_spec(epochs=-1))
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("training.epochs", raised.exception.details)

    def test_unknown_job_is_not_found(self):
        with self.assertRaises(CallError) as raised:
            self.client.get("no-such-job")
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_unknown_field_is_refused_before_sending(self):
        with self.assertRaisesRegex(JobSpecError, "epoch"):
            self.client.submit({"training": {"epoch": 3}})
        with self.assertRaisesRegex(ValueError, "unknown job state 'DONE'"):
            self.client.list(states=["DONE"])

    def test_token_travels_with_every_call(self):
        seen = []

        class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
            def _record(self, continuation, details, request):
                seen.append((details.method, dict(details.metadata or ())))
                return continuation(details, request)

            intercept_unary_unary = _record
            intercept_unary_stream = _record

        channel = grpc.intercept_channel(grpc.insecure_channel(self.server.address), Recorder())
        with Client(channel=channel, token="s3cret", timeout=DEADLINE_SECONDS) as client:
            job = client.submit(tiny_spec())
            client.get(job.id)
            client.list()
            watch = client.watch(job.id, timeout=DEADLINE_SECONDS)
            next(watch)
            client.cancel(job.id)
            list(watch)
        channel.close()
        methods = sorted({method.rsplit("/", 1)[-1] for method, _ in seen})
        self.assertEqual(methods, ["CancelJob", "GetJob", "ListJobs", "SubmitJob", "WatchJob"])
        for method, metadata in seen:
            self.assertEqual(metadata.get("authorization"), "Bearer s3cret", method)

    def test_health_check_serving(self):
        with grpc.insecure_channel(self.server.address) as channel:
            self.assertEqual(health_check(channel), "SERVING")

    def test_reflection_is_enough_to_submit(self):
        """A client that knows only the address: the service list and the
        descriptors from reflection build a SubmitJob request and read the
        reply, without the generated stubs."""
        with grpc.insecure_channel(self.server.address) as channel:
            reflection = Reflection(channel)
            self.assertIn("tl.v1.JobService", reflection.services())
            files = reflection.files_containing("tl.v1.JobService")
            self.assertIn("google/protobuf/timestamp.proto", [f.name for f in files])
            classes = tl_client.message_classes(files)
            request_class = classes["tl.v1.SubmitJobRequest"]
            job_class = classes["tl.v1.Job"]
            self.assertIsNot(job_class, jobs_pb2.Job)
            service = next(s for f in files for s in f.service if s.name == "JobService")
            method = next(m for m in service.method if m.name == "SubmitJob")
            self.assertEqual((method.input_type, method.output_type),
                             (".tl.v1.SubmitJobRequest", ".tl.v1.Job"))

            request = json_format.ParseDict({"spec": tiny_spec(), "owner": "reflected"},
                                            request_class())
            submit = channel.unary_unary("/tl.v1.JobService/SubmitJob",
                                         request_serializer=request_class.SerializeToString,
                                         response_deserializer=job_class.FromString)
            job = submit(request, timeout=DEADLINE_SECONDS)
            state = job_class.DESCRIPTOR.fields_by_name["state"].enum_type
            self.assertEqual(state.values_by_number[job.state].name, "QUEUED")
            self.assertEqual(job.owner, "reflected")
        self.client.cancel(job.id)

    def test_example_script_submits_watches_and_cancels(self):
        job_file = os.path.join(self.directory.name, "job.json")
        with open(job_file, "w") as file:
            json.dump(tiny_spec(), file)
        env = dict(os.environ, TL_TOKEN="")
        result = subprocess.run(
            [sys.executable, os.path.join(HERE, "examples", "submit_watch_cancel.py"), job_file,
             "--server", self.server.address, "--owner", "example", "--cancel-after", "0"],
            capture_output=True, text=True, timeout=DEADLINE_SECONDS, env=env)
        self.assertEqual(result.returncode, 4, result.stdout + result.stderr)
        job_id = re.search(r"submitted (\S+)", result.stdout).group(1)
        self.assertIn(f"job {job_id}: CANCELLED", result.stdout)
        self.assertEqual(self.client.get(job_id).owner, "example")

    def test_example_script_reports_a_bad_job_file(self):
        job_file = os.path.join(self.directory.name, "bad.json")
        with open(job_file, "w") as file:
            json.dump({"training": {"epochs": "many"}}, file)
        result = subprocess.run(
            [sys.executable, os.path.join(HERE, "examples", "submit_watch_cancel.py"), job_file,
             "--server", self.server.address],
            capture_output=True, text=True, timeout=DEADLINE_SECONDS)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn("bad.json", result.stderr)


class ServerRestartTest(unittest.TestCase):
    """A watch, a log follower and a timeout across tlserver stopping (SIGTERM) and another
    starting on its port with its database."""

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory(prefix="tl-python-restart-")
        self.addCleanup(self.directory.cleanup)
        self.server = LocalServer(TLSERVER, self.directory.name)
        self.addCleanup(lambda: self.server.stop())
        self.port = int(self.server.address.rsplit(":", 1)[1])

    def test_watch_and_logs_go_on_across_a_restart(self):
        client = Client(self.server.address, timeout=DEADLINE_SECONDS)
        self.addCleanup(client.close)
        job = client.submit(tiny_spec(), owner="py-test")
        seen = {"states": [], "lines": 0, "errors": []}
        first = threading.Event()

        def watch():
            try:
                for event in client.watch(job.id):
                    if event.WhichOneof("event") == "job":
                        seen["states"].append(event.job.state)
                        first.set()
            except CallError as error:
                seen["errors"].append(str(error))

        def follow():
            try:
                for _ in client.logs(job.id, follow=True):
                    seen["lines"] += 1
            except CallError as error:
                seen["errors"].append(str(error))

        threads = [threading.Thread(target=watch, daemon=True),
                   threading.Thread(target=follow, daemon=True)]
        for thread in threads:
            thread.start()
        self.assertTrue(first.wait(DEADLINE_SECONDS))
        self.server.stop()
        self.server = LocalServer(TLSERVER, self.directory.name, port=self.port)
        with Client(self.server.address, timeout=DEADLINE_SECONDS) as other:
            other.cancel(job.id, reason="over")
        for thread in threads:
            thread.join(DEADLINE_SECONDS)
            self.assertFalse(thread.is_alive(), "a stream did not end after the restart")
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["states"], [jobs_pb2.Job.QUEUED, jobs_pb2.Job.CANCELLED])
        self.assertEqual(seen["lines"], 0)  # no worker ran it

    def test_a_watch_timeout_bounds_the_whole_watch(self):
        client = Client(self.server.address, timeout=DEADLINE_SECONDS)
        self.addCleanup(client.close)
        job = client.submit(tiny_spec(), owner="py-test")
        started = time.monotonic()
        with self.assertRaises(CallError) as raised:
            for _ in client.watch(job.id, timeout=1.0):
                pass
        self.assertEqual(raised.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - started, DEADLINE_SECONDS)
        client.cancel(job.id)

    def test_one_state_by_name_lists_by_that_state(self):
        client = Client(self.server.address, timeout=DEADLINE_SECONDS)
        self.addCleanup(client.close)
        job = client.submit(tiny_spec(), owner="py-test")
        self.assertIn(job.id, [j.id for j in client.list(states="QUEUED").jobs])
        self.assertNotIn(job.id, [j.id for j in client.list(states="RUNNING").jobs])
        client.cancel(job.id)


if __name__ == "__main__":
    unittest.main()
