"""A small client of tl.v1.JobService.

    with Client("127.0.0.1:50051") as tl:
        job = tl.submit({"backbone": {"path": "backbones/resnet18.pt"}, ...}, owner="me")
        for event in tl.watch(job.id):
            ...

Every call carries `authorization: Bearer <token>` when a token is given
(a server started with --tokens_file requires it), and the channel uses TLS
when asked to (with the given root certificates, or the system's).

Submits carry a request id (a random one unless given), so a submit whose
reply was lost can be sent again without queuing the job twice; watch() and
logs() reconnect after the last event or line they saw.

Sweeps (many jobs, the trials, searching a space of training settings):

    sweep = tl.submit_sweep(load_sweep_file("examples/sweep.json"))
    for state in tl.watch_sweep(sweep.id):
        print(sweep_state_name(state.state), state.best_job_id)
    trials = tl.list(sweep_id=sweep.id).jobs
"""
import time
import uuid
from typing import Iterable, Iterator, Optional, Sequence, Union

import grpc

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from tl_client._stubs import jobs_pb2, service_pb2, service_pb2_grpc, sweeps_pb2
from tl_client.job_spec import JobSpecLike, SweepSpecLike, parse_job_spec, parse_sweep_spec

DEFAULT_ADDRESS = "127.0.0.1:50051"
JobState = Union[int, str]
SweepState = Union[int, str]


class CallError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's
    message (for INVALID_ARGUMENT it names the offending field)."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str):
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


def _call_error(method: str, error: grpc.RpcError) -> CallError:
    return CallError(method, error.code(), error.details() or "")


def _state_number(states: EnumTypeWrapper, what: str, state: Union[int, str]) -> int:
    """A state given by name (any case) or number, as a number of `states`."""
    if isinstance(state, str):
        try:
            return states.Value(state.upper())
        except ValueError:
            known = ", ".join(states.keys()[1:])
            raise ValueError(f"unknown {what} state {state!r}; one of {known}") from None
    return int(state)


def make_channel(address: str, tls: bool = False,
                 root_certificates: Optional[bytes] = None) -> grpc.Channel:
    """An insecure channel, or a TLS one when `tls` or `root_certificates`
    (PEM bytes) is given."""
    if tls or root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.secure_channel(address, credentials)
    return grpc.insecure_channel(address)


