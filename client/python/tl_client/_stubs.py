"""The generated tl.v1 modules, with an error that says how to get them.

They are generated at build time (client/python/CMakeLists.txt) into
<build>/client/python/gen, which must be on sys.path beside this package.
"""
try:
    from tl.v1 import jobs_pb2, service_pb2, service_pb2_grpc, sweeps_pb2
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tl_client needs the generated tl.v1 stubs: build them with "
        "`ninja -C build tl_python_stubs` and put build/client/python/gen on "
        f"PYTHONPATH ({error})") from error

__all__ = ["jobs_pb2", "service_pb2", "service_pb2_grpc", "sweeps_pb2"]
