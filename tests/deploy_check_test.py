"""deploy_check.py passes on the repository and fails, naming the problem, on
copies of it broken one way at a time."""
import json
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the checks read, copied so that a test may break it; everything else
# at the top of the repository is linked.
COPIED = ("deploy", "docker", "docs", ".dockerignore", "scripts")


class BrokenCopy:
    def __init__(self):
        self._directory = tempfile.TemporaryDirectory(prefix="tl-deploy-check-")
        self.root = self._directory.name
        for entry in os.listdir(ROOT):
            source = os.path.join(ROOT, entry)
            target = os.path.join(self.root, entry)
            if entry in COPIED:
                if os.path.isdir(source):
                    shutil.copytree(source, target)
                else:
                    shutil.copy(source, target)
            elif not entry.startswith((".git", "build")):
                os.symlink(source, target)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = os.path.join(self.root, relative)
        with open(path) as file:
            text = file.read()
        if old not in text:
            raise AssertionError(f"{relative} no longer holds {old!r}: update the test")
        with open(path, "w") as file:
            file.write(text.replace(old, new, 1))

    def close(self):
        self._directory.cleanup()


class PromqlNamesTest(unittest.TestCase):
    def test_names_outside_matchers_ranges_and_clauses(self):
        names = deploy_check.promql_metric_names
        self.assertEqual(names('sum by (outcome) (rate(tl_jobs_finished_total{outcome="failed"}[5m]))'),
                         {"tl_jobs_finished_total"})
        self.assertEqual(names('tl_job_val_loss{job_id=~"$job_id"} and on (job_id) (tl_job_epoch > 0)'),
                         {"tl_job_val_loss", "tl_job_epoch"})
        self.assertEqual(names("histogram_quantile(0.9, sum without (le) (rate(x_bucket[$__rate_interval])))"),
                         {"x_bucket"})
        self.assertEqual(names("a / ignoring (b) group_left (c) d offset 5m > bool 1e-9"), {"a", "d"})

    def test_template_queries(self):
        self.assertEqual(deploy_check.template_query_expr("label_values(tl_job_epoch, job_id)"),
                         "tl_job_epoch")
        self.assertEqual(deploy_check.template_query_expr("label_values(job_id)"), "")

    def test_catalogue_allows_suffixes_by_type(self):
        names = deploy_check.scrapable_names({
            "c_total": ("counter", "", ""), "h": ("histogram", "", ""), "s": ("summary", "", ""),
            "g": ("gauge", "", "")})
        self.assertEqual(names, {"c_total", "h", "h_bucket", "h_sum", "h_count", "s", "s_sum",
                                 "s_count", "g"})


