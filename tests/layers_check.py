"""Which part of tl may include which: every quoted #include of every C++
file under the repository is held to the table below (docs/ARCHITECTURE.md
explains the parts). Exits 1 naming each include that crosses a layer.

    layers_check.py --root .          # the check
    layers_check.py --root . --self-test
"""

import argparse
import os
import re
import sys

# Folder prefix -> include prefixes a file there must not use. The longest
# matching folder decides. Tests may reach across layers (a client test
# validating example job files with the server's rules), so the table holds
# for *_test.cc only where marked.
ENGINE_FORBIDDEN = ("server/", "client/", "tl/v1/", "absl/", "google/", "grpcpp/", "common/",
                    "prometheus/", "worker/job_runner", "worker/worker_agent",
                    "worker/worker_metrics", "worker/evaluation_proto", "worker/job_listener")
# Header-only helpers of common/ that use nothing but the standard library, which the engine
# shares with the server and the worker (one rule each for paths, CSV lists and ports; the
# one list of epoch figures, which the engine's EpochStats, the worker's proto and the
# scheduler's gauges all follow).
ENGINE_ALLOWED = ("common/path_inside.h", "common/csv_manifest.h", "common/image_files.h",
                  "common/free_port.h", "common/epoch_metrics.h",
                  "common/testing/temp_dir.h")
SERVER_OUTSIDE = ("worker/", "client/")
RULES = [
    # (folder, forbidden include prefixes, applies to tests too)
    ("worker/engine/", ENGINE_FORBIDDEN, True),
    ("server/record/", SERVER_OUTSIDE + ("server/core/", "server/api/", "server/store/",
                                        "server/spec/", "server/metrics/", "server/sweep/"), True),
    ("server/store/", SERVER_OUTSIDE + ("server/core/", "server/api/", "server/spec/",
                                       "server/metrics/", "server/sweep/"), True),
    ("server/spec/", SERVER_OUTSIDE + ("server/core/", "server/api/", "server/store/",
                                      "server/metrics/", "server/sweep/"), True),
    ("server/metrics/", SERVER_OUTSIDE + ("server/core/", "server/api/", "server/store/",
                                         "server/spec/", "server/sweep/"), True),
    # Sweeps as pure functions: the spec table, no state of the scheduler's.
    ("server/sweep/", SERVER_OUTSIDE + ("server/core/", "server/api/", "server/store/",
                                       "server/metrics/", "server/record/"), True),
    ("server/core/", SERVER_OUTSIDE + ("server/api/",), True),
    ("server/", SERVER_OUTSIDE, True),
    ("common/", ("server/", "worker/", "client/"), True),
    ("worker/", ("server/", "client/"), True),
    ("client/tlpredict.cc", ("server/",), False),
    ("client/", ("server/", "worker/"), False),
]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
SOURCE_SUFFIXES = (".cc", ".h")
# Top-level folders that hold no source of tl's own: build trees (every
# /build*/ that .gitignore ignores), runs, bundles.
SKIPPED_FOLDERS = (".git", ".gpu-deps", ".whl", ".gl", "demo-run", "results-run",
                   "bench-results", "study-run")


def rule_for(path):
    """The most specific rule whose folder holds `path` (relative, '/'-separated)."""
    matches = [rule for rule in RULES if path.startswith(rule[0])]
    return max(matches, key=lambda rule: len(rule[0])) if matches else None


def violations(path, text):
    rule = rule_for(path)
    if rule is None:
        return []
    folder, forbidden, for_tests = rule
    if path.endswith("_test.cc") and not for_tests:
        return []
    found = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        match = INCLUDE.match(line)
        if not match:
            continue
        included = match.group(1)
        if folder == "worker/engine/" and included in ENGINE_ALLOWED:
            continue
        for prefix in forbidden:
            if included.startswith(prefix):
                found.append(f"{path}:{line_number}: includes {included}, but {folder} may not "
                             f"use {prefix}")
                break
    return found


def sources(root):
    for directory, folders, files in os.walk(root):
        relative_directory = os.path.relpath(directory, root)
        if relative_directory == ".":
            folders[:] = [f for f in folders
                          if f not in SKIPPED_FOLDERS and not f.startswith("build")]
        for name in files:
            if name.endswith(SOURCE_SUFFIXES):
                path = os.path.normpath(os.path.join(relative_directory, name)).replace(os.sep, "/")
                yield path, os.path.join(directory, name)


def check(root):
    problems = []
    count = 0
    for path, full in sources(root):
        count += 1
        with open(full, encoding="utf-8", errors="replace") as file:
            problems += violations(path, file.read())
    return count, problems


def self_test():
    """The check must be able to fail: crossings it has to catch, and uses it has to allow."""
    must_fail = [
        ("worker/engine/train/trainer.cc", '#include "server/core/scheduler.h"'),
        ("worker/engine/trainer.cc", '#include "tl/v1/jobs.pb.h"'),
        ("worker/engine/data/x.h", '#include "absl/status/status.h"'),
        ("worker/engine/data/x.cc", '#include "common/log.h"'),
        ("server/core/scheduler.cc", '#include "server/api/auth.h"'),
        ("server/store/job_store.cc", '#include "server/core/scheduler.h"'),
        ("server/spec/spec_validation.cc", '#include "server/store/job_store.h"'),
        ("server/sweep/sweep_states.cc", '#include "server/core/scheduler.h"'),
        ("server/spec/spec_fields.cc", '#include "server/sweep/search_space.h"'),
        ("server/record/job_view.cc", '#include "server/store/job_store.h"'),
        ("common/log.cc", '#include "server/core/principal.h"'),
        ("worker/job_runner.cc", '#include "server/spec/caller_text.h"'),
        ("client/tlctl.cc", '#include "worker/engine/predictor.h"'),
    ]
    must_pass = [
        ("server/core/scheduler.cc", '#include "server/store/job_store.h"'),
        ("server/core/scheduler.cc", '#include "server/sweep/sweep_states.h"'),
        ("server/sweep/search_space.cc", '#include "server/spec/spec_fields.h"'),
        ("server/store/sqlite_rows.h", '#include "server/record/job_record.pb.h"'),
        ("server/api/grpc_services.cc", '#include "server/core/scheduler.h"'),
        ("server/main.cc", '#include "server/api/grpc_services.h"'),
        ("worker/job_runner.cc", '#include "worker/engine/image_job.h"'),
        ("client/tlpredict.cc", '#include "worker/engine/predictor.h"'),
        ("client/examples_test.cc", '#include "server/spec/spec_validation.h"'),
        ("worker/engine/train/trainer.cc", '#include "train/early_stopping.h"'),
        ("worker/engine/data/csv_dataset.cc", '#include "common/csv_manifest.h"'),
    ]
    failures = []
    for path, line in must_fail:
        if not violations(path, line):
            failures.append(f"not caught: {path}: {line}")
    for path, line in must_pass:
        if violations(path, line):
            failures.append(f"refused: {path}: {line}")
    for failure in failures:
        print(failure)
    print(f"self-test: {len(must_fail)} crossings caught, {len(must_pass)} uses allowed"
          if not failures else f"self-test: {len(failures)} wrong")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--self-test", action="store_true")
    arguments = parser.parse_args()
    if arguments.self_test:
        return self_test()
    count, problems = check(arguments.root)
    for problem in problems:
        print(problem)
    print(f"{count} files checked, {len(problems)} includes cross a layer")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
