"""Static checks of the deployment files, for a machine without Docker or
Kubernetes:

- deploy/docker-compose.yml passes `docker-compose config` (with and without
  the gpu profile), and every build context, Dockerfile and bind-mounted file
  it names exists;
- every COPY/ADD source of the Dockerfiles under docker/ exists in the build
  context and is not excluded by .dockerignore, `--from` names a stage, and
  the last stage runs as a non-root user; docker/Dockerfile's build stage
  installs every library package scripts/install-deps installs to build tl
  (an image that lacked Gloo's and OpenSSL's headers did not build);
- every PromQL expression of the Grafana dashboards uses only metrics listed
  in docs/METRICS.md (and parses, when promtool is installed), and names a
  provisioned datasource;
- Prometheus scrapes tlserver's metrics port and every worker service's
  (and its config passes promtool); Kubernetes worker pods carry scrape
  annotations naming the port their tlworker serves /metrics on;
- every /metrics reachable beyond loopback is secured: tlserver and tlworker
  get --metrics_tls_cert, --metrics_tls_key and --metrics_token_file from
  compose secrets made by deploy/make-secrets (Kubernetes: from mounted
  Secrets, scrape annotations with scheme https), and every Prometheus job
  scrapes over https with the same token file, trusting the same
  certificate for a name the certificate carries;
- tlserver in compose takes gRPC tokens from the tokens file
  deploy/make-secrets makes (its health check carries one), and every worker
  service connects with that script's worker token as a --worker_id the
  token allows; in Kubernetes likewise, from mounted Secrets that the
  script's printed kubectl commands make from those files;
- the Kubernetes manifests under deploy/k8s have the kinds and fields a
  deployment of tl needs (scheduler StatefulSet with a volume claim
  template, Service with scrape annotations, a GPU worker Deployment with an
  nvidia.com/gpu limit, a CPU one, ReadWriteMany claims for shared data).

    deploy_check.py [--root REPO]     exit status 1 and one line per problem
"""
import argparse
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Set, Tuple

import yaml

COMPOSE_FILE = "deploy/docker-compose.yml"
METRICS_DOC = "docs/METRICS.md"
SUFFIXES_BY_TYPE = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


# --- docs/METRICS.md --------------------------------------------------------

def documented_metrics(metrics_doc: str) -> Dict[str, Tuple[str, str, str]]:
    """name -> (type, labels cell, section) for every table row of the
    catalogue whose first cell is a `metric`."""
    metrics = {}
    section = ""
    row = re.compile(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(\w+)\s*\|([^|]*)\|")
    with open(metrics_doc, encoding="utf-8") as file:
        for line in file:
            if line.startswith("## "):
                section = line[3:].strip()
            match = row.match(line)
            if match:
                metrics[match.group(1)] = (match.group(2).lower(), match.group(3).strip(), section)
    return metrics


def scrapable_names(metrics: Dict[str, Tuple[str, str, str]]) -> Set[str]:
    """The names a query may use: each listed name, and for counters,
    histograms and summaries the suffixed series they are scraped as."""
    names = set()
    for name, (kind, _, _) in metrics.items():
        names.add(name)
        for suffix in SUFFIXES_BY_TYPE.get(kind, ()):
            if not name.endswith(suffix):
                names.add(name + suffix)
    return names


# --- PromQL -----------------------------------------------------------------

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "start", "end",
}


def promql_metric_names(expr: str) -> Set[str]:
    """The metric names an expression selects: identifiers outside label
    matchers, ranges, strings and grouping clauses that are not functions,
    aggregations or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " 1 ", text)  # dashboard variables
    names = set()
    for match in re.finditer(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        name = match.group(0)
        followed_by_call = re.match(r"\s*\(", text[match.end():])
        if followed_by_call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def template_query_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query:
    label_values(expr, label) and query_result(expr) hold one, label_values(label)
    and label_names() none."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    if match:
        return match.group(1)
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    if match:
        return match.group(1)
    if re.fullmatch(r"\s*(label_values\(\s*\w+\s*\)|label_names\(\s*\)|metrics\(.*\))\s*", query):
        return ""
    return query


def dashboard_queries(dashboard: dict) -> Iterator[Tuple[str, str, bool]]:
    """(where, expr, is_panel_target) for every query of a dashboard."""
    def panels(items):
        for panel in items or ():
            yield panel
            yield from panels(panel.get("panels"))

    for panel in panels(dashboard.get("panels")):
        for target in panel.get("targets") or ():
            if target.get("expr"):
                yield f'panel "{panel.get("title")}" query {target.get("refId")}', target["expr"], True
    for variable in (dashboard.get("templating") or {}).get("list") or ():
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            yield f'variable "{variable.get("name")}"', template_query_expr(query), False


def dashboard_datasource_uids(dashboard: dict) -> Iterator[Tuple[str, str]]:
    def walk(node, where):
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and isinstance(source.get("uid"), str):
                yield where, source["uid"]
            title = node.get("title")
            for key, value in node.items():
                yield from walk(value, f'panel "{title}"' if title else where)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, where)
    yield from walk(dashboard, "dashboard")


def substitute_variables(expr: str) -> str:
    """A dashboard expression as Prometheus would receive it."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{[^}]*\}|\$\w+", ".*", expr)


