"""Curated mutation check: each mutant of `mutants.toml` must be killed by the tests that name its contract.

    python tests/mutants/check.py [--only ID ...] [--list] [--jobs N]

The tree (tracked and untracked, not ignored) is copied to one scratch folder per job; the named tests must
pass there unmutated (baseline). Then, for each mutant, its edits (file, exact old text, new text) are applied
to a scratch copy and its tests run with that copy first on sys.path, N mutants at a time. A mutant is

- killed: its tests collected and one failed on an assertion;
- survived: they passed, or failed only with another exception (the contract was not stated);
- stale: an edit's old text is not found exactly once in its file, or the mutated module no longer imports.

Prints `mutants killed: K/N`, names each survivor and stale mutant, and exits 1 unless every one is killed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import queue
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET

REPO = pathlib.Path(__file__).resolve().parents[2]
LIST = pathlib.Path(__file__).with_name("mutants.toml")
ASSERTION_PREFIXES = ("AssertionError", "assert ", "Failed: DID NOT RAISE", "Failed: DID NOT WARN")


def load_mutants(path: pathlib.Path = LIST) -> list[dict]:
    """The documented list; a malformed entry is an error naming it."""
    mutants = tomllib.loads(path.read_text())["mutant"]
    for i, m in enumerate(mutants):
        for key in ("id", "contract", "edits", "tests"):
            if not m.get(key):
                raise ValueError(f"{path}: mutant #{i + 1} ({m.get('id', '?')}) has no {key!r}")
        for e in m["edits"]:
            if set(e) != {"file", "old", "new"}:
                raise ValueError(f"{path}: mutant {m['id']}: an edit needs exactly file, old, new (got {sorted(e)})")
    ids = [m["id"] for m in mutants]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate mutant ids")
    return mutants


def scratch_copy(dest: pathlib.Path) -> None:
    """Tracked and untracked-but-not-ignored files of the working tree (no .venv, no run folders)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _shared_data() -> dict[str, str]:
    """The scratch copy lives elsewhere: point the tests at the checkout's `shared/data` (as conftest finds it)."""
    if os.environ.get("ICMA_SHARED_DATA"):
        return {}
    found = next((p / "shared" / "data" for p in [REPO, *REPO.parents] if (p / "shared" / "data").is_dir()), None)
    return {"ICMA_SHARED_DATA": str(found)} if found else {}


