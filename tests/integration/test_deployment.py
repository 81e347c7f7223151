"""docker/ and k8s/ validated statically (no Docker engine here): Kubernetes schemas, kustomize
references, and every command and environment variable cross-checked against the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import celeryconfig
from app.settings import ConfigError, Settings
from tests.support import ROOT

K8S = ROOT / "k8s"
K8S_VERSION = "1.30.0"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}
# set by the platform or read by libraries, not by our code
THIRD_PARTY_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PROMETHEUS_MULTIPROC_DIR", "POD_NAME",
                   "FLOWER_BASIC_AUTH", "REDIS_PASSWORD", "WEB_CONCURRENCY", "GUNICORN_WORKER_CONNECTIONS"}


def app_env_names() -> set[str]:
    """Every environment variable our code reads: the fields of the one settings object."""
    return set(Settings.model_fields)


def k8s_documents(folder: Path) -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def check_command(argv: list[str]) -> None:
    """The command a container runs exists in this repository."""
    if argv[:2] == ["sh", "-c"]:
        for part in re.split(r"&&|;", argv[2]):
            check_command(shlex.split(part.replace("$", "")))
        return
    head = argv[0]
    if head == "gunicorn":
        assert "wsgi:app" in argv and (ROOT / argv[argv.index("-c") + 1]).is_file()
    elif head == "celery":
        assert argv[1:3] == ["-A", "tasks"] and (ROOT / "tasks" / "__init__.py").is_file()
        assert argv[3] in {"worker", "beat", "flower", "inspect"}, argv
        if argv[3] == "worker":
            queues = argv[argv.index("-Q") + 1].split(",")
            assert set(queues) <= set(celeryconfig.QUEUES), queues
    elif head == "flask":
        assert argv[1:3] == ["--app", "wsgi"]
        from app.cli import db_cli, seed_cli, users_cli
        from app.notifications.cli import notifications_cli
        from app.outbox.cli import events_cli

        groups = {g.name: g for g in (db_cli, seed_cli, users_cli, events_cli, notifications_cli)}
        assert argv[3] in groups and argv[4] in groups[argv[3]].commands, argv
    elif head == "python":
        assert argv[1] == "-m"
        assert (ROOT / (argv[2].replace(".", "/") + ".py")).is_file(), argv
    else:
        raise AssertionError(f"unknown command {argv}")


def test_every_k8s_manifest_validates_against_the_kubernetes_schemas():
    docs = k8s_documents(K8S / "base")
    assert {d["kind"] for _, d in docs} >= {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Ingress",
                                           "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}
    for path, doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_each_overlay_renders_and_its_output_validates(overlay):
    """What `kubectl apply -k k8s/overlays/<overlay>` would send: rendered by kubectl's kustomize
    (Debian's kubernetes-client; .ci/run installs it), every object validated against the
    Kubernetes schemas, and the KEDA objects checked structurally (no schema ships for CRDs)."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required to render the overlays: apt-get install kubernetes-client"
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert {"tickets-api", "tickets-beat", "tickets-worker-booking", "tickets-worker-housekeeping"} <= set(deployments)
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {"tickets-dev" if overlay == "dev" else "tickets"}, namespaces
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "keda.sh/v1alpha1", name
            if doc["kind"] == "ScaledObject":
                target = doc["spec"]["scaleTargetRef"]["name"]
                assert target in deployments, f"{name} scales {target}, which the overlay does not render"
                assert doc["spec"]["triggers"] and all(t["type"] for t in doc["spec"]["triggers"]), name
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {name}: {exc.message} at {exc.path}")


def test_kustomizations_reference_what_exists():
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for resource in base["resources"]:
        assert (K8S / "base" / resource).is_file(), resource
    assert {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"} == set(base["resources"])
    objects = {(d["kind"], d["metadata"]["name"]) for _, d in k8s_documents(K8S / "base")}
    for overlay in ("dev", "prod"):
        kust = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        assert kust["resources"] == ["../../base"]
        for patch in kust.get("patches", []):
            if "path" in patch:
                doc = yaml.safe_load((K8S / "overlays" / overlay / patch["path"]).read_text())
                assert (doc["kind"], doc["metadata"]["name"]) in objects
            else:
                assert (patch["target"]["kind"], patch["target"]["name"]) in objects


def test_deployments_are_production_shaped():
    docs = [d for _, d in k8s_documents(K8S / "base")]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert container["resources"]["requests"] and container["resources"]["limits"], name
            check_command(container["command"])
            assert {"configMapRef": {"name": "tickets-config"}} in container["envFrom"], name
    api = deployments["tickets-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    beat = deployments["tickets-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    job = next(d for d in docs if d["kind"] == "Job")
    check_command(job["spec"]["template"]["spec"]["containers"][0]["command"])
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tickets-api"
    labels = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] for d in deployments.values()}
    for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] in labels
    # every Celery queue has workers, and KEDA scales each worker Deployment on a real queue
    consumed = set()
    for dep in deployments.values():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c["command"][3:4] == ["worker"]:
                consumed |= set(c["command"][c["command"].index("-Q") + 1].split(","))
    assert consumed == set(celeryconfig.QUEUES)
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    # every worker scales on its queue, except housekeeping: beat's ticks are a fixed, small load
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        n for n in deployments if "worker" in n and "housekeeping" not in n}
    for s in scaled:
        trigger = s["spec"]["triggers"][0]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] in celeryconfig.QUEUES