class Client:
    def __init__(self, address: str = DEFAULT_ADDRESS, *, token: Optional[str] = None,
                 tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: float = 30.0, channel: Optional[grpc.Channel] = None):
        """`timeout`: deadline of each unary call, in seconds. `channel`: use
        this channel instead of opening one (it is not closed by close())."""
        self._own_channel = channel is None
        self._channel = channel or make_channel(address, tls, root_certificates)
        self._stub = service_pb2_grpc.JobServiceStub(self._channel)
        self._timeout = timeout
        # A token read from a file keeps its newline, which no header may hold.
        token = token.strip() if token else token
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _unary(self, name: str, request):
        try:
            return getattr(self._stub, name)(request, timeout=self._timeout,
                                             metadata=self._metadata)
        except grpc.RpcError as error:
            raise _call_error(name, error) from None

    def _reconnect_pause(self, failures: int, deadline: Optional[float]) -> None:
        """Before a broken stream is opened again: a pause that grows with the failures in a
        row, then a wait (within `deadline`, a time.monotonic() one) for the channel to
        connect (at most a second, so that `reconnects` failures in a row against a server
        that stays down give up within about a minute and a half). Without that wait a
        stream opened while a restarting server goes away can wait on the channel with
        neither an event nor an error (seen with grpcio 1.51)."""
        pause = min(0.2 * failures, 2.0)
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - time.monotonic()))
        time.sleep(pause)
        ready_within = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=ready_within)
        except grpc.FutureTimeoutError:
            ready.cancel()  # else it stays subscribed to the channel until it connects

    @staticmethod
    def _stream_timeout(deadline: Optional[float], method: str) -> Optional[float]:
        """What is left of a watch's whole `timeout` for its next stream."""
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise CallError(method, grpc.StatusCode.DEADLINE_EXCEEDED, "the timeout passed")
        return left

    def _submit(self, name: str, request, retries: int):
        """A call that may not have arrived (UNAVAILABLE, DEADLINE_EXCEEDED)
        is sent again up to `retries` times with the same request id: the
        server returns what the first one created."""
        for attempt in range(retries + 1):
            try:
                return self._unary(name, request)
            except CallError as error:
                if attempt == retries or error.code not in _MAYBE_NOT_ARRIVED:
                    raise
                time.sleep(0.25 * (attempt + 1))
        raise AssertionError("unreachable")

    def submit(self, spec: JobSpecLike, owner: str = "", request_id: str = "",
               retries: int = 3) -> "jobs_pb2.Job":
        """Queues a job. `spec`: a JobSpec or its proto3 JSON form as a dict.
        The reply holds the stored spec, defaults filled in. Retried as
        _submit says, with one request id (a random one unless given)."""
        request = service_pb2.SubmitJobRequest(spec=parse_job_spec(spec), owner=owner,
                                               request_id=request_id or uuid.uuid4().hex)
        return self._submit("SubmitJob", request, retries)

    def get(self, job_id: str) -> "jobs_pb2.Job":
        return self._unary("GetJob", service_pb2.GetJobRequest(job_id=job_id))

    def list(self, states: Union[JobState, Iterable[JobState]] = (), page_size: int = 0,
             page_token: str = "", sweep_id: str = "") -> "service_pb2.ListJobsResponse":
        """One page of jobs, newest first; `states` by name ("RUNNING") or
        number, one or several, none for every state; with `sweep_id`, only
        that sweep's trials. Continue with the reply's next_page_token (and
        the same filters: the token holds only a place)."""
        request = service_pb2.ListJobsRequest(
            states=[_state_number(jobs_pb2.Job.State, "job", s) for s in _several(states)],
            page_size=page_size, page_token=page_token, sweep_id=sweep_id)
        return self._unary("ListJobs", request)

    def list_all(self, states: Sequence[JobState] = (),
                 sweep_id: str = "") -> Iterator["jobs_pb2.Job"]:
        """Every job in `states` (of the sweep `sweep_id`, if given), page
        after page."""
        token = ""
        while True:
            page = self.list(states, page_token=token, sweep_id=sweep_id)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def cancel(self, job_id: str, reason: str = "") -> "jobs_pb2.Job":
        return self._unary("CancelJob", service_pb2.CancelJobRequest(job_id=job_id, reason=reason))

    def pause(self, job_id: str) -> "jobs_pb2.Job":
        """A queued job pauses at once, a running one after its epoch."""
        return self._unary("PauseJob", service_pb2.PauseJobRequest(job_id=job_id))

    def resume(self, job_id: str) -> "jobs_pb2.Job":
        return self._unary("ResumeJob", service_pb2.ResumeJobRequest(job_id=job_id))

    def watch(self, job_id: str, after_sequence: int = 0, timeout: Optional[float] = None,
              reconnects: int = 30) -> Iterator["service_pb2.JobEvent"]:
        """Every event of the job after `after_sequence` (0: from its
        submission), then live ones until it ends (the iterator then stops).
        Each event has one of `job`, `epoch` or `progress` set
        (event.WhichOneof("event")); stored events carry a sequence number.
        A broken stream (a restarting server) is opened again after the last
        sequence seen, up to `reconnects` times in a row, so no event is
        missed or repeated. `timeout` bounds the whole watch, reconnects
        included (DEADLINE_EXCEEDED); none by default."""
        return self._resumed_stream(
            "WatchJob", lambda last: service_pb2.WatchJobRequest(job_id=job_id,
                                                                 after_sequence=last),
            after_sequence, timeout, reconnects, resume=True)

    def logs(self, job_id: str, follow: bool = False, after_sequence: int = 0,
             timeout: Optional[float] = None,
             reconnects: int = 30) -> Iterator["service_pb2.LogLine"]:
        """The job's kept log lines after `after_sequence`, oldest first;
        with `follow`, new ones until the job ends, a broken stream opened
        again after the last line seen, as watch() does. `timeout` bounds the
        whole call."""
        # Without `follow` a call is one read: it fails as any unary call does.
        return self._resumed_stream(
            "GetJobLogs", lambda last: service_pb2.GetJobLogsRequest(
                job_id=job_id, follow=follow, after_sequence=last),
            after_sequence, timeout, reconnects, resume=follow)

    def _resumed_stream(self, method: str, request_after, after_sequence: int,
                        timeout: Optional[float], reconnects: int, resume: bool):
        """The messages of stream `method`, whose request_after(n) asks for those after
        sequence n. With `resume`, a stream broken by its server going away (_STREAM_BROKEN) is
        opened again after the last sequence seen, up to `reconnects` times in a row;
        `timeout` bounds the whole call, reconnects included."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after_sequence
        failures = 0
        while True:
            stream = getattr(self._stub, method)(request_after(last),
                                                 timeout=self._stream_timeout(deadline, method),
                                                 metadata=self._metadata)
            try:
                for message in stream:
                    failures = 0
                    last = max(last, message.sequence)  # 0: not stored (a progress event)
                    yield message
                return
            except grpc.RpcError as error:
                failures += 1
                if (not resume or error.code() not in _STREAM_BROKEN
                        or failures > reconnects):
                    raise _call_error(method, error) from None
                self._reconnect_pause(failures, deadline)
            finally:
                stream.cancel()  # a caller that stops early ends the stream too

    # ------------------------------------------------------------------ sweeps

    def submit_sweep(self, spec: SweepSpecLike, owner: str = "", request_id: str = "",
                     retries: int = 3) -> "sweeps_pb2.Sweep":
        """Starts a sweep. `spec`: a SweepSpec or its proto3 JSON form as a
        dict (sweep.json). The server checks every trial the space can give
        before it accepts (INVALID_ARGUMENT naming the field, such as
        `space[0].min`); the reply holds the stored spec, defaults filled in.
        `owner` owns the sweep and its trials. Retried as submit() is."""
        request = service_pb2.SubmitSweepRequest(spec=parse_sweep_spec(spec), owner=owner,
                                                 request_id=request_id or uuid.uuid4().hex)
        return self._submit("SubmitSweep", request, retries)

    def get_sweep(self, sweep_id: str) -> "sweeps_pb2.Sweep":
        """The sweep with every trial (index, job id, values, state, epoch,
        objective) and its best trial so far."""
        return self._unary("GetSweep", service_pb2.GetSweepRequest(sweep_id=sweep_id))

    def list_sweeps(self, states: Union[SweepState, Iterable[SweepState]] = (),
                    page_size: int = 0,
                    page_token: str = "") -> "service_pb2.ListSweepsResponse":
        """One page of sweeps, newest first, without their trials (get_sweep
        has them); `states` by name ("RUNNING") or number, one or several."""
        request = service_pb2.ListSweepsRequest(
            states=[_state_number(sweeps_pb2.Sweep.State, "sweep", s) for s in _several(states)],
            page_size=page_size, page_token=page_token)
        return self._unary("ListSweeps", request)

    def cancel_sweep(self, sweep_id: str, reason: str = "") -> "sweeps_pb2.Sweep":
        """Ends the sweep: trials that have not ended are cancelled."""
        return self._unary("CancelSweep",
                           service_pb2.CancelSweepRequest(sweep_id=sweep_id, reason=reason))

    def pause_sweep(self, sweep_id: str) -> "sweeps_pb2.Sweep":
        """No new trials; queued trials pause at once, running ones after
        their epoch."""
        return self._unary("PauseSweep", service_pb2.PauseSweepRequest(sweep_id=sweep_id))

    def resume_sweep(self, sweep_id: str) -> "sweeps_pb2.Sweep":
        return self._unary("ResumeSweep", service_pb2.ResumeSweepRequest(sweep_id=sweep_id))

    def watch_sweep(self, sweep_id: str, timeout: Optional[float] = None,
                    reconnects: int = 30) -> Iterator["sweeps_pb2.Sweep"]:
        """The sweep as it is, then again whenever it changes (a trial
        created, changing state or reporting an objective; its own state),
        until it ends (SWEEP_ENDED_STATES; the iterator then stops). A broken
        stream is opened again, up to `reconnects` times in a row; each new
        stream starts with the sweep as it is, which is yielded only if it
        differs from the last one yielded. `timeout` bounds the whole watch,
        reconnects included (DEADLINE_EXCEEDED); none by default."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        failures = 0
        while True:
            request = service_pb2.WatchSweepRequest(sweep_id=sweep_id)
            stream = self._stub.WatchSweep(request,
                                           timeout=self._stream_timeout(deadline, "WatchSweep"),
                                           metadata=self._metadata)
            try:
                for event in stream:
                    if event.sweep != last:
                        failures = 0
                        last = event.sweep
                        yield event.sweep
                if last is not None and last.state in SWEEP_ENDED_STATES:
                    return
                failures += 1
                if failures > reconnects:
                    raise CallError("WatchSweep", grpc.StatusCode.UNAVAILABLE,
                                    "the stream ended before the sweep did")
            except grpc.RpcError as error:
                failures += 1
                if error.code() not in _STREAM_BROKEN or failures > reconnects:
                    raise _call_error("WatchSweep", error) from None
            finally:
                stream.cancel()  # a caller that stops early ends the stream too
            self._reconnect_pause(failures, deadline)