def _env(scratch: pathlib.Path) -> dict[str, str]:
    return {**os.environ, **_shared_data(), "PYTHONPATH": str(scratch), "JAX_PLATFORMS": "cpu",
            "PYTHONDONTWRITEBYTECODE": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def run_tests(scratch: pathlib.Path, tests: list[str], report: pathlib.Path, stop_first: bool) -> tuple[int, list[str]]:
    """(pytest exit code, messages of the failures) of `tests` run in the scratch copy."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           f"--junitxml={report}", *(["-x"] if stop_first else []), *tests]
    proc = subprocess.run(cmd, cwd=scratch, env=_env(scratch), capture_output=True, text=True)
    failures = []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            where = f"{case.get('classname')}::{case.get('name')}"
            failures += [(f.get("message") or "").strip() or f"{f.tag} in {where}" for f in case.findall("failure")]
            failures += [f"error in {where}: {(f.get('message') or '').strip()}" for f in case.findall("error")]
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not failures):
        tail = (proc.stdout + proc.stderr).strip().splitlines() or ["no output"]
        failures.append(f"pytest exit {proc.returncode}: {tail[-1]}")
    return proc.returncode, failures


def _module_of(rel: str) -> str | None:
    if not rel.endswith(".py") or not rel.startswith("icma_jax/"):
        return None
    return rel[:-3].replace("/", ".").removesuffix(".__init__")


def apply(scratch: pathlib.Path, mutant: dict) -> tuple[dict[pathlib.Path, str], str | None]:
    """Apply the edits; returns (original texts to restore, why the mutant is stale or None)."""
    originals: dict[pathlib.Path, str] = {}
    for e in mutant["edits"]:
        path = scratch / e["file"]
        if not path.is_file():
            return originals, f"{e['file']} does not exist"
        originals.setdefault(path, path.read_text())
        current = path.read_text()
        n = current.count(e["old"])
        if n != 1:
            return originals, f"{e['file']}: the old text occurs {n} times (must be exactly once): {e['old'][:60]!r}"
        path.write_text(current.replace(e["old"], e["new"]))
    modules = sorted({m for e in mutant["edits"] if (m := _module_of(e["file"]))})
    if modules:
        proc = subprocess.run([sys.executable, "-c", "import importlib, sys; [importlib.import_module(m) for m in "
                               "sys.argv[1:]]", *modules], cwd=scratch, env=_env(scratch), capture_output=True,
                              text=True)
        if proc.returncode:
            return originals, f"the mutated package does not import: {proc.stderr.strip().splitlines()[-1]}"
    return originals, None


def restore(originals: dict[pathlib.Path, str]) -> None:
    for path, text in originals.items():
        path.write_text(text)


def judge(scratch: pathlib.Path, mutant: dict, report: pathlib.Path) -> str:
    """'killed', or why not (SURVIVED ... / STALE ...), for one mutant in one scratch copy (restored after)."""
    originals, stale = apply(scratch, mutant)
    try:
        if stale:
            return f"STALE ({stale})"
        code, failures = run_tests(scratch, mutant["tests"], report, stop_first=True)
        if code == 1 and any(f.startswith(ASSERTION_PREFIXES) for f in failures):
            return "killed"
        if code == 0:
            return "SURVIVED (its tests pass)"
        first = (failures or [f"pytest exit {code}"])[0].splitlines()[0][:160]
        return f"SURVIVED (no assertion failed: {first})"
    finally:
        restore(originals)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="run only these mutant ids")
    ap.add_argument("--list", action="store_true", help="print the mutants and the contracts they break")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="mutants judged at once, each in its own scratch copy (default: the CPU count)")
    args = ap.parse_args(argv)
    mutants = load_mutants()
    if args.only:
        unknown = sorted(set(args.only) - {m["id"] for m in mutants})
        if unknown:
            ap.error(f"unknown mutant ids {unknown}")
        mutants = [m for m in mutants if m["id"] in args.only]
    if args.list:
        for m in mutants:
            print(f"{m['id']}: {m['contract']}\n    " + "\n    ".join(m["tests"]))
        return 0
    start = time.monotonic()
    jobs = max(1, min(args.jobs, len(mutants)))
    with tempfile.TemporaryDirectory(prefix="icma-mutants-") as tmp:
        copies = [pathlib.Path(tmp) / f"tree{j}" for j in range(jobs)]
        for scratch in copies:
            scratch_copy(scratch)
        all_tests = sorted({t for m in mutants for t in m["tests"]})
        xdist = ["-n", str(jobs)] if jobs > 1 else []
        code, failures = run_tests(copies[0], xdist + all_tests, pathlib.Path(tmp) / "baseline.xml", stop_first=False)
        if code != 0:
            print(f"baseline: the named tests fail on the unmutated tree (pytest exit {code}); fix them first:")
            print("\n".join(f"  {f.splitlines()[0][:200]}" for f in failures if f))
            return 1
        print(f"baseline: {len(all_tests)} test ids pass ({time.monotonic() - start:.0f} s)", flush=True)
        free: queue.Queue[pathlib.Path] = queue.Queue()
        for scratch in copies:
            free.put(scratch)

        def one(m: dict) -> tuple[dict, str, float]:
            scratch, t0 = free.get(), time.monotonic()
            try:
                return m, judge(scratch, m, pathlib.Path(tmp) / f"{m['id']}.xml"), time.monotonic() - t0
            finally:
                free.put(scratch)

        verdicts = {}
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            for m, verdict, seconds in pool.map(one, mutants):
                verdicts[m["id"]] = verdict
                print(f"{m['id']:>4} {verdict.split(' (')[0]:<9} {seconds:5.0f} s  {m['contract']}", flush=True)
    killed = sum(v == "killed" for v in verdicts.values())
    print(f"mutants killed: {killed}/{len(mutants)} ({time.monotonic() - start:.0f} s)")
    for m in mutants:
        if verdicts[m["id"]] != "killed":
            print(f"  {m['id']} [{m['contract']}]: {verdicts[m['id']]}")
    return 0 if killed == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
