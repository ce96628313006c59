"""What a container of a pod template runs, resolved as a cluster would: the image's
configuration (ENTRYPOINT, CMD, USER, WORKDIR, ENV) read from this repository's Dockerfiles,
the container's `command` and `args` applied over it, and `$(VAR)` references expanded from
the container's environment, as the kubelet and the container runtime do.

Tests that run a pod template's containers as local processes use this instead of assuming
what an image's entrypoint is, so a template or a Dockerfile that starts the wrong program
fails them.

As a script, `python images.py entrypoint DOCKERFILE` prints the path of the program the
image's ENTRYPOINT runs (the kind workflow copies the binaries out of the images from there).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Our images by component; an image reference names one when its repository's last part is
# the component, with or without the `canvaschat-` prefix (ghcr.io/canvaschat/canvaschat-gateway,
# canvaschat/gateway:dev).
DOCKERFILES = {"gateway": REPO / "gateway" / "Dockerfile", "operator": REPO / "operator" / "Dockerfile"}
DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's configuration that decide what a container runs. None means
    the Dockerfile does not set it (it comes from an external base image, unknown here)."""

    base: str
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    user: str | None = None
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Where the final stage's COPY instructions put things, by the base name of the source.
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Process:
    """A container's process as the runtime starts it."""

    argv: list[str]
    env: dict[str, str]
    uid: int | None
    workdir: str | None


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, `\\` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        pending = ""
        out.append((word.upper(), rest.strip()))
    if pending:
        raise ValueError(f"the last instruction ends in a line continuation: {pending!r}")
    return out


def substitute(value: str, env: dict[str, str]) -> str:
    """$VAR and ${VAR} from the stage's ENV (Dockerfile substitution in USER, WORKDIR, ENV, COPY)."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def command_form(rest: str, shell: tuple[str, ...]) -> tuple[str, ...]:
    """Exec form (a JSON array of strings) as written; anything else in the stage's SHELL."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None  # Docker runs an invalid JSON array in shell form
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    return (*shell, rest)


def parse_env(rest: str, env: dict[str, str]) -> dict[str, str]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
        return {words[0]: substitute(rest.split(None, 1)[1], env)}
    out: dict[str, str] = {}
    for word in words:
        key, _, value = word.partition("=")
        out[key] = substitute(value, {**env, **out})
    return out


def parse_dockerfile(path: Path) -> ImageConfig:
    """The final stage's configuration, following `FROM <earlier stage>` inheritance."""
    stages: dict[str, ImageConfig] = {}
    current: ImageConfig | None = None
    name: str | None = None
    shell = DEFAULT_SHELL
    cmd_in_stage = False
    for word, rest in instructions(path.read_text()):
        if word == "FROM":
            args = [a for a in rest.split() if not a.startswith("--")]
            if not args:
                raise ValueError(f"{path}: FROM without an image")
            parent = stages.get(args[0].lower())
            current = replace(parent, files={}) if parent else ImageConfig(base=args[0])
            name = args[2].lower() if len(args) == 3 and args[1].upper() == "AS" else None
            shell, cmd_in_stage = DEFAULT_SHELL, False
        elif current is None:
            if word != "ARG":
                raise ValueError(f"{path}: {word} before the first FROM")
            continue
        elif word == "ENTRYPOINT":
            # ENTRYPOINT drops a CMD inherited from the base image, not one set in this stage.
            current = replace(current, entrypoint=command_form(rest, shell), cmd=current.cmd if cmd_in_stage else None)
        elif word == "CMD":
            current, cmd_in_stage = replace(current, cmd=command_form(rest, shell)), True
        elif word == "SHELL":
            shell = tuple(json.loads(rest))
        elif word == "USER":
            current = replace(current, user=substitute(rest, current.env))
        elif word == "WORKDIR":
            current = replace(current, workdir=str(PurePosixPath(current.workdir or "/") / substitute(rest, current.env)))
        elif word == "ENV":
            current = replace(current, env={**current.env, **parse_env(rest, current.env)})
        elif word == "COPY":
            *sources, dest = [substitute(p, current.env) for p in shlex.split(rest) if not p.startswith("--")]
            target = PurePosixPath(current.workdir or "/") / dest
            files = dict(current.files)
            for source in sources:
                base = PurePosixPath(source).name
                files[base] = str(target / base if dest.endswith("/") or len(sources) > 1 else target)
            current = replace(current, files=files)
        if name is not None:
            stages[name] = current
    if current is None:
        raise ValueError(f"{path} has no FROM")
    return current


def dockerfile_for(image: str) -> Path | None:
    """Our Dockerfile that builds `image`, or None for an external image."""
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return DOCKERFILES.get(last.removeprefix("canvaschat-"))


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of command and args (k8s third_party/forked/golang/expansion):
    `$(VAR)` becomes VAR's value when the container defines VAR and stays as written when
    not, `$$` becomes `$`, any other `$` stays."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (close := text.find(")", i + 2)) != -1:
            var = text[i + 2 : close]
            out.append(env[var] if var in env else text[i : close + 1])
            i = close + 1
        else:
            out.append("$" + text[i + 1])
            i += 2
    return "".join(out)


def resolve(container: dict[str, Any], pod_security: dict[str, Any], env: dict[str, str]) -> Process:
    """The process `container` starts, given its environment as the kubelet builds it (env
    and envFrom): command replaces the image's ENTRYPOINT (and drops its CMD), args replace
    CMD, both expanded; the image's ENV under the container's; the user from runAsUser or the
    image's USER, refused as the kubelet refuses it when runAsNonRoot cannot hold."""
    image = container.get("image", "")
    dockerfile = dockerfile_for(image)
    config = parse_dockerfile(dockerfile) if dockerfile else None
    command = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        argv = command + args
    elif config is None:
        raise AssertionError(f"container {container.get('name')} of external image {image} sets no command: what it runs is unknown here")
    elif config.entrypoint is None and config.cmd is None:
        raise AssertionError(f"{dockerfile} sets neither ENTRYPOINT nor CMD: {image} runs what its base {config.base} says")
    else:
        argv = list(config.entrypoint or ()) + (args or list(config.cmd or ()))
    assert argv, f"container {container.get('name')} of {image} runs nothing"

    security = {**pod_security, **(container.get("securityContext") or {})}
    uid: int | None = security.get("runAsUser")
    if uid is None and config is not None and config.user is not None:
        user = config.user.split(":", 1)[0]
        if security.get("runAsNonRoot"):
            assert user.isdigit(), f"runAsNonRoot with {image}'s non-numeric USER {user!r}: the kubelet cannot verify it and refuses to start it"
        uid = int(user) if user.isdigit() else None
    if security.get("runAsNonRoot"):
        assert uid is not None, f"runAsNonRoot, but neither runAsUser nor {image}'s USER is known: the kubelet would refuse an image running as root"
        assert uid != 0, f"runAsNonRoot with user 0 for {image}: the kubelet refuses to start it"
    return Process(
        argv=argv,
        env={**(config.env if config else {}), **env},
        uid=uid,
        workdir=container.get("workingDir") or (config.workdir if config else None),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "entrypoint":
        print("usage: images.py entrypoint DOCKERFILE", file=sys.stderr)
        return 2
    config = parse_dockerfile(Path(argv[2]))
    program = (config.entrypoint or config.cmd or ("",))[0]
    if not program.startswith("/"):
        print(f"{argv[2]}: the image runs {program!r}, not a path", file=sys.stderr)
        return 1
    print(program)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
