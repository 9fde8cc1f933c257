"""Mutation testing of the modules where a one-line bug silently corrupts data (issue 19).

mutmut 3 runs each module as its own session, in its own directory under ``--workdir``
(``build/mutation/<module>``): ``src`` and ``tests`` link to the tree under test, and a copy of
``pyproject.toml`` carries that module's ``[tool.mutmut]`` (which files to mutate, which test files
to run). mutmut records once which of those tests call which function, then runs each mutant
against only those tests, in a forked child of a process that already imported everything.

The tests run as on a bare clone: ``CHATFMT_TESTDATA`` points nowhere, so tests that need
``../shared`` skip, and a mutant only counts as killed by a self-contained reference.

    python scripts/mutation.py run                       # every module (make mutation)
    python scripts/mutation.py run --module encode       # one module
    python scripts/mutation.py sample --count 40 --seed 7  # the bounded CI sample
    python scripts/mutation.py report                    # the table from the last run

A survivor is either killed by a new test or listed in ``mutation/justified.toml`` as equivalent
(the mutant cannot change behaviour), with a one-line reason. The score is
killed / (total - justified), and the raw killed / total is shown beside it. ``sample`` (and
``run --check``) exit 1 when a mutant survives that is not justified.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
JUSTIFIED = REPO / "mutation" / "justified.toml"

# mutmut's exit-code classes; a timeout or a crash of the mutated code counts as killed (the test
# run did not pass), "no tests" means no test in the selection calls the mutated function
KILLED = {1, 3, 36, 24, -24, 152, 255, -11, -9, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass(frozen=True)
class Module:
    """One mutation session: the files mutated, the tests run, and (optionally) which functions."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    # mutant-name globs (mutmut's names: ``chatfmt.mod.x_func__mutmut_3``, ``chatfmt.mod.xǁClassǁmethod__mutmut_3``)
    only: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = field(default=())
    # mutant-name globs left out, with the reason in the docs: functions that only run at import time
    # (mutmut switches a mutant in when a function is called, after the module was imported)
    skip: tuple[str, ...] = ()


MODULES: dict[str, Module] = {
    # encode and labels: ids, trained labels, control-token splitting, truncation, the fast path
    "encode": Module(
        files=("src/chatfmt/encode.py",),
        tests=(
            "tests/test_encode_spm_vectors.py",
            "tests/mutation/test_encode_mutants.py",
        ),
    ),
    # the output parser's marker handling: the streaming scanner (markers by text and by token id)
    # and the parser state machine around it
    "parser": Module(
        files=("src/chatfmt/toolcalls/scanner.py", "src/chatfmt/toolcalls/parser.py"),
        tests=(
            "tests/toolcalls/test_marker_tokens.py",
            "tests/toolcalls/test_lenient.py",
            "tests/toolcalls/test_roundtrip_builtin.py",
            "tests/mutation/test_parser_mutants.py",
        ),
    ),
    # message validation
    "messages": Module(
        files=("src/chatfmt/messages.py",),
        tests=("tests/test_messages.py", "tests/mutation/test_messages_mutants.py"),
        # message validation only (the record-kind parsers around it are out of this session)
        only=tuple(
            f"chatfmt.messages.x_{f}__mutmut_*"
            for f in (
                "parse_message",
                "_parse_tool_call",
                "_loss_flags",
                "_train_detail",
                "_zero_one",
                "_opt_str",
                "validate_conversation",
                "validate_tools",
                "_normalize_tool",
                "_check_function",
            )
        ),
    ),
    # the SentencePiece and tiktoken adapters
    "tokenizers": Module(
        files=("src/chatfmt/tokenizers/sentencepiece.py", "src/chatfmt/tokenizers/tiktoken_file.py"),
        tests=(
            "tests/tokenizers/test_sentencepiece.py",
            "tests/tokenizers/test_tiktoken.py",
            "tests/test_encode_spm_vectors.py",
            "tests/mutation/test_tokenizers_mutants.py",
        ),
        # the Llama 3/4 special-token lists are built once, into FLAVORS, when the module is imported;
        # test_llama3_and_llama4_flavors_are_metas pins them against Meta's own lists
        skip=(
            "chatfmt.tokenizers.tiktoken_file.x__llama3_specials__mutmut_*",
            "chatfmt.tokenizers.tiktoken_file.x__llama4_specials__mutmut_*",
        ),
    ),
    # the packer (train/writers.py's Packer)
    "packer": Module(
        files=("src/chatfmt/train/writers.py",),
        tests=("tests/train/test_trl_packing.py", "tests/mutation/test_packer_mutants.py"),
        only=("chatfmt.train.writers.xǁPackerǁ*",),
    ),
}

PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-m", "not slow", "-W", "ignore"]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(name: str, tree: Path, workdir: Path) -> Path:
    """The session directory of one module: links to the tree's src and tests, pyproject with [tool.mutmut]."""
    mod = MODULES[name]
    run = workdir / name
    run.mkdir(parents=True, exist_ok=True)
    for part in ("src", "tests"):
        link = run / part
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(tree / part)
    tests = [t for t in mod.tests if (tree / t).exists()]
    config = (tree / "pyproject.toml").read_text()
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {_toml_list(list(mod.files))}\n"
        f"pytest_add_cli_args = {_toml_list(PYTEST_ARGS + list(mod.pytest_args))}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        "use_git_change_detection = false\n"
        "timeout_multiplier = 20.0\n"
        "timeout_constant = 10.0\n"
    )
    (run / "pyproject.toml").write_text(config)
    return run


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CI", None)  # missing ../shared skips here (the bare-clone net), it is not an error
    env["CHATFMT_TESTDATA"] = "/nonexistent/chatfmt-testdata"
    return env


def _mutmut(run: Path, args: list[str], *, jobs: int) -> int:
    cmd = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *args]
    print(f"[{run.name}] {' '.join(cmd[3:6])} run ... ({len(args)} names)", flush=True)
    return subprocess.call(cmd, cwd=run, env=_env())


def results(run: Path) -> dict[str, int | None]:
    """Exit code by mutant name, from mutmut's .meta files in one session directory."""
    out: dict[str, int | None] = {}
    for meta in (run / "mutants").rglob("*.py.meta"):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def selected(name: str, codes: dict[str, int | None]) -> dict[str, int | None]:
    only, skip = MODULES[name].only, MODULES[name].skip
    return {
        k: v
        for k, v in codes.items()
        if (not only or any(fnmatch(k, g) for g in only)) and not any(fnmatch(k, g) for g in skip)
    }


def _function(mutant: str) -> str:
    return mutant.rsplit("__mutmut_", 1)[0]


