"""docker-compose.yml, Dockerfile.api, Dockerfile.gpu and .dockerignore checked against the code.

No Docker engine is needed: the compose file is read with PyYAML (merge keys resolved as Compose
does) and ``${VAR...}`` interpolated here; every ``RDIO_*`` variable must be a Settings field,
every command must parse with the real ``rdio-api`` parser or Celery's own worker command, and the
services must share what they need to share (audio volume, database, broker).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shlex
import tomllib
import types
import typing
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml
from pydantic import BaseModel

from rdio_api.cli import build_parser
from rdio_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
API_DOCKERFILE = ROOT / "Dockerfile.api"
GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"

# What an operator puts in .env; the compose file needs exactly these from outside.
DEPLOY_ENV = {"POSTGRES_PASSWORD": "pg-secret", "FLOWER_USER": "admin", "FLOWER_PASSWORD": "fl-secret"}
APP_SERVICES = ("api", "worker-gpu", "worker-alerts", "flower")
TRANSCRIBE_TASK = "rdio_tasks.transcribe_call"


# --------------------------------------------------------------------------- helpers: compose


class MissingVariable(Exception):
    """Compose would refuse to start: a ``${VAR:?message}`` variable is not set."""


_VAR = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if unset else current
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing"
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture
def clean_rdio_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RDIO_* variables from the test process leak into Settings()."""
    for var in list(os.environ):
        if var.startswith("RDIO_"):
            monkeypatch.delenv(var)
    return monkeypatch


def service(compose: dict, name: str) -> dict:
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def service_env(svc: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    env = DEPLOY_ENV if env is None else env
    return {str(k): interpolate(str(v), env) for k, v in raw.items()}


def as_argv(value: str | list) -> list[str]:
    argv = shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    return [interpolate(a, DEPLOY_ENV) for a in argv]


def mounts(svc: dict) -> list[dict]:
    """Volumes of a service in long form: {'type', 'source', 'target', 'read_only'}."""
    result = []
    for item in svc.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                result.append({"type": "volume", "source": None, "target": parts[0], "read_only": False})
                continue
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            result.append({"type": kind, "source": source, "target": target, "read_only": ro})
        else:
            result.append({"read_only": False, **item})
    return result


def mount_covering(svc: dict, path: str) -> dict | None:
    """The mount whose target is ``path`` or the deepest parent of it."""
    best = None
    for m in mounts(svc):
        target = m["target"].rstrip("/") or "/"
        if (path == target or path.startswith(target.rstrip("/") + "/")) and (
            best is None or len(target) > len(best["target"])
        ):
            best = m
    return best


def built_dockerfile(svc: dict) -> Path | None:
    build = svc.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = ROOT / build.get("context", ".")
    return context / build.get("dockerfile", "Dockerfile")


# --------------------------------------------------------------------------- helpers: Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuations joined and comment lines dropped."""
    assert path.is_file(), f"{path.name} is missing"
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def final_base_image(instructions: list[tuple[str, str]]) -> str:
    args: dict[str, str] = {}
    for kw, rest in instructions:
        if kw == "FROM":
            break
        if kw == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
    image = final_stage(instructions)[0][1].split()[0]
    return interpolate(image, args)


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, rest in final_stage(instructions):
        if kw != "ENV":
            continue
        tokens = shlex.split(rest)
        if tokens and "=" not in tokens[0]:  # legacy `ENV NAME value`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            name, _, value = token.partition("=")
            env[name] = value
    return env


def exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str] | None:
    found = [rest for kw, rest in final_stage(instructions) if kw == keyword]
    if not found:
        return None
    value = found[-1]
    assert value.startswith("["), f"{keyword} must use the exec (JSON) form so signals reach the process"
    argv = json.loads(value)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def useradd_uid(instructions: list[tuple[str, str]]) -> int:
    runs = " ".join(rest for kw, rest in final_stage(instructions) if kw == "RUN")
    match = re.search(r"useradd\b[^&;]*?(?:--uid|-u)[ =](\d+)", runs)
    assert match, "the final stage creates no user with an explicit uid"
    return int(match.group(1))


# --------------------------------------------------------------------------- helpers: commands


def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model = _model_of(arg)
            if model is not None:
                return model
    return None


