"""Exit 0 when a Go binary was built from a wrapper module's pinned modules with the given
package and tags, according to the build info Go embeds in every binary.

Usage: buildinfo_matches.py BINARY WRAPPER_DIR PACKAGE TAGS [EXPECTED_LINE ARG...]

Go does not record -ldflags in builds made with -trimpath, so the version the flags stamp
is checked by running BINARY ARG... and comparing the first line it prints.
"""

import json
import pathlib
import subprocess
import sys


def main() -> int:
    binary, wrapper, package, tags = sys.argv[1:5]
    out = subprocess.run(["go", "version", "-m", "-json", binary], capture_output=True, text=True)
    if out.returncode != 0:
        return 1
    info = json.loads(out.stdout)
    settings = {s["Key"]: s["Value"] for s in info.get("Settings", [])}
    expected = {"-tags": tags or None, "-trimpath": "true", "CGO_ENABLED": "0"}
    if info.get("Path") != package or any(settings.get(k) != v for k, v in expected.items()):
        return 1
    sums = set(pathlib.Path(wrapper, "go.sum").read_text().splitlines())
    for module in [info.get("Main", {}), *info.get("Deps", [])]:
        used = module.get("Replace") or module
        if f"{used.get('Path')} {used.get('Version')} {used.get('Sum')}" not in sums:
            return 1
    if len(sys.argv) > 5:
        probe = subprocess.run([binary, *sys.argv[6:]], capture_output=True, text=True, timeout=30)
        lines = probe.stdout.splitlines()
        if probe.returncode != 0 or not lines or lines[0].strip() != sys.argv[5]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