def test_k8s_config_is_a_valid_production_configuration():
    docs = {d["metadata"]["name"]: d for _, d in k8s_documents(K8S / "base") if d["kind"] in {"ConfigMap", "Secret"}}
    env = {**docs["tickets-config"]["data"], **docs["tickets-secrets"]["stringData"]}
    assert set(env) - THIRD_PARTY_ENV <= app_env_names(), set(env) - THIRD_PARTY_ENV - app_env_names()
    with pytest.raises(ConfigError):  # the template's placeholders are refused, never run
        Settings.from_env(env).refuse_unsafe_production()
    real = {k: v.replace("CHANGE_ME_TO_64_RANDOM_CHARACTERS", "x" * 64).replace(
        "CHANGE_ME_TO_64_OTHER_RANDOM_CHARACTERS", "y" * 64) for k, v in env.items()}
    with pytest.raises(ConfigError, match="STRIPE"):  # no money without Stripe's keys
        Settings.from_env(real).refuse_unsafe_production()
    real.update(STRIPE_SECRET_KEY="sk_live_x", STRIPE_WEBHOOK_SECRET="whsec_x", STRIPE_PUBLISHABLE_KEY="pk_live_x")
    Settings.from_env(real).refuse_unsafe_production()


def test_compose_stack_matches_the_code():
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "worker-booking", "worker-admission", "worker-notifications", "beat", "flower", "migrate",
            "mysql", "redis", "kafka", "sns", "prometheus", "grafana", "exporter"} <= set(services)
    app_env = compose["x-app-env"]
    assert set(app_env) - THIRD_PARTY_ENV <= app_env_names(), set(app_env) - THIRD_PARTY_ENV - app_env_names()
    # compose refuses to start without Stripe's keys (`${VAR:?message}`); given them, it is production-safe
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY"):
        assert app_env[name].startswith(f"${{{name}:?"), app_env[name]
    assert app_env["PAYMENT_PROVIDER"] == "stripe"
    given = {name: f"{name.lower()}_test" for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
                                                        "STRIPE_PUBLISHABLE_KEY")}
    Settings.from_env({**{k: str(v) for k, v in app_env.items()}, **given}).refuse_unsafe_production()
    ours = [name for name, svc in services.items() if svc.get("image") == "tickets:dev"]
    assert set(ours) >= {"api", "beat", "flower", "migrate", "exporter"}
    workers = set()
    for name in ours:
        argv = services[name]["command"]
        check_command(argv)
        if argv[3:4] == ["worker"]:
            workers |= set(argv[argv.index("-Q") + 1].split(","))
        env = services[name].get("environment", {})
        assert set(env) - THIRD_PARTY_ENV <= app_env_names()
    assert workers == set(celeryconfig.QUEUES)
    assert services["migrate"]["restart"] == "no" and "db upgrade" in services["migrate"]["command"][2]
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / "docker" / mount.split(":")[0]).exists(), mount
    redis_cmd = services["redis"]["command"]
    assert "noeviction" in redis_cmd and "--appendonly" in redis_cmd