_MAYBE_NOT_ARRIVED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# How a stream ends when its server goes away: UNAVAILABLE, or CANCELLED where the server's
# shutdown cut it before it could say more (a caller's own early stop raises nothing). A
# DEADLINE_EXCEEDED is the caller's own timeout, and is not retried.
_STREAM_BROKEN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def _several(states):
    """One state (a name or a number) as a tuple of one; several as they are."""
    return (states,) if isinstance(states, (str, int)) else states

# A job in one of these has ended for good (STOPPED_EARLY: a sweep's trial
# that the sweep stopped).
TERMINAL_STATES = frozenset({jobs_pb2.Job.SUCCEEDED, jobs_pb2.Job.FAILED, jobs_pb2.Job.CANCELLED,
                             jobs_pb2.Job.STOPPED_EARLY})
# A sweep in one of these has ended for good (a PAUSED one may resume).
SWEEP_ENDED_STATES = frozenset({sweeps_pb2.Sweep.SUCCEEDED, sweeps_pb2.Sweep.FAILED,
                                sweeps_pb2.Sweep.CANCELLED})


def state_name(state: int) -> str:
    return jobs_pb2.Job.State.Name(state)


def sweep_state_name(state: int) -> str:
    return sweeps_pb2.Sweep.State.Name(state)
