"""Python client of tl (the transfer-learning job server): JobService calls
for jobs and sweeps, job.json and sweep.json parsing, and health and
reflection probes."""
from tl_client._stubs import jobs_pb2, service_pb2, service_pb2_grpc, sweeps_pb2
from tl_client.client import (DEFAULT_ADDRESS, SWEEP_ENDED_STATES, TERMINAL_STATES, CallError,
                              Client, make_channel, state_name, sweep_state_name)
from tl_client.job_spec import (JobSpecError, SweepSpecError, load_job_file, load_sweep_file,
                                parse_job_spec, parse_job_spec_json, parse_sweep_spec,
                                parse_sweep_spec_json)
from tl_client.probes import Reflection, ReflectionError, health_check, message_classes

__all__ = [
    "CallError", "Client", "DEFAULT_ADDRESS", "JobSpecError", "Reflection", "ReflectionError",
    "SWEEP_ENDED_STATES", "SweepSpecError", "TERMINAL_STATES", "health_check", "jobs_pb2",
    "load_job_file", "load_sweep_file", "make_channel", "message_classes", "parse_job_spec",
    "parse_job_spec_json", "parse_sweep_spec", "parse_sweep_spec_json", "service_pb2",
    "service_pb2_grpc", "state_name", "sweep_state_name", "sweeps_pb2",
]