def test_streams_go_to_the_gevent_server_and_everything_else_to_the_rest_server():
    """REST runs on granian (a thread per request), the SSE streams on gunicorn + gevent (a
    greenlet per stream): the ingress and the compose stack's nginx split them by path."""
    docs = [d for _, d in k8s_documents(K8S / "base")]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    api = deployments["tickets-api"]["spec"]["template"]["spec"]["containers"][0]
    stream = deployments["tickets-stream"]["spec"]["template"]["spec"]["containers"][0]
    assert api["command"] == ["python", "-m", "app.serve"]
    assert stream["command"][0] == "gunicorn" and "docker/gunicorn.conf.py" in stream["command"]
    ingress = next(d for d in docs if d["kind"] == "Ingress" and d["metadata"]["name"] == "tickets")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    stream_path = next(p for p in paths if "stream" in p)
    assert paths[stream_path] == "tickets-stream" and paths["/api"] == "tickets-api"
    assert re.fullmatch(stream_path, "/api/queue/42/stream") and not re.fullmatch(stream_path, "/api/queue/42/status")
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert {"tickets-api", "tickets-stream"} <= services

    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())["services"]
    assert compose["api"]["command"] == ["python", "-m", "app.serve"]
    assert compose["stream"]["command"][0] == "gunicorn"
    assert compose["proxy"]["ports"] == ["8000:8000"] and "ports" not in compose["api"]
    nginx = (ROOT / "docker" / "nginx.conf").read_text()
    location = re.search(r"location ~ (\S+) \{\s*proxy_pass http://tickets_stream;", nginx)
    assert location and re.search(location.group(1), "/api/queue/7/stream")
    assert "server stream:8000" in nginx and "server api:8000" in nginx


def test_the_serving_figures_sit_behind_a_one_second_micro_cache_in_compose_and_k8s():
    """docker/nginx.conf and the ingress cache GET /api/queue/<id>/serving for a second, with a
    cache lock and stale-while-revalidate (tests/integration/test_queue.py runs the nginx one)."""
    nginx = (ROOT / "docker" / "nginx.conf").read_text()
    location = re.search(r"location ~ (\S+serving\S*) \{(.*?)\n    \}", nginx, re.S)
    assert location and re.search(location.group(1), "/api/queue/7/serving")
    docs = [d for _, d in k8s_documents(K8S / "base")]
    ingress = next(d for d in docs if d["kind"] == "Ingress" and d["metadata"]["name"] == "tickets-serving")
    snippet = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/configuration-snippet"]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert re.fullmatch(path["path"], "/api/queue/7/serving") and path["backend"]["service"]["name"] == "tickets-api"
    for directive in ("proxy_cache serving;", "proxy_cache_valid 200 1s;", "proxy_cache_lock on;",
                      "proxy_cache_use_stale updating", "proxy_cache_background_update on;"):
        assert directive in location.group(2) and directive in snippet, directive
    controller = yaml.safe_load((K8S / "examples" / "ingress-nginx-controller-configmap.yaml").read_text())
    assert "keys_zone=serving:" in controller["data"]["http-snippet"]