def settings_field(env_name: str) -> str | None:
    """Dotted Settings field that ``RDIO_A__B`` sets, or None when there is no such field."""
    if not env_name.startswith("RDIO_"):
        return None
    model: type[BaseModel] | None = Settings
    parts = env_name[len("RDIO_") :].lower().split("__")
    for part in parts:
        if model is None or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return ".".join(parts)


def console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["scripts"]


def parse_rdio_api(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`rdio-api {' '.join(argv)}` is rejected by rdio_api.cli.build_parser()")


def parse_celery_worker(argv: list[str]) -> tuple[str, click.Context]:
    """Check ``celery -A <app> worker ...`` with Celery's own worker command; (app module, context)."""
    from celery import Celery
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_cli

    assert argv[0] == "celery"
    rest = argv[1:]
    assert "worker" in rest, f"not a worker command: {argv}"
    head, tail = rest[: rest.index("worker")], rest[rest.index("worker") + 1 :]
    target = None
    while head:
        opt = head.pop(0)
        if opt in ("-A", "--app") and head:
            target = head.pop(0)
        elif opt.startswith("--app="):
            target = opt.split("=", 1)[1]
        else:
            pytest.fail(f"unexpected celery option before `worker`: {opt}")
    assert target, f"celery command without -A: {argv}"
    module = importlib.import_module(target.split(":")[0])
    app = getattr(module, "app", None) or getattr(module, "celery", None)
    assert isinstance(app, Celery), f"-A {target} has no Celery app"
    parent = click.Context(celery_cli, info_name="celery", obj=CLIContext(app, True, None, quiet=True))
    try:
        ctx = celery_cli.commands["worker"].make_context("worker", list(tail), parent=parent)
    except click.ClickException as exc:
        pytest.fail(f"celery worker rejects {tail}: {exc.format_message()}")
    return target, ctx


def check_command(argv: list[str]):
    assert argv, "empty command"
    if argv[0] == "celery":
        return parse_celery_worker(argv)[1]
    scripts = console_scripts()
    assert argv[0] in scripts, f"{argv[0]!r} is neither celery nor a console script of this project"
    assert scripts[argv[0]] == "rdio_api.cli:main"
    return parse_rdio_api(argv[1:])


def transcribe_queue() -> str:
    import celeryconfig

    route = celeryconfig.task_routes[TRANSCRIBE_TASK]
    return route["queue"]


# --------------------------------------------------------------------------- the checkers can fail


def test_helpers_reject_what_they_should() -> None:
    assert settings_field("RDIO_FLOWER__USER") == "flower.user"
    assert settings_field("RDIO_TRANSCRIPTION__MODELS_DIR") == "transcription.models_dir"
    assert settings_field("RDIO_TRANSCRIPTION__NO_SUCH_KEY") is None
    assert settings_field("RDIO_DATA_DIR__NESTED") is None
    assert settings_field("RDIO_AUDIO") is None
    with pytest.raises(pytest.fail.Exception):
        parse_rdio_api(["serve", "--no-such-flag"])
    with pytest.raises(pytest.fail.Exception):
        parse_celery_worker(["celery", "-A", "rdio_tasks", "worker", "--loglevel", "LOUD"])
    with pytest.raises(ModuleNotFoundError):
        parse_celery_worker(["celery", "-A", "no_such_module_here", "worker"])
    with pytest.raises(MissingVariable):
        interpolate("${X:?set X}", {})
    assert interpolate("${X:-d}/$$HOME/${Y}", {"Y": "y"}) == "d/$HOME/y"


# --------------------------------------------------------------------------- compose


def test_compose_has_the_services(compose: dict) -> None:
    assert {"redis", "postgres", *APP_SERVICES} <= set(compose["services"])


def test_rdio_env_vars_are_settings_fields(compose: dict) -> None:
    unknown = []
    for name, svc in compose["services"].items():
        for var in service_env(svc):
            if var.startswith("RDIO_") and var != "RDIO_CONFIG" and settings_field(var) is None:
                unknown.append(f"{name}: {var}")
    for path in (API_DOCKERFILE, GPU_DOCKERFILE):
        for var in dockerfile_env(dockerfile_instructions(path)):
            if var.startswith("RDIO_") and settings_field(var) is None:
                unknown.append(f"{path.name}: {var}")
    assert not unknown, f"RDIO_* variables that set no Settings field: {unknown}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_env_builds_valid_settings(
    compose: dict, name: str, clean_rdio_env: pytest.MonkeyPatch
) -> None:
    """Values too: Settings() from the service's environment validates (types, nested keys)."""
    env = service_env(service(compose, name))
    for var, value in env.items():
        if var.startswith("RDIO_") and var != "RDIO_CONFIG":
            clean_rdio_env.setenv(var, value)
    settings = Settings()
    assert str(settings.data_dir) == env["RDIO_DATA_DIR"]
    assert str(settings.audio_dir) == env["RDIO_AUDIO_DIR"]
    assert settings.broker_url == env["RDIO_BROKER_URL"]
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_rdio_config_is_a_read_only_bind_mount(compose: dict, name: str) -> None:
    svc = service(compose, name)
    path = service_env(svc).get("RDIO_CONFIG")
    assert path, f"{name}: RDIO_CONFIG is not set"
    mount = next((m for m in mounts(svc) if m["target"] == path), None)
    assert mount is not None, f"{name}: nothing is mounted at RDIO_CONFIG={path}"
    assert mount["type"] == "bind" and mount["source"] == "./config.yaml"
    assert mount["read_only"] is True, f"{name}: config.yaml must be mounted read-only"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_commands_parse(compose: dict, name: str) -> None:
    svc = service(compose, name)
    assert "command" in svc, f"{name}: no command"
    check_command(as_argv(svc["command"]))