def promtool_syntax_errors(exprs: List[Tuple[str, str]]) -> List[str]:
    """Parses the expressions with `promtool check rules` (as recording
    rules); [] when promtool is not installed."""
    promtool = shutil.which("promtool")
    if not promtool or not exprs:
        return []
    def check(batch: List[Tuple[str, str]], directory: str) -> str:
        rules = [{"record": f"dashboard_check:expr_{index}", "expr": substitute_variables(expr)}
                 for index, (_, expr) in enumerate(batch)]
        path = os.path.join(directory, "rules.yml")
        with open(path, "w") as file:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, file)
        result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if result.returncode == 0:
            return ""
        detail = (result.stderr or result.stdout).strip().splitlines()
        return detail[-1] if detail else "promtool failed"

    with tempfile.TemporaryDirectory() as directory:
        if not check(exprs, directory):
            return []
        # One of them is wrong: find which, one at a time.
        errors = []
        for where, expr in exprs:
            problem = check([(where, expr)], directory)
            if problem:
                errors.append(f"{where}: PromQL does not parse: {expr!r}: {problem}")
        return errors or [f"promtool check rules failed on the dashboards' queries"]


# --- Grafana ----------------------------------------------------------------

def check_grafana(root: str, errors: List[str]) -> None:
    allowed = scrapable_names(documented_metrics(os.path.join(root, METRICS_DOC)))
    provisioned_uids = set()
    for path in glob.glob(os.path.join(root, "deploy/grafana/provisioning/datasources/*.y*ml")):
        with open(path) as file:
            for source in (yaml.safe_load(file) or {}).get("datasources") or ():
                if source.get("uid"):
                    provisioned_uids.add(source["uid"])
    if not provisioned_uids:
        errors.append("deploy/grafana/provisioning/datasources: no datasource with a uid")
    dashboards = sorted(glob.glob(os.path.join(root, "deploy/grafana/dashboards/*.json")))
    if not dashboards:
        errors.append("deploy/grafana/dashboards: no dashboard JSON")
    for path in dashboards:
        name = os.path.relpath(path, root)
        try:
            with open(path) as file:
                dashboard = json.load(file)
        except json.JSONDecodeError as error:
            errors.append(f"{name}: not JSON: {error}")
            continue
        panel_exprs = []
        queries = list(dashboard_queries(dashboard))
        if not queries:
            errors.append(f"{name}: no PromQL queries")
        for where, expr, is_panel_target in queries:
            if is_panel_target:
                panel_exprs.append((f"{name}: {where}", expr))
            for metric in sorted(promql_metric_names(expr) - allowed):
                errors.append(f"{name}: {where} uses {metric}, which {METRICS_DOC} does not list")
        for where, uid in dashboard_datasource_uids(dashboard):
            if uid not in provisioned_uids and not uid.startswith(("$", "-- ")):
                errors.append(f"{name}: {where} names datasource uid {uid!r}, which is not provisioned")
        errors.extend(promtool_syntax_errors(panel_exprs))


# --- Compose and Dockerfiles ------------------------------------------------

def compose_config(root: str, profiles: List[str], errors: List[str]) -> dict:
    compose = shutil.which("docker-compose")
    if compose is None:
        errors.append("docker-compose is not installed (Debian package docker-compose)")
        return {}
    command = [compose, "-f", os.path.join(root, COMPOSE_FILE)]
    for profile in profiles:
        command += ["--profile", profile]
    result = subprocess.run(command + ["config"], capture_output=True, text=True,
                            env=dict(os.environ, COMPOSE_PROJECT_NAME="tl-check"))
    label = " ".join(f"--profile {p}" for p in profiles) or "no profile"
    if result.returncode != 0:
        errors.append(f"{COMPOSE_FILE}: docker-compose config ({label}) failed: {result.stderr.strip()}")
        return {}
    return yaml.safe_load(result.stdout) or {}


def bind_sources(service: dict) -> Iterator[str]:
    for volume in service.get("volumes") or ():
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume["source"]
        elif isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith(("/", ".")):
                yield source