def test_dockerfile_is_multistage_non_root_and_its_commands_exist():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER 10001", text, re.M)
    copied = [item for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text, re.M)
              for item in source.split()]
    for item in copied:
        assert (ROOT / item).exists(), item
    # the product image holds no dev tools (make run's supervisor, its inbox, the private MariaDB)
    assert copied and "devtools" not in " ".join(copied) and "." not in copied
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    check_command(yaml.safe_load(cmd))
    assert "HEALTHCHECK" in text and "/healthz" in text
    for line in re.findall(r"^ENV .*(?:\n\s+.*)*", text, re.M):
        assert "SECRET" not in line and "PASSWORD" not in line


def test_prod_puts_the_app_on_a_redis_cluster_and_celery_on_the_standalone_broker():
    import shutil
    import subprocess
    from urllib.parse import urlparse

    out = subprocess.run([shutil.which("kubectl") or "kubectl", "kustomize", str(K8S / "overlays" / "prod")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tickets-config")["data"]
    assert config["REDIS_CLUSTER"] == "true"
    app_host, broker_host = urlparse(config["REDIS_URL"]).hostname, urlparse(config["CELERY_BROKER_URL"]).hostname
    assert app_host != broker_host
    # KEDA reads the queue lengths where Celery keeps them: the broker, never the cluster
    addresses = {t["metadata"]["address"].split(":")[0] for d in docs if d["kind"] == "ScaledObject"
                 for t in d["spec"]["triggers"] if t["type"] == "redis"}
    assert addresses == {broker_host}
    settings = celeryconfig.celery_settings(Settings.from_env(config))
    assert urlparse(settings["broker_url"]).hostname == urlparse(settings["redbeat_redis_url"]).hostname == broker_host
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL"):  # a cluster with no broker is refused
        Settings.from_env({k: v for k, v in config.items() if k != "CELERY_BROKER_URL"})


def test_compose_cluster_override_moves_every_app_process_to_the_cluster():
    base = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())["services"]
    override = yaml.safe_load((ROOT / "docker" / "docker-compose.cluster.yml").read_text())["services"]
    app_services = {name for name, s in base.items() if s.get("image") == "tickets:dev"}
    assert app_services <= set(override), app_services - set(override)
    for name in app_services:
        env = override[name]["environment"]
        assert env["REDIS_CLUSTER"] == "true" and env["REDIS_URL"].startswith("redis://redis-node-"), name
    assert {"redis-node-1", "redis-node-2", "redis-node-3", "redis-cluster-init"} <= set(override)
    assert "redis" in base  # the standalone broker stays
    assert "--cluster-enabled" in override["redis-node-1"]["command"]


def test_k8s_rolls_every_process_without_dropping_a_request():
    """What the rolling-restart test (test_rolling_restart.py) relies on, in the manifests: the API
    and stream servers leave the load balancer before they stop (preStop makes /readyz answer 503
    and waits longer than the readiness probe needs to notice), their grace covers that wait plus
    the drain, and no Deployment stops a pod before its replacement runs."""
    from app.settings import Settings

    docs = [d for _, d in k8s_documents(K8S / "base")]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    drain_file = Settings.model_fields["DRAIN_FILE"].default
    for name in ("tickets-api", "tickets-stream"):
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        hook = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
        assert f"touch {drain_file}" in hook, hook
        pause = int(re.search(r"sleep (\d+)", hook).group(1))
        probe = container["readinessProbe"]
        assert probe["httpGet"]["path"] == "/readyz"
        assert probe["periodSeconds"] * probe["failureThreshold"] * 2 < pause  # noticed well within the pause
        assert pod["terminationGracePeriodSeconds"] >= pause + 30  # + granian's / gunicorn's drain
    for name, deployment in deployments.items():
        strategy = deployment["spec"].get("strategy", {})
        if name == "tickets-beat":
            assert strategy["type"] == "Recreate"  # one scheduler (RedBeat's lock covers a rollout anyway)
            continue
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, name
