"""A tlserver of one's own for tests and experiments: started on free
loopback ports with a data root holding a tiny image dataset and a stand-in
backbone, waited for by its ready file, stopped with SIGTERM.

    with LocalServer(tlserver_binary, directory) as server:
        Client(server.address).submit(tiny_spec())
"""
import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib

DEADLINE_SECONDS = 20


def wait_for(condition, what: str, timeout: float = DEADLINE_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    if not condition():
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def write_png(path: str, width: int, height: int, rgb) -> None:
    """A solid-colour 8-bit RGB PNG: signature, IHDR, one IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        file.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        file.write(chunk(b"IDAT", zlib.compress(row * height)))
        file.write(chunk(b"IEND", b""))


def write_data_root(root: str) -> None:
    """Two class folders of tiny PNGs, and a backbone with its manifest. No
    worker runs, so the backbone is never loaded: the scheduler only checks
    that the file and a tl.backbone.v1 manifest exist."""
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        folder = os.path.join(root, "images", name)
        os.makedirs(folder)
        for i in range(3):
            write_png(os.path.join(folder, f"{i}.png"), 8, 8, [c - 10 * i for c in colour])
    os.makedirs(os.path.join(root, "backbones"))
    with open(os.path.join(root, "backbones", "tiny.pt"), "wb") as file:
        file.write(b"not loaded without a worker")
    with open(os.path.join(root, "backbones", "tiny.json"), "w") as file:
        json.dump({"format": "tl.backbone.v1"}, file)


def tiny_spec(**training) -> dict:
    return {
        "name": "python-client-test",
        "backbone": {"path": "backbones/tiny.pt"},
        "dataset": {"trainDir": "images", "valFraction": 0.34},
        "training": {"strategy": "FULL", "epochs": 2, "batchSize": 2, **training},
    }


class LocalServer:
    def __init__(self, tlserver: str, directory: str, port: int = 0):
        """`port` 0: a free one. A server started again in the same `directory` (on the port
        the first one had) finds its database and data root as they were."""
        self.directory = directory
        data_root = os.path.join(directory, "data")
        if not os.path.exists(data_root):
            write_data_root(data_root)
        ready = os.path.join(directory, "ready")
        if os.path.exists(ready):
            os.remove(ready)
        self.log_path = os.path.join(directory, "tlserver.log")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [tlserver, f"--listen=127.0.0.1:{port}", "--metrics_listen=127.0.0.1:0",
                 "--db=" + os.path.join(directory, "tl.db"), "--data_root=" + data_root,
                 "--artifact_root=" + os.path.join(directory, "artifacts"),
                 "--ready_file=" + ready],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(ready) or self.process.poll() is not None,
                 "tlserver's ready file")
        if self.process.poll() is not None:
            raise AssertionError(f"tlserver exited at start:\n{self.log()}")
        with open(ready) as file:
            ports = re.fullmatch(r"grpc=(\d+) metrics=(\d+)\s*", file.read())
        assert ports, "ready file not in the form 'grpc=PORT metrics=PORT'"
        self.address = f"127.0.0.1:{ports.group(1)}"
        self.metrics_url = f"http://127.0.0.1:{ports.group(2)}/metrics"

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as file:
            return file.read()

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("tlserver did not stop on SIGTERM")


def tlserver_from_argv() -> str:
    """The --tlserver PATH argument of a test script, taken out of sys.argv
    so that unittest.main() sees only its own arguments."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tlserver", required=True, help="the tlserver binary to start")
    args, rest = parser.parse_known_args()
    sys.argv[1:] = rest
    return args.tlserver
