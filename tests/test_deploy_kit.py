"""The Langfuse self-hosting kit (deploy/): Docker cannot run here, so the files themselves are checked.

The compose file must parse, reference only defined volumes, services and variables, pin every
image to a tag at the versions Langfuse v4 requires, and carry no default secret: secrets appear
only as required variables, whose placeholder values live in ``.env.example`` alone. The example
script is run for real against a local server answering in Langfuse's shapes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.backends.langfuse_server import FakeLangfuse

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_TEXT = (DEPLOY / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|SALT|ENCRYPTION_KEY|REDIS_AUTH")
# Defaults that Langfuse's own example compose file ships: none may be used by this kit.
KNOWN_DEFAULT_SECRETS = ("mysecret", "mysalt", "miniosecret", "myredissecret", "0" * 64, "postgres:postgres@",
                         "CLICKHOUSE_PASSWORD: clickhouse", "POSTGRES_PASSWORD: postgres")


def env_example() -> dict[str, str]:
    values = {}
    for number, line in enumerate((DEPLOY / ".env.example").read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z0-9_]+", key), f".env.example line {number} is not KEY=VALUE: {line!r}"
        values[key] = value
    return values


def resolve(text: str) -> str:
    """Substitute ${VAR:-default} with its default, as compose does with an empty environment."""
    return REFERENCE.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else f"<{m.group(1)}>", text)


def version_tuple(tag: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", tag.split("T")[0])[:3])


def test_the_stack_has_the_services_langfuse_v4_needs():
    services = COMPOSE["services"]
    assert set(services) == {"langfuse-web", "langfuse-worker", "postgres", "clickhouse", "redis", "minio"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on undefined service {dependency}"
    web, worker = services["langfuse-web"]["environment"], services["langfuse-worker"]["environment"]
    for key in ("DATABASE_URL", "CLICKHOUSE_URL", "REDIS_HOST", "LANGFUSE_S3_EVENT_UPLOAD_BUCKET", "SALT", "ENCRYPTION_KEY"):
        assert key in web and web[key] == worker[key], f"web and worker disagree on {key}"


def test_every_image_is_pinned_at_the_versions_langfuse_requires():
    tags = {}
    for name, service in COMPOSE["services"].items():
        image = resolve(service["image"])
        repository, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag and tag not in ("", "latest"), f"{name}: image {image!r} is not pinned to a tag"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"
        tags[name] = tag
    assert services_share_the_langfuse_tag()
    assert version_tuple(tags["langfuse-web"])[0] == 4
    assert version_tuple(tags["clickhouse"]) >= (25, 12)
    assert version_tuple(tags["postgres"]) >= (15,)
    assert version_tuple(tags["redis"]) >= (7,)


def services_share_the_langfuse_tag() -> bool:
    """Web and worker take their tag from one variable, so an upgrade or rollback moves both."""
    web = COMPOSE["services"]["langfuse-web"]["image"].split("langfuse/langfuse:", 1)[1]
    worker = COMPOSE["services"]["langfuse-worker"]["image"].split("langfuse/langfuse-worker:", 1)[1]
    return web == worker and web.startswith("${LANGFUSE_VERSION:-")


def test_services_use_only_declared_volumes():
    declared = set(COMPOSE.get("volumes") or {})
    used = set()
    for name, service in COMPOSE["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount["source"]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source!r}"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    for store in ("postgres", "clickhouse", "minio", "redis"):
        assert COMPOSE["services"][store].get("volumes"), f"{store} keeps its data in no volume"


def test_every_variable_is_defined_in_the_env_example():
    defined = env_example()
    referenced = {m.group(1) for m in REFERENCE.finditer(COMPOSE_TEXT)}
    missing = sorted(referenced - defined.keys())
    assert not missing, f"deploy/docker-compose.yml uses variables .env.example does not define: {missing}"
    unused = sorted(defined.keys() - referenced)
    assert not unused, f".env.example defines variables the compose file never uses: {unused}"


def test_no_default_secret_outside_the_example():
    defined = env_example()
    secrets = {name for name in defined if SECRET_NAME.search(name)}
    assert {"POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD", "REDIS_AUTH", "MINIO_ROOT_PASSWORD", "NEXTAUTH_SECRET",
            "LANGFUSE_SALT", "LANGFUSE_ENCRYPTION_KEY", "LANGFUSE_SECRET_KEY"} <= secrets
    for match in REFERENCE.finditer(COMPOSE_TEXT):
        if match.group(1) in secrets:
            assert match.group(2) == ":?", f"secret {match.group(1)} must be required (${{{match.group(1)}:?...}}), got {match.group(0)}"
    for name in secrets:
        assert "CHANGEME" in defined[name], f".env.example gives {name} a value that is not an obvious placeholder"
    # secret-looking keys in the compose file are always variable references, never literals
    for service, spec in COMPOSE["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if SECRET_NAME.search(key) or key.endswith(("ACCESS_KEY", "_KEY_ID")) and "SECRET" in key:
                assert "${" in str(value), f"{service}: {key} is a literal secret"
    files = [DEPLOY / "docker-compose.yml", DEPLOY / "README.md", ROOT / "README.md", *ROOT.glob("examples/*.py"),
             *ROOT.glob("graphtune/**/*.py")]
    for path in files:
        text = path.read_text()
        for secret in KNOWN_DEFAULT_SECRETS:
            assert secret not in text, f"{path.relative_to(ROOT)} contains the default secret {secret!r}"
    assert not (DEPLOY / ".env").exists(), "deploy/.env holds live secrets and must not be in the repository"


def test_the_compose_file_refuses_to_start_without_secrets():
    """With an empty environment, every secret is a required variable: compose would stop with its message."""
    resolved = resolve(COMPOSE_TEXT)
    for name in ("POSTGRES_PASSWORD", "NEXTAUTH_SECRET", "LANGFUSE_ENCRYPTION_KEY", "MINIO_ROOT_PASSWORD"):
        assert f"<{name}>" in resolved


@pytest.mark.timeout(120)
def test_the_verify_example_sends_a_tagged_trace_and_reads_it_back(tmp_path):
    server = FakeLangfuse()
    try:
        env = {**os.environ, "LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test",
               "LANGFUSE_BASE_URL": server.url, "GRAPHTUNE_ENV": "verify", "GRAPHTUNE_SPILL_DIR": str(tmp_path)}
        env.pop("GRAPHTUNE_OTLP_ENDPOINT", None)
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "langfuse_verify.py"), "--timeout", "30"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=110)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 spans sent, 0 dropped" in done.stdout
        assert "read back: workflow=graphtune_verify variant=verify source=demo" in done.stdout
        tags = {tuple(o["tags"]) for o in server.observations}
        assert tags == {("env:verify", "service:graphtune", "workflow:graphtune_verify", "variant:verify", "source:demo")}
        assert all(o["userId"] and o["userId"] != "verify-user" for o in server.observations)
    finally:
        server.close()
