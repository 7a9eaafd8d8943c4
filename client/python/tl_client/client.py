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
"""
import time
import uuid
from typing import Iterable, Iterator, Optional, Sequence, Union

import grpc

from tl_client._stubs import jobs_pb2, service_pb2, service_pb2_grpc
from tl_client.job_spec import JobSpecLike, parse_job_spec

DEFAULT_ADDRESS = "127.0.0.1:50051"
JobState = Union[int, str]


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


def _state_number(state: JobState) -> int:
    if isinstance(state, str):
        try:
            return jobs_pb2.Job.State.Value(state.upper())
        except ValueError:
            known = ", ".join(jobs_pb2.Job.State.keys()[1:])
            raise ValueError(f"unknown job state {state!r}; one of {known}") from None
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

    def submit(self, spec: JobSpecLike, owner: str = "", request_id: str = "",
               retries: int = 3) -> "jobs_pb2.Job":
        """Queues a job. `spec`: a JobSpec or its proto3 JSON form as a dict.
        The reply holds the stored spec, defaults filled in. A call that may
        not have arrived (UNAVAILABLE, DEADLINE_EXCEEDED) is sent again up to
        `retries` times with the same request id: the server returns the job
        the first one created."""
        request = service_pb2.SubmitJobRequest(spec=parse_job_spec(spec), owner=owner,
                                               request_id=request_id or uuid.uuid4().hex)
        for attempt in range(retries + 1):
            try:
                return self._unary("SubmitJob", request)
            except CallError as error:
                if attempt == retries or error.code not in _MAYBE_NOT_ARRIVED:
                    raise
                time.sleep(0.25 * (attempt + 1))
        raise AssertionError("unreachable")

    def get(self, job_id: str) -> "jobs_pb2.Job":
        return self._unary("GetJob", service_pb2.GetJobRequest(job_id=job_id))

    def list(self, states: Iterable[JobState] = (), page_size: int = 0,
             page_token: str = "") -> "service_pb2.ListJobsResponse":
        """One page of jobs, newest first; `states` by name ("RUNNING") or
        number, none for every state. Continue with the reply's
        next_page_token."""
        request = service_pb2.ListJobsRequest(states=[_state_number(s) for s in states],
                                              page_size=page_size, page_token=page_token)
        return self._unary("ListJobs", request)

    def list_all(self, states: Sequence[JobState] = ()) -> Iterator["jobs_pb2.Job"]:
        """Every job in `states`, page after page."""
        token = ""
        while True:
            page = self.list(states, page_token=token)
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
        missed or repeated. `timeout` bounds each stream; none by default."""
        last = after_sequence
        failures = 0
        while True:
            request = service_pb2.WatchJobRequest(job_id=job_id, after_sequence=last)
            stream = self._stub.WatchJob(request, timeout=timeout, metadata=self._metadata)
            try:
                for event in stream:
                    failures = 0
                    if event.sequence:
                        last = event.sequence
                    yield event
                return
            except grpc.RpcError as error:
                failures += 1
                if error.code() not in _MAYBE_NOT_ARRIVED or failures > reconnects:
                    raise _call_error("WatchJob", error) from None
                time.sleep(min(0.2 * failures, 2.0))
            finally:
                stream.cancel()  # a caller that stops early ends the stream too

    def logs(self, job_id: str, follow: bool = False, after_sequence: int = 0,
             timeout: Optional[float] = None) -> Iterator["service_pb2.LogLine"]:
        """The job's kept log lines, oldest first; with `follow`, new ones
        until the job ends."""
        request = service_pb2.GetJobLogsRequest(job_id=job_id, follow=follow,
                                                after_sequence=after_sequence)
        stream = self._stub.GetJobLogs(request, timeout=timeout, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as error:
            raise _call_error("GetJobLogs", error) from None
        finally:
            stream.cancel()


_MAYBE_NOT_ARRIVED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

TERMINAL_STATES = frozenset({jobs_pb2.Job.SUCCEEDED, jobs_pb2.Job.FAILED, jobs_pb2.Job.CANCELLED})


def state_name(state: int) -> str:
    return jobs_pb2.Job.State.Name(state)
