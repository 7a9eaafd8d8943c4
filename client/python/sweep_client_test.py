"""The Python client's sweep calls.

Against a scripted JobService in this process (FakeServiceTest): the requests
each call sends, its retries, and how watch_sweep reconnects and ends. Against
a real tlserver on 127.0.0.1 (RealServerTest, no worker: trials stay queued):
a sweep submitted, read, listed with its trials, and cancelled; these are
skipped, saying so, while the server answers the sweep calls UNIMPLEMENTED.

    sweep_client_test.py --tlserver build/server/tlserver
(with client/python and build/client/python/gen on PYTHONPATH)
"""
import json
import os
import tempfile
import threading
import unittest
from concurrent import futures

import grpc

from tl_client import (SWEEP_ENDED_STATES, CallError, Client, SweepSpecError, jobs_pb2,
                       load_sweep_file, service_pb2, service_pb2_grpc, sweeps_pb2)
from tl_client.testing import DEADLINE_SECONDS, LocalServer, tiny_spec, tlserver_from_argv

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
TLSERVER = tlserver_from_argv()

Sweep = sweeps_pb2.Sweep


def tiny_sweep(**fields) -> dict:
    """Two GRID trials of the tiny job, differing in their learning rate."""
    return {
        "name": "python-sweep-test",
        "base": tiny_spec(),
        "space": [{"field": "training.learning_rate", "values": [0.01, 0.001]}],
        "method": "GRID",
        **fields,
    }


def make_sweep(sweep_id: str, state: int, trials=()) -> "sweeps_pb2.Sweep":
    sweep = Sweep(id=sweep_id, state=state)
    for index, trial_state in enumerate(trials):
        trial = sweep.trials.add(index=index, job_id=f"{sweep_id}-trial-{index}",
                                 state=trial_state)
        trial.parameters["training.learning_rate"] = 0.01 / (index + 1)
    return sweep


