"""JobSpec from a dict, JSON text or a job.json file: the proto3 JSON form,
exactly as `tlctl submit` reads it (lowerCamelCase or snake_case field
names, enums by name, unknown fields rejected)."""
import json
from typing import Any, Mapping, Union

from google.protobuf import json_format

from tl_client._stubs import jobs_pb2

JobSpecLike = Union["jobs_pb2.JobSpec", Mapping[str, Any]]


class JobSpecError(ValueError):
    """A job spec that does not parse; the message names where it came from."""


def parse_job_spec(spec: JobSpecLike, origin: str = "job spec") -> "jobs_pb2.JobSpec":
    if isinstance(spec, jobs_pb2.JobSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise JobSpecError(f"{origin}: expected a JobSpec or a dict, got {type(spec).__name__}")
    try:
        return json_format.ParseDict(dict(spec), jobs_pb2.JobSpec())
    except json_format.ParseError as error:
        raise JobSpecError(f"{origin}: {error}") from error


def parse_job_spec_json(text: str, origin: str = "job spec") -> "jobs_pb2.JobSpec":
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise JobSpecError(f"{origin}: not JSON: {error}") from error
    return parse_job_spec(document, origin)


def load_job_file(path: str) -> "jobs_pb2.JobSpec":
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise JobSpecError(f"{path}: {error.strerror}") from error
    return parse_job_spec_json(text, path)