def diff_of(run: Path, mutant: str) -> list[str]:
    """The changed lines of a mutant (``-old`` / ``+new``), read from mutmut's mutated file."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant], cwd=run, env=_env(), capture_output=True, text=True
    ).stdout
    return [
        line.rstrip()
        for line in out.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()
    ]


def _key(function: str, diff: list[str]) -> tuple[str, tuple[str, ...]]:
    return function, tuple(" ".join(line.split()) for line in diff)


def justified() -> list[dict[str, Any]]:
    if not JUSTIFIED.exists():
        return []
    return list(tomllib.loads(JUSTIFIED.read_text()).get("equivalent", []))


def _justified_keys() -> set[tuple[str, tuple[str, ...]]]:
    """Justified mutants by (function, changed lines): mutmut renumbers mutants when a function changes,
    the changed lines of an equivalent mutant stay the same."""
    return {
        _key(_function(e["mutant"]), [ln for ln in e["diff"].splitlines() if ln.strip()]) for e in justified()
    }


def classify(name: str, run: Path, codes: dict[str, int | None]) -> dict[str, Any]:
    keys = _justified_keys()
    row: dict[str, Any] = {
        "module": name,
        "total": 0,
        "killed": 0,
        "justified": 0,
        "survived": 0,
        "no_tests": 0,
    }
    survivors: list[dict[str, Any]] = []
    for mutant, code in sorted(codes.items()):
        if code is None:
            continue
        row["total"] += 1
        if code in KILLED:
            row["killed"] += 1
            continue
        diff = diff_of(run, mutant)
        if _key(_function(mutant), diff) in keys:
            row["justified"] += 1
            continue
        row["survived" if code in SURVIVED else "no_tests"] += 1
        survivors.append(
            {"mutant": mutant, "status": "survived" if code in SURVIVED else f"exit {code}", "diff": diff}
        )
    live = row["total"] - row["justified"]
    row["score"] = round(100 * row["killed"] / live, 1) if live else 100.0
    row["raw"] = round(100 * row["killed"] / row["total"], 1) if row["total"] else 100.0
    row["survivors"] = survivors
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| module | mutants | killed | justified (equivalent) | survived | no tests | score | raw killed/total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['module']} | {r['total']} | {r['killed']} | {r['justified']} | {r['survived']} | {r['no_tests']} "
            f"| {r['score']}% | {r['raw']}% |"
        )
    return "\n".join(lines)


def _print_rows(rows: list[dict[str, Any]], out: Path | None) -> int:
    print(table(rows))
    bad = 0
    for r in rows:
        for s in r["survivors"]:
            bad += 1
            print(f"\n{s['status']}: {s['mutant']}")
            print("\n".join("    " + ln for ln in s["diff"]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1))
    return bad


def _tree(args: argparse.Namespace) -> Path:
    return Path(args.tree).resolve() if args.tree else REPO


def _generate(run: Path, *, jobs: int) -> None:
    """Generate the mutants and the test stats only: an impossible mutant name, so nothing else runs."""
    cmd = [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "mutmut",
        "run",
        "--max-children",
        str(jobs),
        "none.x_none__mutmut_0",
    ]
    subprocess.call(cmd, cwd=run, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _pick(name: str, run: Path, args: argparse.Namespace, count: int) -> list[str]:
    """The mutants to run: ``--mutant`` globs plus a random sample of ``count``, seeded by module and seed."""
    if not (run / "mutants").exists():
        _generate(run, jobs=args.jobs)
    every = sorted(selected(name, results(run)))
    names = {m for m in every if any(fnmatch(m, g) for g in args.mutant)}
    if count:
        names |= set(random.Random(f"{args.seed}:{name}").sample(every, min(count, len(every))))
    print(f"[{name}] {len(names)} of {len(every)} mutants (seed {args.seed})", flush=True)
    return sorted(names)


def cmd_run(args: argparse.Namespace) -> int:
    tree, workdir = _tree(args), Path(args.workdir).resolve()
    rows = []
    for name in args.module or list(MODULES):
        run = prepare(name, tree, workdir)
        if args.fresh and (run / "mutants").exists():
            shutil.rmtree(run / "mutants")
        names = (
            _pick(name, run, args, args.sample) if (args.sample or args.mutant) else list(MODULES[name].only)
        )
        _mutmut(run, names, jobs=args.jobs)
        codes = selected(name, results(run))
        if args.sample:
            codes = {k: codes.get(k) for k in names}
        rows.append(classify(name, run, codes))
    bad = _print_rows(rows, workdir / "report.json")
    return 1 if (args.check and bad) else 0


def cmd_sample(args: argparse.Namespace) -> int:
    """A seeded random sample of mutants over the modules; fails on an unjustified survivor."""
    tree, workdir = _tree(args), Path(args.workdir).resolve()
    modules = args.module or list(MODULES)
    rows = []
    for name in modules:
        run = prepare(name, tree, workdir)
        if (run / "mutants").exists():
            shutil.rmtree(run / "mutants")
        pick = _pick(name, run, args, max(1, args.count // len(modules)))
        _mutmut(run, pick, jobs=args.jobs)
        codes = results(run)
        rows.append(classify(name, run, {k: codes.get(k) for k in pick}))
    bad = _print_rows(rows, workdir / "sample.json")
    if bad:
        print(f"\n{bad} sampled mutant(s) survived and are not justified in {JUSTIFIED.relative_to(REPO)}")
    return 1 if bad else 0


def cmd_report(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    rows = [
        classify(name, workdir / name, selected(name, results(workdir / name)))
        for name in (args.module or list(MODULES))
        if (workdir / name / "mutants").exists()
    ]
    _print_rows(rows, workdir / "report.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("run", "sample", "report"):
        p = sub.add_parser(cmd)
        p.add_argument("--module", action="append", choices=list(MODULES))
        p.add_argument("--workdir", default=str(REPO / "build" / "mutation"))
        p.add_argument("--tree", help="the source tree to mutate (default: this checkout)")
        p.add_argument("--jobs", type=int, default=2, help="mutants run at once (mutmut --max-children)")
        if cmd == "run":
            p.add_argument("--fresh", action="store_true", help="forget the previous results of the session")
            p.add_argument("--check", action="store_true", help="exit 1 on a survivor that is not justified")
            p.add_argument(
                "--sample", type=int, default=0, help="a seeded random sample of this many mutants per module"
            )
        if cmd == "sample":
            p.add_argument("--count", type=int, default=40)
        if cmd in ("run", "sample"):
            p.add_argument("--mutant", action="append", default=[], help="also run these mutants (globs)")
            p.add_argument("--seed", type=int, default=int(os.environ.get("MUTATION_SEED", "19")))
    args = ap.parse_args(argv)
    return {"run": cmd_run, "sample": cmd_sample, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