def test_api_serves_on_its_published_port(compose: dict) -> None:
    svc = service(compose, "api")
    args = parse_rdio_api(as_argv(svc["command"])[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8080)
    assert any(str(p).split(":")[-1] == str(args.port) for p in svc.get("ports", []))
    assert f":{args.port}/health" in " ".join(svc["healthcheck"]["test"])


def test_flower_serves_on_its_published_port_with_auth(compose: dict) -> None:
    svc = service(compose, "flower")
    args = parse_rdio_api(as_argv(svc["command"])[1:])
    assert (args.command, args.host, args.port) == ("flower", "0.0.0.0", 5555)
    assert not args.no_auth, "flower must not run with --no-auth"
    assert any(str(p).split(":")[-1] == str(args.port) for p in svc.get("ports", []))
    assert f":{args.port}/healthcheck" in " ".join(svc["healthcheck"]["test"])


def test_flower_refuses_to_start_without_credentials(
    compose: dict, clean_rdio_env: pytest.MonkeyPatch
) -> None:
    raw = service(compose, "flower")["environment"]
    for var in ("RDIO_FLOWER__USER", "RDIO_FLOWER__PASSWORD"):
        assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(raw.get(var, ""))), (
            f"flower: {var} must be ${{NAME:?message}} so compose refuses to start without it"
        )
    for missing in ("FLOWER_USER", "FLOWER_PASSWORD"):
        env = {k: v for k, v in DEPLOY_ENV.items() if k != missing}
        with pytest.raises(MissingVariable):
            service_env(service(compose, "flower"), env)
        # An empty value counts as missing too (`:?`).
        with pytest.raises(MissingVariable):
            service_env(service(compose, "flower"), {**env, missing: ""})
    from rdio_tasks.flower_guard import flower_options

    # And were compose bypassed, rdio-api itself refuses to expose Flower without credentials.

    with pytest.raises(ValueError, match="credentials"):
        flower_options(Settings(), "0.0.0.0", 5555, no_auth=False)


def test_worker_consumes_the_transcription_queue(compose: dict) -> None:
    argv = as_argv(service(compose, "worker-gpu")["command"])
    target, ctx = parse_celery_worker(argv)
    assert target == "rdio_tasks"
    queue = transcribe_queue()
    assert queue in ctx.params["queues"], f"worker consumes {ctx.params['queues']}, tasks go to {queue!r}"
    assert ctx.params["concurrency"] == 1, "one pool process per GPU"
    assert ctx.params["task_events"], "-E: Flower needs task events"
    app = importlib.import_module(target).app
    app.loader.import_default_modules()
    assert TRANSCRIBE_TASK in app.tasks


def test_light_worker_consumes_the_tones_and_alerts_queues(compose: dict) -> None:
    """Every task's queue has a consumer: tone analysis and deliveries on the no-model worker."""
    from rdio_core.outbox import Queue, TaskRef

    args = check_command(as_argv(service(compose, "worker-alerts")["command"]))
    consumed = set(args.queues.split(",")) | {Queue.GPU.value}
    assert {ref.queue.value for ref in TaskRef} <= consumed