def check_compose(root: str, errors: List[str]) -> List[Tuple[str, str]]:
    """Checks the compose file; returns its (Dockerfile, context) pairs."""
    plain = compose_config(root, [], errors)
    with_gpu = compose_config(root, ["gpu"], errors)
    services = (with_gpu or plain).get("services") or {}
    if not services:
        return []
    dockerfiles = []
    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict):
            context = build.get("context", "")
            dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
            if not os.path.isdir(context):
                errors.append(f"{COMPOSE_FILE}: service {name}: build context {context} is not a folder")
            elif not os.path.isfile(dockerfile):
                errors.append(f"{COMPOSE_FILE}: service {name}: Dockerfile {dockerfile} does not exist")
            else:
                dockerfiles.append((dockerfile, context))
        for source in bind_sources(service):
            if not os.path.exists(source):
                errors.append(f"{COMPOSE_FILE}: service {name}: bind-mounted {source} does not exist")
        if "healthcheck" not in service and name == "tlserver":
            errors.append(f"{COMPOSE_FILE}: service tlserver has no healthcheck")
    for required in ("tlserver", "worker-cpu", "worker-gpu", "prometheus", "grafana"):
        if required not in services:
            errors.append(f"{COMPOSE_FILE}: no service {required}")
    gpu = services.get("worker-gpu") or {}
    if gpu and "gpu" not in (gpu.get("profiles") or ()):
        errors.append(f"{COMPOSE_FILE}: worker-gpu is not under the profile gpu")
    devices = (((gpu.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or ()
    if gpu and not any("gpu" in (d.get("capabilities") or ()) for d in devices):
        errors.append(f"{COMPOSE_FILE}: worker-gpu reserves no device with the gpu capability")
    check_metrics_port(root, services.get("tlserver") or {}, errors)
    check_worker_metrics_ports(root, services, errors)
    check_compose_metrics_security(root, with_gpu or plain, errors)
    check_compose_grpc_tokens(root, with_gpu or plain, errors)
    return dockerfiles


def metrics_listen_port(args: List[str]) -> str:
    """The port of a --metrics_listen=HOST:PORT argument; "" when there is
    none or it listens on loopback only (tlworker's default), where no
    Prometheus outside the container reaches it."""
    listen = [arg.split("=", 1)[1] for arg in args or () if arg.startswith("--metrics_listen=")]
    if not listen or listen[-1].rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"):
        return ""
    return listen[-1].rsplit(":", 1)[-1]


def check_worker_metrics_ports(root: str, services: dict, errors: List[str]) -> None:
    """Each worker service serves /metrics where deploy/prometheus.yml looks."""
    with open(os.path.join(root, "deploy/prometheus.yml")) as file:
        config = yaml.safe_load(file) or {}
    looked_up = {}  # service name -> port Prometheus scrapes it on
    for job in config.get("scrape_configs") or ():
        for dns in job.get("dns_sd_configs") or ():
            for name in dns.get("names") or ():
                looked_up[name] = str(dns.get("port"))
    for name, service in services.items():
        if not name.startswith("worker-"):
            continue
        port = metrics_listen_port(service.get("command"))
        if not port:
            errors.append(f"{COMPOSE_FILE}: service {name}: tlworker has no --metrics_listen "
                          "on an address Prometheus reaches")
        elif looked_up.get(name) != port:
            errors.append(f"deploy/prometheus.yml: no dns_sd_configs entry scraping {name} on port {port} "
                          f"(its --metrics_listen); found {looked_up.get(name)}")


def check_metrics_port(root: str, tlserver: dict, errors: List[str]) -> None:
    """Prometheus must scrape the port tlserver serves /metrics on."""
    command = tlserver.get("command") or []
    listen = [arg.split("=", 1)[1] for arg in command if arg.startswith("--metrics_listen=")]
    port = listen[0].rsplit(":", 1)[-1] if listen else "9464"
    with open(os.path.join(root, "deploy/prometheus.yml")) as file:
        config = yaml.safe_load(file) or {}
    targets = [target for job in config.get("scrape_configs") or ()
               for static in job.get("static_configs") or () for target in static.get("targets") or ()]
    if f"tlserver:{port}" not in targets:
        errors.append(f"deploy/prometheus.yml: no scrape target tlserver:{port} "
                      f"(tlserver serves /metrics on port {port}); targets: {targets}")
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run([promtool, "check", "config", "--syntax-only",
                                 os.path.join(root, "deploy/prometheus.yml")],
                                capture_output=True, text=True)
        if result.returncode != 0:
            errors.append(f"deploy/prometheus.yml: promtool check config: {result.stderr.strip()}")


def dockerfile_instructions(path: str) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions = []
    pending = ""
    with open(path) as file:
        for line in file:
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if pending and stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            full = pending + stripped
            pending = ""
            keyword, _, arguments = full.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerignore_patterns(context: str) -> List[str]:
    path = os.path.join(context, ".dockerignore")
    if not os.path.isfile(path):
        return []
    with open(path) as file:
        lines = [line.strip() for line in file]
    return [line for line in lines if line and not line.startswith(("#", "!"))]


def ignored(relative: str, patterns: List[str]) -> str:
    parts = relative.strip("/").split("/")
    for pattern in patterns:
        pattern = pattern.strip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern) or fnmatch.fnmatchcase(
                    prefix, pattern.replace("**/", "")):
                return pattern
    return ""


def check_dockerfile(dockerfile: str, context: str, root: str, errors: List[str]) -> None:
    name = os.path.relpath(dockerfile, root)
    stages = []
    user = None
    patterns = dockerignore_patterns(context)
    for keyword, arguments in dockerfile_instructions(dockerfile):
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)\s*$", arguments, re.I)
            stages.append(match.group(1) if match else "")
            user = None
        elif keyword == "USER":
            user = arguments.split(":")[0]
        elif keyword in ("COPY", "ADD"):
            words = arguments.split()
            options = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            if arguments.lstrip().startswith("["):
                paths = json.loads(arguments[arguments.index("["):])
            from_stage = [o.split("=", 1)[1] for o in options if o.startswith("--from=")]
            if from_stage:
                if from_stage[0] not in stages[:-1] and not from_stage[0].isdigit() and ":" not in from_stage[0]:
                    errors.append(f"{name}: COPY --from={from_stage[0]} names no earlier stage")
                continue
            for source in paths[:-1]:
                matches = glob.glob(os.path.join(context, source))
                if not matches:
                    errors.append(f"{name}: {keyword} source {source} does not exist in the build "
                                  f"context {os.path.relpath(context, root) or '.'}")
                pattern = ignored(source, patterns)
                if pattern:
                    errors.append(f"{name}: {keyword} source {source} is excluded by .dockerignore ({pattern})")
    if not stages:
        errors.append(f"{name}: no FROM")
    elif user in (None, "root", "0"):
        errors.append(f"{name}: the last stage ({stages[-1] or 'unnamed'}) runs as root: add USER")


INSTALL_DEPS = "scripts/install-deps"
DEBIAN_DOCKERFILE = "docker/Dockerfile"
# Packages install-deps installs for the tests alone, which the images do not build.
TEST_ONLY_PACKAGES = {"libgtest-dev", "libgmock-dev"}


def build_library_packages(root: str) -> Set[str]:
    """The -dev and compiler packages scripts/install-deps installs."""
    with open(os.path.join(root, INSTALL_DEPS)) as file:
        text = file.read()
    match = re.search(r'PACKAGES="(.*?)"', text, re.S)
    words = match.group(1).split() if match else []
    return {w for w in words if re.fullmatch(r"lib[\w.+-]*-dev|protobuf-compiler[\w-]*|"
                                               r"prometheus-cpp-dev|nlohmann-json3-dev", w)
            } - TEST_ONLY_PACKAGES


def first_stage_packages(dockerfile: str) -> Set[str]:
    """The words of the apt-get install commands of a Dockerfile's first stage."""
    packages: Set[str] = set()
    stages = 0
    for keyword, arguments in dockerfile_instructions(dockerfile):
        if keyword == "FROM":
            stages += 1
        elif keyword == "RUN" and stages == 1:
            for command in re.findall(r"apt-get install([^&;]*)", arguments):
                packages |= {w for w in command.split() if not w.startswith("-")}
    return packages


def check_build_packages(root: str, errors: List[str]) -> None:
    wanted = build_library_packages(root)
    if not wanted:
        errors.append(f"{INSTALL_DEPS}: no PACKAGES list with -dev packages found")
        return
    installed = first_stage_packages(os.path.join(root, DEBIAN_DOCKERFILE))
    for package in sorted(wanted - installed):
        errors.append(f"{DEBIAN_DOCKERFILE}: its build stage does not install {package}, which "
                      f"{INSTALL_DEPS} installs to build tl")


CUDA_DOCKERFILE = "docker/worker-cuda.Dockerfile"
GPU_BUILD = "scripts/gpu-build"


def check_cuda_worker_build(root: str, errors: List[str]) -> None:
    """The CUDA worker image builds tlworker with scripts/gpu-build, the build
    steps scripts/gpu-worker-check runs on a GPU machine, rather than a CMake
    line of its own that could drift from them."""
    path = os.path.join(root, CUDA_DOCKERFILE)
    if not os.path.isfile(path):
        return
    copied = runs = False
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "COPY" and GPU_BUILD in arguments.split():
            copied = True
        elif keyword == "RUN" and re.search(r"(^|[\s;&|])" + re.escape(GPU_BUILD) + r"\s", arguments):
            runs = copied
        elif keyword == "RUN" and re.search(r"\bcmake\s+-S\b", arguments):
            errors.append(f"{CUDA_DOCKERFILE}: configures CMake itself; build with {GPU_BUILD}, "
                          "whose steps scripts/gpu-worker-check runs on a GPU machine")
    if not runs:
        errors.append(f"{CUDA_DOCKERFILE}: does not COPY and RUN {GPU_BUILD}, the build steps "
                      "scripts/gpu-worker-check runs on a GPU machine")


def check_dockerfiles(root: str, from_compose: List[Tuple[str, str]], errors: List[str]) -> None:
    contexts = {os.path.realpath(dockerfile): context for dockerfile, context in from_compose}
    dockerfiles = glob.glob(os.path.join(root, "docker/*Dockerfile"))
    if not dockerfiles:
        errors.append("docker/: no Dockerfile")
    for dockerfile in sorted(dockerfiles):
        # Dockerfiles outside the compose file build from the repository root too.
        context = contexts.get(os.path.realpath(dockerfile), root)
        check_dockerfile(dockerfile, context, root, errors)


# --- Secured /metrics -------------------------------------------------------

METRICS_SECURITY_FLAGS = ("--metrics_tls_cert", "--metrics_tls_key", "--metrics_token_file")
SECRETS_SCRIPT = "deploy/make-secrets"
COMPOSE_SECRETS = "/run/secrets/"


def flag_values(args: List[str]) -> Dict[str, str]:
    """--name=value arguments as {--name: value}, the last one winning."""
    values = {}
    for arg in args or ():
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            values[flag] = value
    return values


def service_secrets(service: dict) -> Set[str]:
    """Names of the compose secrets a service mounts (short or long form)."""
    return {s if isinstance(s, str) else s.get("source") for s in service.get("secrets") or ()}


def compose_secret_file(path: str, service_name: str, service: dict, secrets: dict,
                        what: str, errors: List[str]) -> str:
    """The host file behind a /run/secrets/NAME path a service uses; "" (and
    an error) when it is not one of the service's compose secrets."""
    name = path[len(COMPOSE_SECRETS):] if path.startswith(COMPOSE_SECRETS) else ""
    if not name or name not in service_secrets(service):
        errors.append(f"{COMPOSE_FILE}: service {service_name}: {what} {path} is not one of the "
                      f"service's secrets (mounted under {COMPOSE_SECRETS})")
        return ""
    if name not in secrets or not (secrets[name] or {}).get("file"):
        errors.append(f"{COMPOSE_FILE}: secret {name} ({what} of {service_name}) names no file")
        return ""
    return os.path.realpath(secrets[name]["file"])


def secrets_script(root: str) -> str:
    """The text of deploy/make-secrets; "" when it is missing."""
    path = os.path.join(root, SECRETS_SCRIPT)
    if not os.path.isfile(path):
        return ""
    with open(path) as file:
        return file.read()


def secrets_folder(root: str) -> str:
    """Where deploy/make-secrets writes by default, and compose reads."""
    return os.path.realpath(os.path.join(root, "deploy/secrets"))


def check_compose_metrics_security(root: str, config: dict, errors: List[str]) -> None:
    """tlserver and every worker service serve /metrics over HTTPS with a
    bearer token from compose secrets that deploy/make-secrets makes, and
    Prometheus scrapes each job with that token and that certificate."""
    services = config.get("services") or {}
    secrets = config.get("secrets") or {}
    used: Dict[str, Set[str]] = {flag: set() for flag in METRICS_SECURITY_FLAGS}
    for name, service in services.items():
        if name != "tlserver" and not name.startswith("worker-"):
            continue
        values = flag_values(service.get("command"))
        for flag in METRICS_SECURITY_FLAGS:
            if not values.get(flag):
                errors.append(f"{COMPOSE_FILE}: service {name}: /metrics is served without {flag} "
                              "(docs/METRICS.md, Securing the scrape)")
                continue
            path = compose_secret_file(values[flag], name, service, secrets, flag, errors)
            if path:
                used[flag].add(path)
    script = secrets_script(root)
    if not script:
        errors.append(f"{SECRETS_SCRIPT} is missing: nothing makes the /metrics token and certificate")
    folder = secrets_folder(root)
    for path in sorted(set().union(*used.values())):
        if os.path.dirname(path) != folder or os.path.basename(path) not in script:
            errors.append(f"{COMPOSE_FILE}: secret file {path} is not one that {SECRETS_SCRIPT} makes "
                          "in deploy/secrets")
    for flag, paths in used.items():
        if len(paths) > 1:
            errors.append(f"{COMPOSE_FILE}: the services' {flag} name different files {sorted(paths)}: "
                          "Prometheus scrapes them all with one token and one trusted certificate")

    prometheus = services.get("prometheus") or {}
    mounted = {os.path.realpath((secrets.get(n) or {}).get("file") or n) for n in service_secrets(prometheus)}
    if mounted & used["--metrics_tls_key"]:
        errors.append(f"{COMPOSE_FILE}: service prometheus mounts the /metrics private key, which it "
                      "does not need")
    with open(os.path.join(root, "deploy/prometheus.yml")) as file:
        jobs = (yaml.safe_load(file) or {}).get("scrape_configs") or ()
    for job in jobs:
        where = f"deploy/prometheus.yml: job {job.get('job_name')}"
        if job.get("scheme") != "https":
            errors.append(f"{where}: scheme is not https (tl's /metrics speak HTTPS only)")
        authorization = job.get("authorization") or {}
        tls = job.get("tls_config") or {}
        for what, path, flag in (
                ("authorization.credentials_file", authorization.get("credentials_file"), "--metrics_token_file"),
                ("tls_config.ca_file", tls.get("ca_file"), "--metrics_tls_cert")):
            if not path:
                errors.append(f"{where}: no {what}")
                continue
            file = compose_secret_file(path, "prometheus", prometheus, secrets, what, errors)
            if file and used[flag] and file not in used[flag]:
                errors.append(f"{where}: {what} {path} is not the file the services' {flag} names")
        if authorization.get("type", "Bearer") != "Bearer":
            errors.append(f"{where}: authorization.type is not Bearer")
        server_name = tls.get("server_name")
        if job.get("dns_sd_configs") and not server_name:
            errors.append(f"{where}: targets found by DNS are addresses: tls_config.server_name must "
                          "name the certificate")
        if server_name and f"DNS:{server_name}" not in script:
            errors.append(f"{where}: tls_config.server_name {server_name} is not a name of the "
                          f"certificate {SECRETS_SCRIPT} makes")


def worker_token_patterns(script: str) -> List[str]:
    """The worker ids the worker token of deploy/make-secrets allows: the
    fourth field of its tokens line (`... workers worker cpu-*,gpu-*`)."""
    match = re.search(r'worker-token"\)\s+\S+\s+worker\s+([^\s"]+)', script)
    return match.group(1).split(",") if match else []


def check_compose_grpc_tokens(root: str, config: dict, errors: List[str]) -> None:
    """tlserver asks every gRPC caller for a token of the tokens file
    deploy/make-secrets makes (its health check too), and every worker
    service connects with the worker token as an id that token allows."""
    services = config.get("services") or {}
    secrets = config.get("secrets") or {}
    script = secrets_script(root)
    folder = secrets_folder(root)

    def made_by_script(path: str, what: str, expected: str) -> None:
        """`path` must be the file `expected` that the script makes."""
        if path and (os.path.dirname(path) != folder or expected not in script
                     or os.path.basename(path) != expected):
            errors.append(f"{COMPOSE_FILE}: {what} {path} is not deploy/secrets/{expected}, which "
                          f"{SECRETS_SCRIPT} makes")

    tlserver = services.get("tlserver") or {}
    tokens_file = flag_values(tlserver.get("command")).get("--tokens_file")
    if not tokens_file:
        errors.append(f"{COMPOSE_FILE}: service tlserver: gRPC is served without --tokens_file "
                      "(docs/API.md, Authentication)")
    else:
        made_by_script(compose_secret_file(tokens_file, "tlserver", tlserver, secrets,
                                           "--tokens_file", errors), "tokens file", "tokens")
    health = (tlserver.get("healthcheck") or {}).get("test") or []
    if "--token-file" not in health:
        errors.append(f"{COMPOSE_FILE}: service tlserver: the health check's tlctl carries no "
                      "--token-file, and tlserver refuses calls without a token")
    else:
        token = health[health.index("--token-file") + 1] if health[-1] != "--token-file" else ""
        made_by_script(compose_secret_file(token, "tlserver", tlserver, secrets,
                                           "health check --token-file", errors), "health token",
                       "health-token")

    patterns = worker_token_patterns(script)
    for name, service in services.items():
        if not name.startswith("worker-"):
            continue
        values = flag_values(service.get("command"))
        if not values.get("--token_file"):
            errors.append(f"{COMPOSE_FILE}: service {name}: tlworker has no --token_file")
        else:
            made_by_script(compose_secret_file(values["--token_file"], name, service, secrets,
                                               "--token_file", errors), "worker token",
                           "worker-token")
        # Placeholders stand for any text: replicas differ only there.
        worker_id = re.sub(r"\{(hostname|pid)\}", "x", values.get("--worker_id", "{hostname}-{pid}"))
        if not any(fnmatch.fnmatchcase(worker_id, p) for p in patterns):
            errors.append(f"{COMPOSE_FILE}: service {name}: --worker_id "
                          f"{values.get('--worker_id', '(default {hostname}-{pid})')} is not one the "
                          f"worker token of {SECRETS_SCRIPT} allows ({','.join(patterns) or 'none'})")


def check_k8s_metrics_security(name: str, document: dict, errors: List[str]) -> None:
    """A container that serves /metrics beyond loopback gets the three flags,
    each naming a file in a mounted Secret."""
    kind, title = document["kind"], document["metadata"]["name"]
    for container in pod_spec(document).get("containers") or ():
        if not metrics_listen_port(container.get("args")):
            continue
        values = flag_values(container.get("args"))
        for flag in METRICS_SECURITY_FLAGS:
            path = values.get(flag)
            if not path:
                errors.append(f"{name}: {kind} {title}: container {container.get('name')} serves /metrics "
                              f"without {flag} (docs/METRICS.md, Securing the scrape)")
                continue
            k8s_secret_file(name, document, container, flag, path, errors)


def k8s_secret_file(name: str, document: dict, container: dict, flag: str, path: str,
                    errors: List[str]) -> str:
    """The Secret (by its secretName) holding `path`, a file a container's flag
    names; "" after saying so when no mounted Secret holds it."""
    kind, title = document["kind"], document["metadata"]["name"]
    volumes = {v.get("name"): v for v in pod_spec(document).get("volumes") or ()}
    for mount in container.get("volumeMounts") or ():
        secret = (volumes.get(mount.get("name")) or {}).get("secret")
        if secret and path.startswith(mount.get("mountPath", "").rstrip("/") + "/"):
            return secret.get("secretName", "")
    errors.append(f"{name}: {kind} {title}: container {container.get('name')}: {flag} {path} "
                  "does not lie in a mounted Secret")
    return ""


def k8s_secret_commands(script: str) -> Dict[str, str]:
    """Secret name -> the file of deploy/make-secrets' folder it is made from,
    read from the `kubectl create secret generic NAME --from-file=KEY=$dir/FILE`
    lines the script prints."""
    return dict(re.findall(r"create secret generic (\S+) --from-file=\S+=\$dir/(\S+)", script))


def check_k8s_grpc_tokens(root: str, name: str, document: dict, errors: List[str]) -> None:
    """The scheduler asks for the tokens file deploy/make-secrets makes, and each
    worker connects with its worker token as an id that token allows."""
    kind, title = document["kind"], document["metadata"]["name"]
    script = secrets_script(root)
    made_from = k8s_secret_commands(script)
    for container in pod_spec(document).get("containers") or ():
        values = flag_values(container.get("args"))
        where = f"{name}: {kind} {title}: container {container.get('name')}"
        wanted = ("--tokens_file", "tokens") if kind == "StatefulSet" else ("--token_file", "worker-token")
        flag, expected = wanted
        path = values.get(flag)
        if not path:
            errors.append(f"{where}: no {flag} (docs/API.md, Authentication)")
            continue
        secret = k8s_secret_file(name, document, container, flag, path, errors)
        if secret and made_from.get(secret) != expected:
            errors.append(f"{where}: {flag} {path} lies in the Secret {secret}, which {SECRETS_SCRIPT} "
                          f"does not print a command to make from its {expected}")
        if kind == "Deployment":
            patterns = worker_token_patterns(script)
            # $(POD_NAME) and the placeholders stand for any text.
            worker_id = re.sub(r"\$\([A-Z_]+\)|\{(hostname|pid)\}", "x",
                               values.get("--worker_id", "{hostname}-{pid}"))
            if not any(fnmatch.fnmatchcase(worker_id, p) for p in patterns):
                errors.append(f"{where}: --worker_id {values.get('--worker_id', '(default)')} is not one the "
                              f"worker token of {SECRETS_SCRIPT} allows ({','.join(patterns) or 'none'})")


def scrape_scheme_https(annotations: dict) -> bool:
    return annotations.get("prometheus.io/scheme") == "https"


# --- Kubernetes -------------------------------------------------------------

def k8s_documents(root: str, errors: List[str]) -> List[Tuple[str, dict]]:
    documents = []
    for path in sorted(glob.glob(os.path.join(root, "deploy/k8s/*.yaml"))):
        name = os.path.relpath(path, root)
        try:
            with open(path) as file:
                documents += [(name, d) for d in yaml.safe_load_all(file) if d]
        except yaml.YAMLError as error:
            errors.append(f"{name}: not YAML: {error}")
    for name, document in documents:
        for field in ("apiVersion", "kind"):
            if field not in document:
                errors.append(f"{name}: a document has no {field}")
        if document.get("kind") != "Kustomization" and not (document.get("metadata") or {}).get("name"):
            errors.append(f"{name}: a {document.get('kind')} has no metadata.name")
    return documents


def pod_spec(document: dict) -> dict:
    return ((document.get("spec") or {}).get("template") or {}).get("spec") or {}


def check_workload(name: str, document: dict, errors: List[str]) -> None:
    kind, title = document["kind"], document["metadata"]["name"]
    spec = document.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        errors.append(f"{name}: {kind} {title}: selector.matchLabels does not match the pod labels")
    containers = pod_spec(document).get("containers") or []
    if not containers:
        errors.append(f"{name}: {kind} {title}: no containers")
    volumes = {v.get("name") for v in pod_spec(document).get("volumes") or ()}
    volumes |= {(t.get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or ()}
    for container in containers:
        if not container.get("image"):
            errors.append(f"{name}: {kind} {title}: container {container.get('name')} has no image")
        for mount in container.get("volumeMounts") or ():
            if mount.get("name") not in volumes:
                errors.append(f"{name}: {kind} {title}: mount {mount.get('name')} names no volume")
    security = pod_spec(document).get("securityContext") or {}
    if not security.get("runAsNonRoot"):
        errors.append(f"{name}: {kind} {title}: pods do not set securityContext.runAsNonRoot")


def check_worker_scrape_annotations(name: str, document: dict, errors: List[str]) -> None:
    """A worker pod is scraped on the port its tlworker serves /metrics on."""
    title = document["metadata"]["name"]
    annotations = (((document.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "annotations") or {}
    for container in pod_spec(document).get("containers") or ():
        port = metrics_listen_port(container.get("args"))
        if not port:
            errors.append(f"{name}: Deployment {title}: container {container.get('name')} has no "
                          "--metrics_listen on an address Prometheus reaches")
        elif annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != port:
            errors.append(f"{name}: Deployment {title}: pod annotations prometheus.io/scrape \"true\" and "
                          f"prometheus.io/port \"{port}\" (its --metrics_listen port) are missing")
        elif not scrape_scheme_https(annotations):
            errors.append(f"{name}: Deployment {title}: pod annotation prometheus.io/scheme is not https "
                          "(/metrics speaks HTTPS only)")


def gpu_limit(document: dict):
    for container in pod_spec(document).get("containers") or ():
        limit = ((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
        if limit:
            return limit
    return None


def check_k8s(root: str, errors: List[str]) -> None:
    documents = k8s_documents(root, errors)
    by_kind: Dict[str, List[Tuple[str, dict]]] = {}
    for name, document in documents:
        by_kind.setdefault(document.get("kind"), []).append((name, document))

    for name, document in by_kind.get("Kustomization", ()):
        for resource in document.get("resources") or ():
            if not os.path.exists(os.path.join(root, "deploy/k8s", resource)):
                errors.append(f"{name}: resource {resource} does not exist")

    statefulsets = by_kind.get("StatefulSet", [])
    if not statefulsets:
        errors.append("deploy/k8s: no StatefulSet for the scheduler")
    for name, document in statefulsets:
        spec = document.get("spec") or {}
        if not spec.get("volumeClaimTemplates"):
            errors.append(f"{name}: StatefulSet {document['metadata']['name']} has no volumeClaimTemplates "
                          "(the SQLite file needs a volume of its own)")
        if spec.get("replicas", 1) != 1:
            errors.append(f"{name}: StatefulSet {document['metadata']['name']} must have one replica")
        if not spec.get("serviceName"):
            errors.append(f"{name}: StatefulSet {document['metadata']['name']} has no serviceName")
        check_workload(name, document, errors)
        check_k8s_metrics_security(name, document, errors)
        check_k8s_grpc_tokens(root, name, document, errors)

    services = by_kind.get("Service", [])
    scraped = [(n, d) for n, d in services
               if ((d.get("metadata") or {}).get("annotations") or {}).get("prometheus.io/scrape") == "true"]
    if not scraped:
        errors.append("deploy/k8s: no Service with the annotation prometheus.io/scrape: \"true\"")
    for name, document in scraped:
        annotations = document["metadata"]["annotations"]
        ports = {p.get("name"): p.get("port") for p in (document.get("spec") or {}).get("ports") or ()}
        if "grpc" not in ports or "metrics" not in ports:
            errors.append(f"{name}: Service {document['metadata']['name']} needs ports named grpc and metrics")
        elif str(ports["metrics"]) != str(annotations.get("prometheus.io/port")):
            errors.append(f"{name}: Service {document['metadata']['name']}: prometheus.io/port "
                          f"{annotations.get('prometheus.io/port')} is not the metrics port {ports['metrics']}")
        if not scrape_scheme_https(annotations):
            errors.append(f"{name}: Service {document['metadata']['name']}: annotation "
                          "prometheus.io/scheme is not https (/metrics speaks HTTPS only)")

    deployments = by_kind.get("Deployment", [])
    for name, document in deployments:
        check_workload(name, document, errors)
        check_worker_scrape_annotations(name, document, errors)
        check_k8s_metrics_security(name, document, errors)
        check_k8s_grpc_tokens(root, name, document, errors)
    if not any(gpu_limit(d) for _, d in deployments):
        errors.append("deploy/k8s: no worker Deployment with a resources.limits nvidia.com/gpu")
    if not any(gpu_limit(d) is None for _, d in deployments):
        errors.append("deploy/k8s: no CPU worker Deployment")

    claims = {d["metadata"]["name"]: (n, d) for n, d in by_kind.get("PersistentVolumeClaim", [])}
    for name, document in deployments + statefulsets:
        for volume in pod_spec(document).get("volumes") or ():
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            if claim not in claims:
                errors.append(f"{name}: volume {volume.get('name')} claims {claim}, which no manifest defines")
            elif "ReadWriteMany" not in ((claims[claim][1].get("spec") or {}).get("accessModes") or ()):
                errors.append(f"{claims[claim][0]}: {claim} is shared by pods on any node: it needs "
                              "accessModes ReadWriteMany")


def check_all(root: str) -> List[str]:
    errors: List[str] = []
    check_grafana(root, errors)
    check_dockerfiles(root, check_compose(root, errors), errors)
    check_build_packages(root, errors)
    check_cuda_worker_build(root, errors)
    check_k8s(root, errors)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description="static checks of deploy/, docker/ and the dashboards")
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = parser.parse_args()
    errors = check_all(os.path.abspath(args.root))
    for error in errors:
        print(error, file=sys.stderr)
    print(f"deploy_check: {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
