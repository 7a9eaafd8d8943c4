"""Builds the tl_client package with its tl.v1 stubs generated from the
repository's proto/ folder (pyproject.toml holds the metadata).

The stubs go into tl_client/_proto/tl/v1 inside the built package, their
imports of each other (and the module names their classes carry) rewritten
to that place, so the wheel needs nothing on PYTHONPATH and imports no
package called `tl`. The protobuf descriptors keep their file names
(tl/v1/*.proto), so one process loads either this copy or the build tree's.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = ["tl/v1/jobs.proto", "tl/v1/sweeps.proto", "tl/v1/service.proto"]


def proto_root() -> pathlib.Path:
    """proto/ of the repository this folder sits in, or $TL_PROTO_DIR."""
    for candidate in (os.environ.get("TL_PROTO_DIR"), HERE.parent.parent / "proto"):
        if candidate and (pathlib.Path(candidate) / PROTOS[0]).is_file():
            return pathlib.Path(candidate)
    raise SystemExit(f"tl-client: no {PROTOS[0]} under {HERE.parent.parent / 'proto'}; "
                     "build from a clone of the repository or set TL_PROTO_DIR")


def recent_grpc_tools() -> bool:
    """grpcio-tools 1.51 or later (pyproject.toml's build requirement);
    older ones (Debian 12's python3-grpc-tools is 1.14) bundle a protoc
    whose output today's protobuf does not run."""
    try:
        from importlib.metadata import version
        major, minor = (int(part) for part in version("grpcio-tools").split(".")[:2])
    except Exception:
        return False
    return (major, minor) >= (1, 51)


def generate(out: pathlib.Path):
    root = proto_root()
    out.mkdir(parents=True, exist_ok=True)
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if recent_grpc_tools():
        command = [sys.executable, "-m", "grpc_tools.protoc", f"--grpc_python_out={out}"]
    elif protoc and plugin:
        command = [protoc, f"--plugin=protoc-gen-grpc={plugin}", f"--grpc_out={out}"]
    else:
        raise SystemExit("tl-client: generating the stubs needs grpcio-tools 1.51 or later, or "
                         "protoc and grpc_python_plugin (Debian: protobuf-compiler, "
                         "protobuf-compiler-grpc)")
    subprocess.run([*command, f"--proto_path={root}", f"--python_out={out}", *PROTOS],
                   check=True)
    # `from tl.v1 import jobs_pb2 as ...` -> the package's own copy.
    for path in (out / "tl" / "v1").glob("*.py"):
        text = path.read_text()
        text = re.sub(r"^from tl\.v1 import ", "from tl_client._proto.tl.v1 import ", text,
                      flags=re.MULTILINE)
        text = re.sub(r"^import tl\.v1\.", "import tl_client._proto.tl.v1.", text,
                      flags=re.MULTILINE)
        # The module name the generated classes record ('tl.v1.jobs_pb2').
        text = re.sub(r"(['\"])tl\.v1\.(\w+_pb2)\1", r"\1tl_client._proto.tl.v1.\2\1", text)
        path.write_text(text)
    for package in (out, out / "tl", out / "tl" / "v1"):
        (package / "__init__.py").touch()


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        generate(pathlib.Path(self.build_lib) / "tl_client" / "_proto")


setup(cmdclass={"build_py": BuildWithStubs})
