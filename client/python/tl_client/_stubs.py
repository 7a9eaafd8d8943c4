"""The generated tl.v1 modules, with an error that says how to get them.

An installed package (pip install client/python, or its wheel) carries them
as tl_client._proto.tl.v1. In the build tree they are generated into
<build>/client/python/gen (client/python/CMakeLists.txt), which must then
be on sys.path beside this package.
"""
try:
    from tl_client._proto.tl.v1 import jobs_pb2, service_pb2, service_pb2_grpc, sweeps_pb2
except ModuleNotFoundError as absent:
    # Only a package without stubs falls back; stubs that are there and fail
    # to import (a protobuf runtime too old for them) say so.
    if not (absent.name or "").startswith("tl_client._proto"):
        raise
    try:
        from tl.v1 import jobs_pb2, service_pb2, service_pb2_grpc, sweeps_pb2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "tl_client needs the generated tl.v1 stubs: install the package "
            "(`pip install client/python`), or build them with `ninja -C build "
            f"tl_python_stubs` and put build/client/python/gen on PYTHONPATH ({error})") from error

__all__ = ["jobs_pb2", "service_pb2", "service_pb2_grpc", "sweeps_pb2"]
