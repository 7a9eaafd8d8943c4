"""JobSpec and SweepSpec from a dict, JSON text or a file: the proto3 JSON
forms, exactly as `tlctl submit` and `tlctl sweep submit` read them
(lowerCamelCase or snake_case field names, enums by name, unknown fields
rejected). Errors name where the spec came from and the field at fault
("SweepSpec.space[1].scale")."""
import json
from typing import Any, Mapping, Type, Union

from google.protobuf import json_format
from google.protobuf.message import Message

from tl_client._stubs import jobs_pb2, sweeps_pb2

JobSpecLike = Union["jobs_pb2.JobSpec", Mapping[str, Any]]
SweepSpecLike = Union["sweeps_pb2.SweepSpec", Mapping[str, Any]]


class JobSpecError(ValueError):
    """A job spec that does not parse; the message names where it came from."""


class SweepSpecError(ValueError):
    """A sweep spec that does not parse; the message names where it came
    from and the field."""


def _parse(spec, message_class: Type[Message], error_class, origin: str):
    if isinstance(spec, message_class):
        return spec
    if not isinstance(spec, Mapping):
        raise error_class(f"{origin}: expected a {message_class.DESCRIPTOR.name} or a dict, "
                          f"got {type(spec).__name__}")
    try:
        return json_format.ParseDict(dict(spec), message_class())
    except json_format.ParseError as error:
        raise error_class(f"{origin}: {error}") from error


def _parse_json(text: str, message_class: Type[Message], error_class, origin: str):
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise error_class(f"{origin}: not JSON: {error}") from error
    return _parse(document, message_class, error_class, origin)


def _load(path: str, message_class: Type[Message], error_class):
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise error_class(f"{path}: {error.strerror}") from error
    return _parse_json(text, message_class, error_class, path)


def parse_job_spec(spec: JobSpecLike, origin: str = "job spec") -> "jobs_pb2.JobSpec":
    return _parse(spec, jobs_pb2.JobSpec, JobSpecError, origin)


def parse_job_spec_json(text: str, origin: str = "job spec") -> "jobs_pb2.JobSpec":
    return _parse_json(text, jobs_pb2.JobSpec, JobSpecError, origin)


def load_job_file(path: str) -> "jobs_pb2.JobSpec":
    return _load(path, jobs_pb2.JobSpec, JobSpecError)


def parse_sweep_spec(spec: SweepSpecLike, origin: str = "sweep spec") -> "sweeps_pb2.SweepSpec":
    return _parse(spec, sweeps_pb2.SweepSpec, SweepSpecError, origin)


def parse_sweep_spec_json(text: str, origin: str = "sweep spec") -> "sweeps_pb2.SweepSpec":
    return _parse_json(text, sweeps_pb2.SweepSpec, SweepSpecError, origin)


def load_sweep_file(path: str) -> "sweeps_pb2.SweepSpec":
    return _load(path, sweeps_pb2.SweepSpec, SweepSpecError)
