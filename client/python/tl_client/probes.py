"""Health checking and server reflection against any tl server, without the
grpcio-health-checking and grpcio-reflection packages (Debian has neither).

The messages of grpc.health.v1 and grpc.reflection.v1alpha are declared
below, only the fields used here, and built in a private descriptor pool so
that they never clash with those packages if they are installed too.
"""
from typing import Dict, Iterable, List, Optional, Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_HEALTH_PROTO = """
name: "tl_client/probes/health.proto"
package: "grpc.health.v1"
syntax: "proto3"
message_type {
  name: "HealthCheckRequest"
  field { name: "service" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "HealthCheckResponse"
  field { name: "status" number: 1 label: LABEL_OPTIONAL type: TYPE_ENUM
          type_name: ".grpc.health.v1.HealthCheckResponse.ServingStatus" }
  enum_type {
    name: "ServingStatus"
    value { name: "UNKNOWN" number: 0 }
    value { name: "SERVING" number: 1 }
    value { name: "NOT_SERVING" number: 2 }
    value { name: "SERVICE_UNKNOWN" number: 3 }
  }
}
"""

_REFLECTION_PROTO = """
name: "tl_client/probes/reflection.proto"
package: "grpc.reflection.v1alpha"
syntax: "proto3"
message_type {
  name: "ServerReflectionRequest"
  field { name: "host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "file_by_filename" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING
          oneof_index: 0 }
  field { name: "file_containing_symbol" number: 4 label: LABEL_OPTIONAL type: TYPE_STRING
          oneof_index: 0 }
  field { name: "list_services" number: 7 label: LABEL_OPTIONAL type: TYPE_STRING
          oneof_index: 0 }
  oneof_decl { name: "message_request" }
}
message_type {
  name: "FileDescriptorResponse"
  field { name: "file_descriptor_proto" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "ServiceResponse"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "ListServiceResponse"
  field { name: "service" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1alpha.ServiceResponse" }
}
message_type {
  name: "ErrorResponse"
  field { name: "error_code" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
  field { name: "error_message" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "ServerReflectionResponse"
  field { name: "valid_host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "file_descriptor_response" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1alpha.FileDescriptorResponse" oneof_index: 0 }
  field { name: "list_services_response" number: 6 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1alpha.ListServiceResponse" oneof_index: 0 }
  field { name: "error_response" number: 7 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1alpha.ErrorResponse" oneof_index: 0 }
  oneof_decl { name: "message_response" }
}
"""


def message_classes(files: Iterable[descriptor_pb2.FileDescriptorProto],
                    pool: Optional[descriptor_pool.DescriptorPool] = None) -> Dict[str, type]:
    """Message classes by full name for every message of `files`, added to
    `pool` (a new one by default) in the order given: dependencies first."""
    pool = pool or descriptor_pool.DescriptorPool()
    classes = {}
    for file in files:
        pool.AddSerializedFile(file.SerializeToString())
        file_descriptor = pool.FindFileByName(file.name)
        for message in file_descriptor.message_types_by_name.values():
            classes[message.full_name] = _message_class(message)
    return classes


def _message_class(descriptor) -> type:
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


def _parse_file(text: str) -> descriptor_pb2.FileDescriptorProto:
    return text_format.Parse(text, descriptor_pb2.FileDescriptorProto())


_PROBE_CLASSES = message_classes([_parse_file(_HEALTH_PROTO), _parse_file(_REFLECTION_PROTO)])
_HealthCheckRequest = _PROBE_CLASSES["grpc.health.v1.HealthCheckRequest"]
_HealthCheckResponse = _PROBE_CLASSES["grpc.health.v1.HealthCheckResponse"]
_ReflectionRequest = _PROBE_CLASSES["grpc.reflection.v1alpha.ServerReflectionRequest"]
_ReflectionResponse = _PROBE_CLASSES["grpc.reflection.v1alpha.ServerReflectionResponse"]


def health_check(channel: grpc.Channel, service: str = "", timeout: float = 10.0) -> str:
    """grpc.health.v1.Health/Check: "SERVING", "NOT_SERVING", ... for
    `service` ("" is the server as a whole)."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=_HealthCheckRequest.SerializeToString,
                                response_deserializer=_HealthCheckResponse.FromString)
    response = check(_HealthCheckRequest(service=service), timeout=timeout)
    return _HealthCheckResponse.ServingStatus.Name(response.status)


class ReflectionError(Exception):
    pass


class Reflection:
    """The server's own description of its API (grpc.reflection.v1alpha)."""

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0):
        self._call = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=_ReflectionRequest.SerializeToString,
            response_deserializer=_ReflectionResponse.FromString)
        self._timeout = timeout

    def _ask(self, **request) -> "_ReflectionResponse":
        responses = list(self._call(iter([_ReflectionRequest(**request)]), timeout=self._timeout))
        if len(responses) != 1:
            raise ReflectionError(f"expected one reflection answer, got {len(responses)}")
        response = responses[0]
        if response.WhichOneof("message_response") == "error_response":
            raise ReflectionError(f"reflection of {request}: {response.error_response.error_message}")
        return response

    def services(self) -> List[str]:
        response = self._ask(list_services="")
        return [service.name for service in response.list_services_response.service]

    def files_containing(self, symbol: str) -> List[descriptor_pb2.FileDescriptorProto]:
        """The file that declares `symbol` and every file it imports,
        dependencies first, ready for message_classes()."""
        response = self._ask(file_containing_symbol=symbol)
        files = {}
        for serialized in response.file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            files[file.name] = file
        # Servers usually send the imports along; ask for any they left out.
        while True:
            missing = sorted({dependency for file in files.values()
                              for dependency in file.dependency if dependency not in files})
            if not missing:
                return _dependencies_first(files)
            for name in missing:
                answer = self._ask(file_by_filename=name).file_descriptor_response
                for serialized in answer.file_descriptor_proto:
                    file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
                    files.setdefault(file.name, file)
                if name not in files:
                    raise ReflectionError(f"the server did not send {name}")


def _dependencies_first(files: Dict[str, descriptor_pb2.FileDescriptorProto]
                        ) -> List[descriptor_pb2.FileDescriptorProto]:
    ordered: List[descriptor_pb2.FileDescriptorProto] = []
    placed = set()

    def place(name: str, trail: Sequence[str]) -> None:
        if name in placed:
            return
        if name in trail:
            raise ReflectionError(f"import cycle through {name}")
        for dependency in files[name].dependency:
            place(dependency, [*trail, name])
        placed.add(name)
        ordered.append(files[name])

    for name in files:
        place(name, [])
    return ordered
