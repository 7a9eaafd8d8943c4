"""Python client of tl (the transfer-learning job server): JobService calls,
job.json parsing, and health and reflection probes."""
from tl_client._stubs import jobs_pb2, service_pb2, service_pb2_grpc
from tl_client.client import (DEFAULT_ADDRESS, TERMINAL_STATES, CallError, Client, make_channel,
                              state_name)
from tl_client.job_spec import JobSpecError, load_job_file, parse_job_spec, parse_job_spec_json
from tl_client.probes import Reflection, ReflectionError, health_check, message_classes

__all__ = [
    "CallError", "Client", "DEFAULT_ADDRESS", "JobSpecError", "Reflection", "ReflectionError",
    "TERMINAL_STATES", "health_check", "jobs_pb2", "load_job_file", "make_channel",
    "message_classes", "parse_job_spec", "parse_job_spec_json", "service_pb2",
    "service_pb2_grpc", "state_name",
]
