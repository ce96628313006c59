"""Lays out the final stage of a Dockerfile without Docker: the files its COPY lines put in
the image go into a layer directory, and its ENV, USER, EXPOSE, WORKDIR, ENTRYPOINT and CMD
become oci_image.py arguments. The Dockerfile stays the one list of what goes where; any
other instruction in the final stage is refused, so a change this cannot mirror fails here
instead of making a different image.

Usage: dockerfile_image.py DOCKERFILE LAYER_DIR STAGE:PATH=LOCAL_PATH...
Prints the oci_image.py arguments as a JSON list.

Each `COPY --from=STAGE PATH DEST` needs a STAGE:PATH=LOCAL_PATH mapping to the file or
directory built here that the stage's PATH holds (a release binary, frontend/dist).
Copies are owned by root with their modes kept, as COPY without --chown does.
"""

import json
import os
import shlex
import shutil
import sys


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every line, continuations joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def words(args: str) -> list[str]:
    """An exec-form (JSON) or shell-form list of words."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def main() -> None:
    dockerfile, layer_dir, *maps = sys.argv[1:]
    sources = dict(m.split("=", 1) for m in maps)
    steps = instructions(open(dockerfile).read())
    final = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    args: list[str] = []
    env: dict[str, str] = {}
    for word, rest in steps[final + 1 :]:
        if word == "COPY":
            parts = shlex.split(rest)
            flags = [p for p in parts if p.startswith("--")]
            paths = [p for p in parts if not p.startswith("--")]
            stage = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
            if len(stage) != 1 or len(flags) != 1 or len(paths) != 2:
                sys.exit(f"dockerfile_image: unsupported COPY in {dockerfile}: {rest}")
            key = f"{stage[0]}:{paths[0]}"
            if key not in sources:
                sys.exit(f"dockerfile_image: {dockerfile} copies {key}; give its local path")
            src, dest = sources.pop(key), os.path.join(layer_dir, paths[1].lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dest, symlinks=True)
            else:
                shutil.copy2(src, dest)
        elif word == "ENV":
            parts = shlex.split(rest)
            if len(parts) == 2 and "=" not in parts[0]:
                parts = [f"{parts[0]}={parts[1]}"]
            env.update(p.split("=", 1) for p in parts)
        elif word == "USER":
            args += ["--user", rest]
        elif word == "WORKDIR":
            args += ["--workdir", rest]
        elif word == "EXPOSE":
            args += [a for port in rest.split() for a in ("--port", port if "/" in port else f"{port}/tcp")]
        elif word in ("ENTRYPOINT", "CMD"):
            args += [f"--{word.lower()}", json.dumps(words(rest))]
        else:
            sys.exit(f"dockerfile_image: {word} in the final stage of {dockerfile} is not mirrored")
    if sources:
        sys.exit(f"dockerfile_image: {dockerfile} copies none of {sorted(sources)}")
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    # Ownership as COPY gives it: root, modes kept.
    for root, dirs, files in os.walk(layer_dir):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), 0, 0)
    print(json.dumps(args))


if __name__ == "__main__":
    main()
