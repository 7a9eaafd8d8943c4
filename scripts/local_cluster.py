"""tlserver (with generated bearer tokens) and one tlworker on 127.0.0.1, for
the scripts and benchmarks that run real jobs: scripts/results.py,
scripts/recipe_study.py, scripts/gpu_worker_check.py, bench/sweep_features.py,
bench/slots_bench.py; and the photos and backbones they train on.

The run folder holds data/ (the data root), artifacts/, tl.db and the logs.
"""
import concurrent.futures
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time


REPO = pathlib.Path(__file__).resolve().parent.parent


def import_client(bin_dir: pathlib.Path):
    """Makes tl_client importable: the package from the repository, its
    stubs from the build folder."""
    sys.path[:0] = [str(REPO / "client" / "python"), str(bin_dir / "client" / "python" / "gen")]


def generated_photos(folder: pathlib.Path, classes: int, per_class: int, processes: int = 1):
    """bench/make_photos.py's JPEGs in `folder`, made once: a marker beside it says the folder
    is whole, so an interrupted run's is made again. With `processes` above 1 they are made in
    as many chunks at once, each with its own seed, and gathered into one folder per class."""
    complete = folder.parent / (folder.name + ".complete")
    if complete.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    chunks = max(1, min(processes, per_class))

    def make(out: pathlib.Path, count: int, seed: int):
        subprocess.run([sys.executable, str(REPO / "bench" / "make_photos.py"), "--out",
                        str(out), "--classes", str(classes), "--per-class", str(count),
                        "--seed", str(seed)], check=True)

    if chunks == 1:
        make(folder, per_class, 0)
    else:
        parts = folder.parent / (folder.name + ".parts")
        shutil.rmtree(parts, ignore_errors=True)
        with concurrent.futures.ThreadPoolExecutor(chunks) as pool:
            list(pool.map(lambda chunk: make(parts / str(chunk), per_class // chunks +
                                             (1 if chunk < per_class % chunks else 0), chunk),
                          range(chunks)))
        for chunk in range(chunks):
            for class_dir in sorted((parts / str(chunk)).iterdir()):
                target = folder / class_dir.name
                target.mkdir(parents=True, exist_ok=True)
                for photo in class_dir.iterdir():
                    photo.rename(target / f"{chunk}-{photo.name}")
        shutil.rmtree(parts)
    complete.touch()


def exported_backbone(path: pathlib.Path, arch: str = "resnet18", input_size: int = 0):
    """An ImageNet-shaped backbone of torchvision's `arch` at `path` (its manifest beside it),
    made once; `input_size` (0: the architecture's own) is the side its manifest asks for."""
    if not path.exists():
        size = ["--input-size", str(input_size)] if input_size else []
        subprocess.run([sys.executable, str(REPO / "tools" / "export_backbone.py"), "--arch",
                        arch, *size, "--out", str(path)], check=True, stdout=subprocess.DEVNULL)


class LocalCluster:
    def __init__(self, run_dir: pathlib.Path, bin_dir: pathlib.Path, worker_flags=()):
        self.processes = []
        self.logs = []
        self.run_dir = run_dir
        self.bin_dir = bin_dir
        user_token, worker_token = os.urandom(16).hex(), os.urandom(16).hex()
        old = os.umask(0o077)
        try:
            (run_dir / "tokens").write_text(f"{user_token} {os.environ.get('USER', 'tl')} user\n"
                                            f"{worker_token} local-worker worker\n")
            (run_dir / "worker.token").write_text(worker_token + "\n")
        finally:
            os.umask(old)
        self.token = user_token
        server_log = run_dir / "server.log"
        self.server_log_start = server_log.stat().st_size if server_log.exists() else 0
        ready = run_dir / "ready"
        if ready.exists():
            ready.unlink()
        self.processes.append(subprocess.Popen(
            [str(bin_dir / "server" / "tlserver"), "--db", "tl.db", "--listen", "127.0.0.1:0",
             "--metrics_listen", "127.0.0.1:0", "--data_root", "data", "--artifact_root",
             "artifacts", "--ready_file", "ready", "--tokens_file", "tokens"],
            cwd=run_dir, stdout=self._log(run_dir / "server.log"), stderr=subprocess.STDOUT))
        try:
            for _ in range(300):
                if ready.exists() and ready.read_text().strip():
                    break
                if self.processes[0].poll() is not None:
                    raise SystemExit(f"tlserver did not start; see {run_dir / 'server.log'}")
                time.sleep(0.1)
            else:
                raise SystemExit(f"tlserver wrote no ready file; see {run_dir / 'server.log'}")
            self.address = "127.0.0.1:" + ready.read_text().split("grpc=")[1].split()[0]
            self.worker = self.start_worker(worker_flags)
        except BaseException:
            self.stop()
            raise

    def start_worker(self, worker_flags=()):
        """A tlworker (another one after a kill, say) logging to worker.log; its process."""
        process = subprocess.Popen(
            [str(self.bin_dir / "worker" / "tlworker"), "--data_root", "data", "--artifact_root",
             "artifacts", "--server", self.address, "--worker_id", "local-worker",
             "--token_file", "worker.token", *worker_flags],
            cwd=self.run_dir, stdout=self._log(self.run_dir / "worker.log"),
            stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def sessions_logged(self) -> int:
        """Worker sessions tlserver has logged since it started (the log is appended to
        across runs in one folder: this server's lines only)."""
        with open(self.logs[0].name, errors="replace") as text:
            text.seek(self.server_log_start)
            return text.read().count(" connected (session")

    def wait_for_worker_sessions(self, count: int, limit_s: float = 60):
        """Until tlserver has logged `count` worker sessions since it started (a worker with
        slots opens one per slot)."""
        log = pathlib.Path(self.logs[0].name)
        deadline = time.time() + limit_s
        while time.time() < deadline:
            if self.sessions_logged() >= count:
                return
            time.sleep(0.2)
        raise SystemExit(f"fewer than {count} worker sessions within {limit_s} s; see {log}")

    def _log(self, path):
        self.logs.append(open(path, "a"))
        return self.logs[-1]

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def wait_for_job(client, job_id: str, limit_s: float = 3600):
    """The job once it has ended (SUCCEEDED, FAILED, CANCELLED or, a sweep's
    trial, STOPPED_EARLY)."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        job = client.get(job_id)
        if job.state in (4, 5, 6, 8):
            return job
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not end within {limit_s} s")


def wait_for_sweep(client, sweep_id: str, limit_s: float = 4 * 3600):
    """The sweep once it has ended (SUCCEEDED, FAILED or CANCELLED)."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        sweep = client.get_sweep(sweep_id)
        if sweep.state in (2, 3, 4):
            return sweep
        time.sleep(1)
    raise SystemExit(f"sweep {sweep_id} did not end within {limit_s} s")


def seconds(stamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