def test_api_and_worker_share_the_audio_volume(compose: dict) -> None:
    named = set(compose.get("volumes") or {})
    seen = {}
    for name in ("api", "worker-gpu", "worker-alerts"):  # tone analysis reads the call's audio too
        svc = service(compose, name)
        env = service_env(svc)
        audio = env.get("RDIO_AUDIO_DIR") or env["RDIO_DATA_DIR"].rstrip("/") + "/audio"
        mount = mount_covering(svc, audio)
        assert mount is not None, f"{name}: no volume holds the audio directory {audio}"
        assert mount["type"] == "volume" and mount["source"] in named, (
            f"{name}: {mount} is not a named volume"
        )
        seen[name] = (audio, mount["source"], mount["target"])
    assert seen["api"] == seen["worker-gpu"], f"api and worker-gpu do not share audio: {seen}"
    assert seen["api"] == seen["worker-alerts"], f"api and worker-alerts do not share audio: {seen}"


def test_flower_state_is_on_a_named_volume(compose: dict) -> None:
    svc = service(compose, "flower")
    data_dir = service_env(svc)["RDIO_DATA_DIR"]  # flower.db lives in data_dir
    mount = mount_covering(svc, data_dir)
    assert mount is not None and mount["type"] == "volume"
    assert mount["source"] in (compose.get("volumes") or {})


def test_worker_models_and_hf_cache_on_a_named_volume(compose: dict) -> None:
    svc = service(compose, "worker-gpu")
    env = {**dockerfile_env(dockerfile_instructions(GPU_DOCKERFILE)), **service_env(svc)}
    named = set(compose.get("volumes") or {})
    for var in ("RDIO_TRANSCRIPTION__MODELS_DIR", "HF_HOME"):
        assert var in env, f"worker-gpu: {var} is not set"
        mount = mount_covering(svc, env[var])
        assert mount is not None and mount["type"] == "volume" and mount["source"] in named, (
            f"worker-gpu: {var}={env[var]} is not on a named volume; models would be re-downloaded"
        )
        assert mount["source"] != mount_covering(svc, env["RDIO_AUDIO_DIR"])["source"]


def test_worker_reserves_a_gpu(compose: dict) -> None:
    svc = service(compose, "worker-gpu")
    devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    assert any(
        d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and d.get("count") in (1, "all")
        for d in devices
    ), f"worker-gpu has no NVIDIA GPU reservation: {devices}"


@pytest.mark.parametrize(
    ("name", "probe"),
    [("redis", "redis-cli ping"), ("postgres", "pg_isready"), ("api", "/health"), ("flower", "/healthcheck")],
)
def test_healthchecks(compose: dict, name: str, probe: str) -> None:
    check = service(compose, name).get("healthcheck") or {}
    assert not check.get("disable")
    test = check.get("test")
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
    assert probe in " ".join(test[1:])


def test_service_healthy_dependencies_have_healthchecks(compose: dict) -> None:
    services = compose["services"]
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            continue
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), (
                    f"{name} waits for {dep} to be healthy: it has no check"
                )
    api = services["api"]["depends_on"]
    assert {"redis", "postgres"} <= {d for d, s in api.items() if s.get("condition") == "service_healthy"}


def test_redis_keeps_an_append_only_file(compose: dict) -> None:
    svc = service(compose, "redis")
    assert str(svc["image"]).startswith("redis:7")
    argv = as_argv(svc["command"])
    assert "--appendonly" in argv and argv[argv.index("--appendonly") + 1] == "yes"
    mount = mount_covering(svc, "/data")
    assert mount is not None and mount["source"] in (compose.get("volumes") or {})


