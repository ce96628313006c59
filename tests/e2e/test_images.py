"""tests/e2e/images.py resolves a container's process as Kubernetes does, so the tests that
run pod templates as local processes start what a cluster would start (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from images import DOCKERFILES, expand, parse_dockerfile, resolve

GATEWAY = "ghcr.io/canvaschat/canvaschat-gateway:0.1.0"
OPERATOR = "ghcr.io/canvaschat/canvaschat-operator:0.1.0"
NON_ROOT = {"runAsNonRoot": True}


def test_kubelet_expansion() -> None:
    env = {"A": "one", "EMPTY": ""}
    assert expand("$(A)-$(EMPTY)-$(B)", env) == "one--$(B)"  # unknown references stay
    assert expand("$$(A) $$ $A $( $", env) == "$(A) $ $A $( $"  # $$ escapes; other $ stay
    assert expand('x=$(printf %s "$A")', env) == 'x=$(printf %s "$A")'  # shell in a script is not a variable


def test_our_dockerfiles() -> None:
    gateway = parse_dockerfile(DOCKERFILES["gateway"])
    assert gateway.entrypoint == (gateway.files["canvaschat-gateway"],) and gateway.cmd is None
    assert gateway.env["CANVASCHAT_STATIC_DIR"] == gateway.files["dist"]
    operator = parse_dockerfile(DOCKERFILES["operator"])
    assert operator.entrypoint == (operator.files["canvaschat-operator"],) and operator.cmd == ("run",)
    for config in (gateway, operator):
        assert config.user and config.user.split(":")[0].isdigit() and config.user.split(":")[0] != "0", config.user


def test_command_replaces_the_entrypoint_and_args_replace_cmd() -> None:
    binary = parse_dockerfile(DOCKERFILES["operator"]).files["canvaschat-operator"]
    env = {"ADDR": "0.0.0.0:8080"}
    assert resolve({"image": OPERATOR}, NON_ROOT, {}).argv == [binary, "run"]
    assert resolve({"image": OPERATOR, "args": ["run", "--metrics-addr=$(ADDR)"]}, NON_ROOT, env).argv == [
        binary, "run", "--metrics-addr=0.0.0.0:8080",
    ]
    # A command drops the image's CMD too.
    assert resolve({"image": OPERATOR, "command": ["/bin/true"]}, NON_ROOT, {}).argv == ["/bin/true"]
    assert resolve({"image": "canvaschat/gateway:dev"}, NON_ROOT, {}).argv == [
        parse_dockerfile(DOCKERFILES["gateway"]).files["canvaschat-gateway"]
    ]


def test_image_env_and_user() -> None:
    process = resolve({"image": GATEWAY}, NON_ROOT, {"CANVASCHAT_LOG_FORMAT": "text"})
    assert process.env["CANVASCHAT_LOG_FORMAT"] == "text"  # the container's env wins
    assert process.env["CANVASCHAT_STATIC_DIR"]
    assert process.uid == int(parse_dockerfile(DOCKERFILES["gateway"]).user.split(":")[0])
    assert resolve({"image": GATEWAY}, {"runAsUser": 7}, {}).uid == 7
    with pytest.raises(AssertionError, match="user 0"):
        resolve({"image": GATEWAY, "securityContext": {"runAsUser": 0}}, NON_ROOT, {})


def test_external_images_need_a_command() -> None:
    with pytest.raises(AssertionError, match="sets no command"):
        resolve({"name": "redis", "image": "redis:7.4-alpine"}, {}, {})
    redis = resolve({"image": "redis:7.4-alpine", "command": ["sh", "-c", "exec redis-server"]}, {"runAsUser": 999}, {})
    assert redis.argv == ["sh", "-c", "exec redis-server"] and redis.uid == 999
    with pytest.raises(AssertionError, match="runAsNonRoot"):
        resolve({"image": "redis:7.4-alpine", "command": ["redis-server"]}, NON_ROOT, {})


def test_stages_shell_form_and_inherited_cmd(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=debian\n"
        "FROM $BASE AS base\n"
        "ENV APP=/srv \\\n    MODE=x\n"
        "WORKDIR $APP\n"
        "CMD [\"serve\"]\n"
        "USER app\n"
        "FROM base\n"
        "COPY bin/tool lib/ ./\n"
        "ENTRYPOINT exec tool --mode $MODE\n"
    )
    config = parse_dockerfile(dockerfile)
    assert config.entrypoint == ("/bin/sh", "-c", "exec tool --mode $MODE")
    assert config.cmd is None, "ENTRYPOINT drops a CMD inherited from the base stage"
    assert (config.workdir, config.user, config.env) == ("/srv", "app", {"APP": "/srv", "MODE": "x"})
    assert config.files == {"tool": "/srv/tool", "lib": "/srv/lib"}
