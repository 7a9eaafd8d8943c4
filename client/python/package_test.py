"""The Python client as a package: builds its wheel from a copy of the
repository's client/python and proto/ (pip, no index, no build isolation:
Debian's setuptools, protoc and grpc_python_plugin), installs it into a
fresh virtual environment (with the system's grpcio and protobuf), and runs
the example script with that environment's Python against a real tlserver
on 127.0.0.1, nothing on PYTHONPATH.

    package_test.py --tlserver build/server/tlserver
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The test's own helpers come from the source tree; the package under test
# is imported only by the virtual environment's Python.
sys.path.insert(0, str(HERE))
from tl_client.testing import DEADLINE_SECONDS, LocalServer, tiny_spec, tlserver_from_argv  # noqa: E402

TLSERVER = tlserver_from_argv()
BUILD_SECONDS = 300


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_NO_INDEX"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, env=clean_env(), **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.TemporaryDirectory(prefix="tl-python-package-")
        root = pathlib.Path(cls.directory.name)
        # A copy, so that the build's egg-info and build/ folders stay out of the tree.
        source = root / "source"
        shutil.copytree(HERE, source / "client" / "python",
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        shutil.copytree(REPO / "proto", source / "proto")
        wheels = root / "wheels"
        run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
             "--wheel-dir", str(wheels), str(source / "client" / "python")],
            timeout=BUILD_SECONDS)
        cls.wheels = sorted(wheels.glob("tl_client-*.whl"))
        venv = root / "venv"
        run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
            timeout=BUILD_SECONDS)
        cls.python = venv / "bin" / "python"
        if cls.wheels:
            run([str(cls.python), "-m", "pip", "install", "--no-deps", str(cls.wheels[0])],
                timeout=BUILD_SECONDS)
        cls.server = LocalServer(TLSERVER, str(root / "server"))
        cls.outside = root / "elsewhere"  # a working folder with nothing of the repository
        cls.outside.mkdir()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.directory.cleanup()

    def test_the_wheel_carries_the_package_and_its_stubs(self):
        self.assertEqual(len(self.wheels), 1, self.wheels)
        names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(self.wheels[0])],
                               capture_output=True, text=True, check=True).stdout
        for member in ("tl_client/client.py", "tl_client/_proto/tl/v1/jobs_pb2.py",
                       "tl_client/_proto/tl/v1/service_pb2_grpc.py",
                       "tl_client/_proto/tl/v1/sweeps_pb2.py"):
            self.assertIn(member, names)

    def test_import_needs_nothing_on_the_path(self):
        result = run([str(self.python), "-c",
                      "import tl_client; print(tl_client.__file__); "
                      "print(tl_client.service_pb2_grpc.__name__); "
                      "print(tl_client.jobs_pb2.Job.State.Name(tl_client.jobs_pb2.Job.QUEUED)); "
                      "print(tl_client.jobs_pb2.Job.__module__)"],
                     cwd=self.outside, timeout=DEADLINE_SECONDS)
        location, stubs, state, module = result.stdout.split()
        self.assertTrue(location.startswith(str(self.python.parent.parent)), location)
        self.assertEqual(stubs, "tl_client._proto.tl.v1.service_pb2_grpc")
        self.assertEqual(state, "QUEUED")
        # Messages name the module they live in, so that pickle finds them.
        self.assertEqual(module, "tl_client._proto.tl.v1.jobs_pb2")

    def test_the_example_runs_against_a_real_server(self):
        job_file = self.outside / "job.json"
        job_file.write_text(json.dumps(tiny_spec()))
        result = subprocess.run(
            [str(self.python), str(HERE / "examples" / "submit_watch_cancel.py"), str(job_file),
             "--server", self.server.address, "--owner", "packaged", "--cancel-after", "0"],
            capture_output=True, text=True, timeout=DEADLINE_SECONDS, cwd=self.outside,
            env=dict(clean_env(), TL_TOKEN=""))
        self.assertEqual(result.returncode, 4, result.stdout + result.stderr)
        job_id = re.search(r"submitted (\S+)", result.stdout).group(1)
        self.assertIn(f"job {job_id}: CANCELLED", result.stdout)


if __name__ == "__main__":
    unittest.main()