class ScriptedService(service_pb2_grpc.JobServiceServicer):
    """Answers each sweep call with the function a test set (UNIMPLEMENTED
    otherwise), recording every request under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.handlers = {}

    def on(self, method: str, handler) -> None:
        with self.lock:
            self.handlers[method] = handler

    def seen(self, method: str) -> list:
        with self.lock:
            return list(self.requests.get(method, []))

    def _answer(self, method: str, request, context):
        with self.lock:
            self.requests.setdefault(method, []).append(request)
            handler = self.handlers.get(method)
        if handler is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")
        return handler(request, context)

    def SubmitSweep(self, request, context):
        return self._answer("SubmitSweep", request, context)

    def GetSweep(self, request, context):
        return self._answer("GetSweep", request, context)

    def ListSweeps(self, request, context):
        return self._answer("ListSweeps", request, context)

    def CancelSweep(self, request, context):
        return self._answer("CancelSweep", request, context)

    def PauseSweep(self, request, context):
        return self._answer("PauseSweep", request, context)

    def ResumeSweep(self, request, context):
        return self._answer("ResumeSweep", request, context)

    def ListJobs(self, request, context):
        return self._answer("ListJobs", request, context)

    def WatchSweep(self, request, context):
        yield from self._answer("WatchSweep", request, context)


class FakeServiceTest(unittest.TestCase):
    def setUp(self):
        self.service = ScriptedService()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service_pb2_grpc.add_JobServiceServicer_to_server(self.service, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.client = Client(f"127.0.0.1:{port}", token="s3cret", timeout=DEADLINE_SECONDS)

    def tearDown(self):
        self.client.close()
        self.server.stop(grace=None)

    def test_submit_sweep_sends_the_spec_owner_and_one_request_id_across_retries(self):
        calls = []

        def submit(request, context):
            calls.append(dict(context.invocation_metadata()))
            if len(calls) == 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            return make_sweep("sweep-1", Sweep.RUNNING)

        self.service.on("SubmitSweep", submit)
        sweep = self.client.submit_sweep(tiny_sweep(maxTrials=2), owner="py-test")
        self.assertEqual(sweep.id, "sweep-1")
        requests = self.service.seen("SubmitSweep")
        self.assertEqual(len(requests), 2)
        self.assertEqual(requests[0].request_id, requests[1].request_id)
        self.assertRegex(requests[0].request_id, "^[0-9a-f]{32}$")
        self.assertEqual(requests[0].owner, "py-test")
        spec = requests[0].spec
        self.assertEqual(spec.name, "python-sweep-test")
        self.assertEqual(spec.method, sweeps_pb2.SweepSpec.GRID)
        self.assertEqual(spec.max_trials, 2)
        self.assertEqual(spec.base.training.epochs, 2)
        self.assertEqual(spec.space[0].field, "training.learning_rate")
        self.assertEqual(list(spec.space[0].values), [0.01, 0.001])
        self.assertEqual(calls[0].get("authorization"), "Bearer s3cret")

    def test_submit_sweep_does_not_repeat_a_refusal(self):
        self.service.on("SubmitSweep", lambda request, context: context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, "space[0].field: training.nope is not a field"))
        with self.assertRaises(CallError) as raised:
            self.client.submit_sweep(tiny_sweep(), request_id="mine")
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("space[0].field", raised.exception.details)
        self.assertEqual([r.request_id for r in self.service.seen("SubmitSweep")], ["mine"])

    def test_a_bad_sweep_spec_is_refused_before_sending_naming_origin_and_field(self):
        cases = [
            ({"spaces": []}, "spaces"),
            ({"space": [{"field": "a"}, {"field": "b", "scale": "LOG10"}]}, "space[1].scale"),
            ({"base": {"training": {"epoch": 3}}}, "epoch"),
            ({"method": "BAYES"}, "BAYES"),
        ]
        for spec, named in cases:
            with self.subTest(spec=spec):
                with self.assertRaises(SweepSpecError) as raised:
                    self.client.submit_sweep(spec)
                self.assertIn("sweep spec", str(raised.exception))
                self.assertIn(named, str(raised.exception))
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "sweep.json")
            with open(path, "w") as file:
                json.dump({"maxTrials": "many"}, file)
            with self.assertRaisesRegex(SweepSpecError, "sweep.json.*maxTrials"):
                load_sweep_file(path)
            with self.assertRaisesRegex(SweepSpecError, "absent.json"):
                load_sweep_file(os.path.join(directory, "absent.json"))
        self.assertEqual(self.service.seen("SubmitSweep"), [])

    def test_get_list_cancel_pause_resume_send_the_sweep_id(self):
        self.service.on("GetSweep", lambda r, c: make_sweep(r.sweep_id, Sweep.RUNNING,
                                                            [jobs_pb2.Job.RUNNING]))
        self.service.on("ListSweeps", lambda r, c: service_pb2.ListSweepsResponse(
            sweeps=[make_sweep("sweep-2", Sweep.PAUSED)], next_page_token="after-2"))
        self.service.on("CancelSweep", lambda r, c: make_sweep(r.sweep_id, Sweep.CANCELLED))
        self.service.on("PauseSweep", lambda r, c: make_sweep(r.sweep_id, Sweep.PAUSED))
        self.service.on("ResumeSweep", lambda r, c: make_sweep(r.sweep_id, Sweep.RUNNING))

        got = self.client.get_sweep("sweep-2")
        self.assertEqual(got.trials[0].job_id, "sweep-2-trial-0")
        page = self.client.list_sweeps(states=["paused", Sweep.RUNNING], page_size=1,
                                       page_token="start")
        self.assertEqual([s.id for s in page.sweeps], ["sweep-2"])
        self.assertEqual(page.next_page_token, "after-2")
        self.assertEqual(self.client.pause_sweep("sweep-2").state, Sweep.PAUSED)
        self.assertEqual(self.client.resume_sweep("sweep-2").state, Sweep.RUNNING)
        self.assertEqual(self.client.cancel_sweep("sweep-2", reason="enough").state,
                         Sweep.CANCELLED)

        self.assertEqual(self.service.seen("GetSweep")[0].sweep_id, "sweep-2")
        listed = self.service.seen("ListSweeps")[0]
        self.assertEqual(list(listed.states), [Sweep.PAUSED, Sweep.RUNNING])
        self.assertEqual((listed.page_size, listed.page_token), (1, "start"))
        self.assertEqual(self.service.seen("PauseSweep")[0].sweep_id, "sweep-2")
        self.assertEqual(self.service.seen("ResumeSweep")[0].sweep_id, "sweep-2")
        cancel = self.service.seen("CancelSweep")[0]
        self.assertEqual((cancel.sweep_id, cancel.reason), ("sweep-2", "enough"))

    def test_an_unknown_sweep_state_is_refused_before_sending(self):
        with self.assertRaisesRegex(ValueError, "unknown sweep state 'QUEUED'"):
            self.client.list_sweeps(states=["QUEUED"])
        self.assertEqual(self.service.seen("ListSweeps"), [])

    def test_list_of_a_sweeps_trials(self):
        self.service.on("ListJobs", lambda r, c: service_pb2.ListJobsResponse(
            jobs=[jobs_pb2.Job(id="t-1", sweep_id=r.sweep_id, state=jobs_pb2.Job.STOPPED_EARLY)]))
        jobs = list(self.client.list_all(sweep_id="sweep-3"))
        self.assertEqual([(j.id, j.sweep_id) for j in jobs], [("t-1", "sweep-3")])
        self.client.list(states=["STOPPED_EARLY"], sweep_id="sweep-3")
        requests = self.service.seen("ListJobs")
        self.assertEqual([r.sweep_id for r in requests], ["sweep-3", "sweep-3"])
        self.assertEqual(list(requests[1].states), [jobs_pb2.Job.STOPPED_EARLY])

    def test_watch_sweep_reconnects_yields_each_change_once_and_stops_at_the_end(self):
        queued = make_sweep("sweep-4", Sweep.RUNNING, [jobs_pb2.Job.QUEUED])
        running = make_sweep("sweep-4", Sweep.RUNNING, [jobs_pb2.Job.RUNNING])
        done = make_sweep("sweep-4", Sweep.SUCCEEDED, [jobs_pb2.Job.SUCCEEDED])
        streams = []

        def watch(request, context):
            streams.append(request.sweep_id)
            if len(streams) == 1:
                yield sweeps_pb2.SweepEvent(sequence=1, sweep=queued)
                yield sweeps_pb2.SweepEvent(sequence=2, sweep=running)
                context.abort(grpc.StatusCode.UNAVAILABLE, "server restarting")
            # Each stream starts with the sweep as it is.
            yield sweeps_pb2.SweepEvent(sequence=1, sweep=running)
            if len(streams) == 2:
                return  # ended cleanly before the sweep did: watched again
            yield sweeps_pb2.SweepEvent(sequence=2, sweep=done)

        self.service.on("WatchSweep", watch)
        seen = list(self.client.watch_sweep("sweep-4", timeout=DEADLINE_SECONDS))
        self.assertEqual(seen, [queued, running, done])
        self.assertIn(seen[-1].state, SWEEP_ENDED_STATES)
        self.assertEqual(streams, ["sweep-4"] * 3)

    def test_watch_sweep_stops_at_once_on_an_answer_that_will_not_change(self):
        def watch(request, context):
            context.abort(grpc.StatusCode.NOT_FOUND, f"sweep {request.sweep_id} not found")
            yield  # a generator, as a stream's handler is

        self.service.on("WatchSweep", watch)
        with self.assertRaises(CallError) as raised:
            list(self.client.watch_sweep("nope", timeout=DEADLINE_SECONDS))
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(len(self.service.seen("WatchSweep")), 1)

    def test_watch_sweep_gives_up_after_its_reconnects(self):
        def watch(request, context):
            yield sweeps_pb2.SweepEvent(sequence=1, sweep=make_sweep("s", Sweep.RUNNING))

        self.service.on("WatchSweep", watch)
        with self.assertRaises(CallError) as raised:
            list(self.client.watch_sweep("s", timeout=DEADLINE_SECONDS, reconnects=2))
        self.assertEqual(raised.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(len(self.service.seen("WatchSweep")), 3)


class RealServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.TemporaryDirectory(prefix="tl-python-sweep-")
        cls.server = LocalServer(TLSERVER, cls.directory.name)
        cls.client = Client(cls.server.address, timeout=DEADLINE_SECONDS)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()
        cls.directory.cleanup()

    def submit_or_skip(self, spec: dict) -> "sweeps_pb2.Sweep":
        try:
            return self.client.submit_sweep(spec, owner="py-test")
        except CallError as error:
            if error.code == grpc.StatusCode.UNIMPLEMENTED:
                self.skipTest(f"this tlserver answers SubmitSweep UNIMPLEMENTED ({error.details})")
            raise

    def test_the_example_sweep_file_parses(self):
        spec = load_sweep_file(os.path.join(EXAMPLES, "sweep.json"))
        self.assertEqual(spec.method, sweeps_pb2.SweepSpec.ASHA)
        self.assertLessEqual(spec.max_trials, 16)

    def test_submit_get_list_watch_cancel(self):
        sweep = self.submit_or_skip(tiny_sweep())
        self.assertTrue(sweep.id)
        self.assertEqual(sweep.owner, "py-test")
        self.assertEqual(sweep.spec.max_trials, 2)  # GRID: the grid's size

        got = self.client.get_sweep(sweep.id)
        self.assertEqual(got.id, sweep.id)
        self.assertEqual(len(got.trials), 2)
        self.assertEqual(sorted(t.parameters["training.learning_rate"] for t in got.trials),
                         [0.001, 0.01])
        self.assertIn(sweep.id, [s.id for s in self.client.list_sweeps(page_size=1000).sweeps])
        trials = list(self.client.list_all(sweep_id=sweep.id))
        self.assertEqual(sorted(t.id for t in trials), sorted(t.job_id for t in got.trials))
        self.assertTrue(all(t.sweep_id == sweep.id for t in trials))

        watch = self.client.watch_sweep(sweep.id, timeout=DEADLINE_SECONDS)
        self.assertEqual(next(watch).state, Sweep.RUNNING)
        cancelled = self.client.cancel_sweep(sweep.id, reason="test over")
        self.assertEqual(cancelled.state, Sweep.CANCELLED)
        rest = list(watch)  # ends by itself after the end state
        self.assertEqual(rest[-1].state, Sweep.CANCELLED)
        for trial in self.client.list_all(sweep_id=sweep.id):
            self.assertEqual(trial.state, jobs_pb2.Job.CANCELLED)

    def test_pause_and_resume(self):
        sweep = self.submit_or_skip(tiny_sweep())
        self.assertEqual(self.client.pause_sweep(sweep.id).state, Sweep.PAUSED)
        self.assertEqual(self.client.resume_sweep(sweep.id).state, Sweep.RUNNING)
        self.client.cancel_sweep(sweep.id)

    def test_an_unknown_field_of_the_space_is_invalid_argument_naming_it(self):
        spec = tiny_sweep(space=[{"field": "training.nope", "values": [1, 2]}])
        try:
            self.client.submit_sweep(spec)
        except CallError as error:
            if error.code == grpc.StatusCode.UNIMPLEMENTED:
                self.skipTest("this tlserver answers SubmitSweep UNIMPLEMENTED")
            self.assertEqual(error.code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("space[0].field", error.details)
        else:
            self.fail("a sweep over an unknown field was accepted")


if __name__ == "__main__":
    unittest.main()