def test_database_and_broker_urls_point_at_the_services(compose: dict) -> None:
    pg = service(compose, "postgres")
    assert str(pg["image"]).startswith("postgres:16")
    assert mount_covering(pg, "/var/lib/postgresql/data")["source"] in (compose.get("volumes") or {})
    pg_env = service_env(pg)
    for name in APP_SERVICES:
        env = service_env(service(compose, name))
        db = urlsplit(env["RDIO_DATABASE_URL"])
        assert db.scheme in ("postgresql", "postgres")
        assert db.hostname == "postgres" and (db.port or 5432) == 5432
        assert db.username == pg_env.get("POSTGRES_USER", "postgres")
        assert db.password == pg_env["POSTGRES_PASSWORD"]
        assert db.path.lstrip("/") == pg_env.get("POSTGRES_DB", db.username) == "rdio"
        broker = urlsplit(env["RDIO_BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis" and (broker.port or 6379) == 6379


def test_build_sections_name_existing_dockerfiles(compose: dict) -> None:
    expected = {"api": API_DOCKERFILE, "flower": API_DOCKERFILE, "worker-gpu": GPU_DOCKERFILE}
    for name, dockerfile in expected.items():
        assert built_dockerfile(service(compose, name)) == dockerfile
    for name, svc in compose["services"].items():
        path = built_dockerfile(svc)
        if path is not None:
            assert path.is_file(), f"{name}: build.dockerfile {path.name} does not exist"


# --------------------------------------------------------------------------- Dockerfiles


def test_api_dockerfile_is_slim() -> None:
    instructions = dockerfile_instructions(API_DOCKERFILE)
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", final_base_image(instructions))
    body = "\n".join(f"{kw} {rest}" for kw, rest in instructions).lower()
    assert re.search(r"pip install\b", body)
    for forbidden in ("[worker", "worker]", "torch", "whisperx", "nvidia", "cuda"):
        assert forbidden not in body, f"Dockerfile.api must not install {forbidden!r}"
    stage = final_stage(instructions)
    assert "8080" in " ".join(rest for kw, rest in stage if kw == "EXPOSE").split()
    assert "/data" in " ".join(rest for kw, rest in stage if kw == "VOLUME")


def test_gpu_dockerfile_installs_the_worker() -> None:
    instructions = dockerfile_instructions(GPU_DOCKERFILE)
    assert re.fullmatch(
        r"nvidia/cuda:12\.\d+(\.\d+)?-(cudnn\d*-)?runtime-ubuntu\d\d\.04", final_base_image(instructions)
    )
    runs = " ".join(rest for kw, rest in instructions if kw == "RUN")
    assert re.search(r"pip install [^&;]*\[worker\]", runs), (
        "Dockerfile.gpu does not install the worker extra"
    )
    env = dockerfile_env(instructions)
    assert env.get("PYANNOTE_METRICS_ENABLED") == "false"
    assert env.get("HF_HOME") == "/models/hf"


@pytest.mark.parametrize("path", [API_DOCKERFILE, GPU_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_runs_as_non_root(path: Path) -> None:
    users = [rest.split(":")[0] for kw, rest in final_stage(dockerfile_instructions(path)) if kw == "USER"]
    assert users, f"{path.name}: no USER in the final stage (runs as root)"
    assert users[-1] not in ("root", "0")


def test_images_share_a_uid_for_the_audio_volume() -> None:
    api_uid = useradd_uid(dockerfile_instructions(API_DOCKERFILE))
    gpu_uid = useradd_uid(dockerfile_instructions(GPU_DOCKERFILE))
    assert api_uid == gpu_uid != 0, "api and worker write the same volume: same uid"


@pytest.mark.parametrize("path", [API_DOCKERFILE, GPU_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_commands_parse(path: Path) -> None:
    instructions = dockerfile_instructions(path)
    entrypoint = exec_form(instructions, "ENTRYPOINT") or []
    cmd = exec_form(instructions, "CMD") or []
    assert entrypoint + cmd, f"{path.name}: no CMD or ENTRYPOINT"
    check_command(entrypoint + cmd)


def test_dockerfile_default_commands() -> None:
    api = exec_form(dockerfile_instructions(API_DOCKERFILE), "CMD")
    assert api[:2] == ["rdio-api", "serve"]
    args = parse_rdio_api(api[1:])
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    gpu = exec_form(dockerfile_instructions(GPU_DOCKERFILE), "CMD")
    _, ctx = parse_celery_worker(gpu)
    assert transcribe_queue() in ctx.params["queues"]
    assert ctx.params["concurrency"] == 1


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    path = ROOT / ".dockerignore"
    assert path.is_file()
    patterns = [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "re-inclusions make this check meaningless"

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p.rstrip("/")) for p in patterns)

    for name in (".venv", ".git", "tests", "data", "config.yaml", ".pytest_cache", "rdio_api.egg-info"):
        assert ignored(name), f".dockerignore does not exclude {name}"
    for name in ("pyproject.toml", "README.md", "celeryconfig.py", "rdio_api", "rdio_core", "rdio_tasks"):
        assert not ignored(name), f".dockerignore excludes {name}, which `pip install .` needs"