class DeployCheckTest(unittest.TestCase):
    def setUp(self):
        self.copy = BrokenCopy()
        self.addCleanup(self.copy.close)

    def assertProblem(self, check, pattern: str):
        errors = []
        check(self.copy.root, errors)
        self.assertTrue(any(re.search(pattern, e) for e in errors),
                        f"no problem matching {pattern!r} among {errors}")

    def test_repository_passes(self):
        self.assertEqual(deploy_check.check_all(ROOT), [])

    def test_dashboard_with_an_unlisted_metric(self):
        path = os.path.join(self.copy.root, "deploy/grafana/dashboards/tl.json")
        with open(path) as file:
            dashboard = json.load(file)
        panel = next(p for p in dashboard["panels"] if p["title"] == "Queue depth")
        panel["targets"][0]["expr"] = "sum(rate(tl_jobs_exploded_total[5m]))"
        with open(path, "w") as file:
            json.dump(dashboard, file)
        self.assertProblem(deploy_check.check_grafana,
                           r'panel "Queue depth".* uses tl_jobs_exploded_total, which docs/METRICS.md')

    def test_metric_dropped_from_the_catalogue(self):
        self.copy.edit("docs/METRICS.md", "| `tl_queue_depth` |", "| queue depth |")
        self.assertProblem(deploy_check.check_grafana, r"uses tl_queue_depth, which")

    def test_query_that_does_not_parse(self):
        if not shutil.which("promtool"):
            self.skipTest("promtool (Debian package prometheus) is not installed")
        self.copy.edit("deploy/grafana/dashboards/tl.json", '"expr": "tl_workers_busy"',
                       '"expr": "sum(tl_workers_busy"')
        self.assertProblem(deploy_check.check_grafana, r'"Workers busy".*does not parse')

    def test_dashboard_naming_an_unknown_datasource(self):
        self.copy.edit("deploy/grafana/provisioning/datasources/prometheus.yml",
                       "uid: tl-prometheus", "uid: other")
        self.assertProblem(deploy_check.check_grafana, r"datasource uid 'tl-prometheus'")

    def test_copy_source_missing(self):
        self.copy.edit("docker/Dockerfile", "COPY bench bench", "COPY bench bench\nCOPY benches benches")
        self.assertProblem(lambda root, errors: deploy_check.check_dockerfiles(root, [], errors),
                           r"docker/Dockerfile: COPY source benches does not exist")

    def test_copy_source_ignored(self):
        with open(os.path.join(self.copy.root, ".dockerignore"), "a") as file:
            file.write("server\n")
        self.assertProblem(lambda root, errors: deploy_check.check_dockerfiles(root, [], errors),
                           r"COPY source server is excluded by .dockerignore")

    def test_build_stage_without_a_library_install_deps_has(self):
        self.copy.edit("docker/Dockerfile", " libgloo-dev", "")
        self.assertProblem(deploy_check.check_build_packages,
                           r"docker/Dockerfile: its build stage does not install libgloo-dev")
        self.copy.edit("scripts/install-deps", "libssl-dev", "libssl-dev libzstd-dev")
        self.assertProblem(deploy_check.check_build_packages, r"does not install libzstd-dev")

    def test_cuda_worker_built_without_the_gpu_build_script(self):
        self.copy.edit("docker/worker-cuda.Dockerfile", "      scripts/gpu-build tlworker",
                       "      cmake -S . -B /build && ninja -C /build tlworker")
        self.assertProblem(deploy_check.check_cuda_worker_build,
                           r"worker-cuda.Dockerfile: configures CMake itself")
        self.assertProblem(deploy_check.check_cuda_worker_build,
                           r"worker-cuda.Dockerfile: does not COPY and RUN scripts/gpu-build")

    def test_image_running_as_root(self):
        self.copy.edit("docker/worker-cuda.Dockerfile", "USER tl\n", "")
        self.assertProblem(lambda root, errors: deploy_check.check_dockerfiles(root, [], errors),
                           r"worker-cuda.Dockerfile: the last stage \(worker-cuda\) runs as root")

    def test_compose_bind_mount_missing(self):
        os.rename(os.path.join(self.copy.root, "deploy/grafana/provisioning"),
                  os.path.join(self.copy.root, "deploy/grafana/provisioned"))
        self.assertProblem(deploy_check.check_compose,
                           r"service grafana: bind-mounted .*grafana/provisioning does not exist")

    def test_compose_that_docker_compose_refuses(self):
        self.copy.edit("deploy/docker-compose.yml", "    shm_size: 2gb\n", "    shm_sise: 2gb\n")
        self.assertProblem(deploy_check.check_compose, r"docker-compose config .* failed")

    def test_prometheus_scraping_another_port(self):
        self.copy.edit("deploy/prometheus.yml", '"tlserver:9464"', '"tlserver:9100"')
        self.assertProblem(deploy_check.check_compose, r"no scrape target tlserver:9464")

    def test_worker_serving_metrics_where_prometheus_does_not_look(self):
        self.copy.edit("deploy/prometheus.yml", "port: 9465", "port: 9100")
        self.assertProblem(deploy_check.check_compose, r"scraping worker-cpu on port 9465")

    def test_worker_metrics_on_loopback(self):
        self.copy.edit("deploy/docker-compose.yml", "--metrics_listen=0.0.0.0:9465",
                       "--metrics_listen=127.0.0.1:9465")
        self.assertProblem(deploy_check.check_compose, r"service worker-cpu: tlworker has no --metrics_listen")

    def test_worker_pod_without_scrape_annotations(self):
        self.copy.edit("deploy/k8s/worker-gpu.yaml", 'prometheus.io/port: "9465"', 'prometheus.io/port: "9464"')
        self.assertProblem(deploy_check.check_k8s, r"Deployment worker-gpu: pod annotations .*\"9465\"")

    def test_gpu_worker_without_a_gpu_limit(self):
        self.copy.edit("deploy/k8s/worker-gpu.yaml", "              nvidia.com/gpu: 1\n", "")
        self.assertProblem(deploy_check.check_k8s, r"no worker Deployment with a resources.limits nvidia.com/gpu")

    def test_scheduler_without_volume_claim_templates(self):
        self.copy.edit("deploy/k8s/tlserver.yaml", "  volumeClaimTemplates:", "  unusedClaimTemplates:")
        self.assertProblem(deploy_check.check_k8s, r"StatefulSet tlserver has no volumeClaimTemplates")

    def test_shared_claim_not_read_write_many(self):
        self.copy.edit("deploy/k8s/storage.yaml", "accessModes: [ReadWriteMany]", "accessModes: [ReadWriteOnce]")
        self.assertProblem(deploy_check.check_k8s, r"tl-data is shared .* ReadWriteMany")


    # --- secured /metrics ---------------------------------------------------

    def test_compose_service_serving_metrics_without_a_token(self):
        self.copy.edit("deploy/docker-compose.yml", "      - --metrics_token_file=/run/secrets/metrics_token\n", "")
        self.assertProblem(deploy_check.check_compose,
                           r"service tlserver: /metrics is served without --metrics_token_file")

    def test_compose_flag_naming_a_file_that_is_not_a_secret(self):
        self.copy.edit("deploy/docker-compose.yml", "--metrics_tls_key=/run/secrets/metrics_tls_key",
                       "--metrics_tls_key=/data/metrics.key")
        self.assertProblem(deploy_check.check_compose,
                           r"service tlserver: --metrics_tls_key /data/metrics.key is not one of the service's secrets")

    def test_compose_secret_the_script_does_not_make(self):
        self.copy.edit("deploy/docker-compose.yml", "file: ./secrets/metrics-token", "file: ./secrets/token.txt")
        self.assertProblem(deploy_check.check_compose, r"token.txt is not one that deploy/make-secrets makes")

    # --- gRPC tokens ---------------------------------------------------------

    def test_compose_server_without_a_tokens_file(self):
        self.copy.edit("deploy/docker-compose.yml", "      - --tokens_file=/run/secrets/tl_tokens\n", "")
        self.assertProblem(deploy_check.check_compose, r"service tlserver: gRPC is served without --tokens_file")

    def test_compose_health_check_without_a_token(self):
        self.copy.edit("deploy/docker-compose.yml", '"--token-file", "/run/secrets/health_token",', "")
        self.assertProblem(deploy_check.check_compose, r"the health check's tlctl carries no --token-file")

    def test_compose_worker_id_the_token_does_not_allow(self):
        self.copy.edit("deploy/docker-compose.yml", "--worker_id=cpu-{hostname}", "--worker_id=box-{hostname}")
        self.assertProblem(deploy_check.check_compose,
                           r"service worker-cpu: --worker_id box-\{hostname\} is not one the worker token")

    def test_compose_worker_with_another_token(self):
        self.copy.edit("deploy/docker-compose.yml", "file: ./secrets/worker-token", "file: ./secrets/admin-token")
        self.assertProblem(deploy_check.check_compose,
                           r"worker token .*admin-token is not deploy/secrets/worker-token")

    def test_compose_worker_without_a_token(self):
        self.copy.edit("deploy/docker-compose.yml", "      - --token_file=/run/secrets/worker_token\n", "")
        self.assertProblem(deploy_check.check_compose, r"service worker-cpu: tlworker has no --token_file")

    def test_prometheus_scraping_over_http(self):
        self.copy.edit("deploy/prometheus.yml", "    scheme: https\n", "")
        self.assertProblem(deploy_check.check_compose, r"job tlserver: scheme is not https")

    def test_prometheus_without_the_token(self):
        self.copy.edit("deploy/prometheus.yml", "credentials_file: /run/secrets/metrics_token",
                       "credentials_file: /run/secrets/metrics_tls_cert")
        self.assertProblem(deploy_check.check_compose,
                           r"job tlserver: authorization.credentials_file .* is not the file the services' "
                           r"--metrics_token_file names")

    def test_prometheus_checking_a_name_the_certificate_lacks(self):
        self.copy.edit("deploy/prometheus.yml", "server_name: tl-metrics", "server_name: metrics.example")
        self.assertProblem(deploy_check.check_compose, r"server_name metrics.example is not a name of the certificate")

    def test_prometheus_given_the_private_key(self):
        self.copy.edit("deploy/docker-compose.yml", "    secrets: [metrics_tls_cert, metrics_token]",
                       "    secrets: [metrics_tls_cert, metrics_tls_key, metrics_token]")
        self.assertProblem(deploy_check.check_compose, r"service prometheus mounts the /metrics private key")

    def test_pod_metrics_key_outside_a_secret(self):
        self.copy.edit("deploy/k8s/worker-cpu.yaml", "--metrics_tls_key=/etc/tl/metrics-tls/tls.key",
                       "--metrics_tls_key=/data/tls.key")
        self.assertProblem(deploy_check.check_k8s,
                           r"Deployment worker-cpu: container tlworker: --metrics_tls_key /data/tls.key does not "
                           r"lie in a mounted Secret")

    def test_scheduler_pod_without_a_metrics_token(self):
        self.copy.edit("deploy/k8s/tlserver.yaml", "            - --metrics_token_file=/etc/tl/metrics-token/token\n", "")
        self.assertProblem(deploy_check.check_k8s,
                           r"StatefulSet tlserver: container tlserver serves /metrics without --metrics_token_file")

    def test_scheduler_pod_without_grpc_tokens(self):
        self.copy.edit("deploy/k8s/tlserver.yaml", "            - --tokens_file=/etc/tl/grpc-tokens/tokens\n", "")
        self.assertProblem(deploy_check.check_k8s, r"StatefulSet tlserver: container tlserver: no --tokens_file")

    def test_worker_pod_token_from_a_secret_the_script_does_not_make(self):
        self.copy.edit("deploy/k8s/worker-gpu.yaml", "secretName: tl-worker-token", "secretName: tl-admin-token")
        self.assertProblem(deploy_check.check_k8s,
                           r"Deployment worker-gpu: container tlworker: --token_file .* lies in the Secret "
                           r"tl-admin-token, which deploy/make-secrets does not print a command to make from its "
                           r"worker-token")

    def test_worker_pod_id_the_token_does_not_allow(self):
        self.copy.edit("deploy/k8s/worker-cpu.yaml", "--worker_id=cpu-$(POD_NAME)", "--worker_id=$(POD_NAME)")
        self.assertProblem(deploy_check.check_k8s,
                           r"Deployment worker-cpu: container tlworker: --worker_id \$\(POD_NAME\) is not one the "
                           r"worker token")

    def test_pods_scraped_over_http(self):
        self.copy.edit("deploy/k8s/worker-gpu.yaml", "        prometheus.io/scheme: https\n", "")
        self.assertProblem(deploy_check.check_k8s, r"Deployment worker-gpu: pod annotation prometheus.io/scheme")
        self.copy.edit("deploy/k8s/tlserver.yaml", "    prometheus.io/scheme: https\n", "")
        self.assertProblem(deploy_check.check_k8s, r"Service tlserver: annotation prometheus.io/scheme")


if __name__ == "__main__":
    unittest.main()
