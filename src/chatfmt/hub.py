"""Hugging Face Hub model ids wherever chatfmt takes a path (formats, tokenizers, models).

The rule, in this order:

1. a string that names an existing local file or directory is that path (always; a ``pathlib.Path``
   is always a path);
2. for a format, a built-in name (``qwen2.5``, ``chatml``, ...) is the built-in (no built-in name
   has a ``/``, so no Hub id can be one);
3. a string of the form ``ORG/NAME[@REVISION][:FILE]`` is a Hub model repository: ``@REVISION`` is a
   branch, tag or commit (default ``main``), ``:FILE`` names one file in it (a ``.gguf``). A string
   whose last part ends in a suffix chatfmt reads as a file (``.jinja``, ``.json``, ``.gguf``,
   ``.toml``, ...) is a path, never a Hub id, so a mistyped ``templates/chat.jinja`` still says
   "no such file";
4. anything else is a path (and a missing one is "no such file or directory").

Only the files needed are downloaded, through ``huggingface_hub`` and its cache and conventions
(``HF_HUB_CACHE`` / ``HF_HOME``, ``HF_HUB_OFFLINE=1`` = the cache only, ``HF_TOKEN``, ``HF_ENDPOINT``,
read when an id is resolved; huggingface_hub's own progress bar):

- for a format or a tokenizer, the tokenizer and config files (``tokenizer.json``,
  ``tokenizer_config.json``, ``special_tokens_map.json``, ``chat_template.jinja`` / ``.json``,
  ``additional_chat_templates/*.jinja``, ``tokenizer.model``, ``tekken.json``, ``vocab.json`` +
  ``merges.txt``, ``*.tiktoken``, ``added_tokens.json``, ``config.json``,
  ``generation_config.json``; ``original/tokenizer.model`` only when there is nothing else), or the
  named ``:FILE.gguf`` (a GGUF-only repository must name one: the whole file is downloaded);
- for a model, those plus the weights its backend runs: the named GGUF (``:FILE.gguf`` or
  ``gguf_file=`` / ``--gguf-file``); else, unless the backend is llama.cpp, the safetensors
  transformers reads (the shards ``model.safetensors.index.json`` lists, or ``model.safetensors``;
  Mistral's duplicate ``consolidated*.safetensors`` is skipped); else the repository's only GGUF
  (several: name one). Pickle ``*.bin`` weights are never downloaded.

Every failure is a :class:`~chatfmt.errors.HubError` with one line: a missing repository, revision
or file, a gated repository without a token, an id not in the cache while offline, an unreachable
Hub.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .errors import (
    HubError,
    HubFileNotFoundError,
    HubGatedRepoError,
    HubNotCachedError,
    HubRepoNotFoundError,
)

Kind = Literal["tokenizer", "model"]

#: suffixes that make a string a file path, never a Hub id
PATH_SUFFIXES = frozenset(
    {".jinja", ".j2", ".json", ".jsonl", ".gguf", ".toml", ".model", ".tiktoken", ".txt", ".safetensors", ".bin", ".parquet"}
)

CONFIG_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
    "config.json",
    "generation_config.json",
)
TOKENIZER_FILES = ("tokenizer.model", "tekken.json", "tokenizer.json", "vocab.json", "merges.txt")

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_ID = re.compile(rf"(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[A-Za-z0-9_./-]+))?(?::(?P<file>[A-Za-z0-9_./ +-]+))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class HubRef:
    """A parsed Hub id: ``repo`` (``org/name``), ``revision`` (``None``: the default branch) and
    ``filename`` (one file in the repository, ``None``: chosen by kind)."""

    repo: str
    revision: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        text = self.repo
        if self.revision:
            text += f"@{self.revision}"
        if self.filename:
            text += f":{self.filename}"
        return text


def parse_hub_id(text: str) -> HubRef | None:
    """``ORG/NAME[@REVISION][:FILE]`` parsed, or ``None`` when ``text`` does not have that form (or
    ends in a file suffix: see the module doc). Says nothing about local paths."""
    m = _ID.fullmatch(text)
    if m is None:
        return None
    repo, rev, file = m.group("repo"), m.group("rev"), m.group("file")
    if "--" in repo or ".." in repo:
        return None
    if rev is None and file is None and PurePosixPath(repo).suffix.lower() in PATH_SUFFIXES:
        return None
    if rev is not None and (".." in rev or rev.startswith("/") or rev.endswith("/")):
        return None
    if file is not None and (file.startswith("/") or ".." in PurePosixPath(file).parts):
        return None
    return HubRef(repo, rev, file)


def hub_ref(source: Any) -> HubRef | None:
    """The Hub id ``source`` is, by the rule in the module doc: ``None`` for anything that is not a
    ``str``, names an existing local path, or is not of the form ``ORG/NAME[@REV][:FILE]``."""
    if not isinstance(source, str) or not source:
        return None
    if Path(source).expanduser().exists():
        return None
    return parse_hub_id(source)


def is_hub_id(source: Any) -> bool:
    """Whether ``source`` is resolved on the Hub (see :func:`hub_ref`)."""
    return hub_ref(source) is not None


# -- huggingface_hub's conventions, read at call time ----------------------------------------------


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The Hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``
    (huggingface_hub's rule, read now rather than when it was imported)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: the cache only, no network."""
    if _true(os.environ.get("HF_HUB_OFFLINE")) or _true(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    try:
        from huggingface_hub import constants
    except ImportError:
        return "https://huggingface.co"
    return str(constants.ENDPOINT).rstrip("/")


# -- which files ---------------------------------------------------------------------------------


def tokenizer_files(files: list[str]) -> list[str]:
    """The tokenizer and config files of a repository listing (see the module doc)."""
    chosen = [
        f
        for f in files
        if f in CONFIG_FILES
        or f in TOKENIZER_FILES
        or (f.startswith("additional_chat_templates/") and f.endswith(".jinja") and f.count("/") == 1)
        or ("/" not in f and f.endswith(".tiktoken"))
    ]
    has_tokenizer = any(f in TOKENIZER_FILES or f.endswith(".tiktoken") for f in chosen)
    if not has_tokenizer and "original/tokenizer.model" in files:
        chosen.append("original/tokenizer.model")
    return chosen


def _ggufs(files: list[str]) -> list[str]:
    return sorted(f for f in files if f.lower().endswith(".gguf"))


def _listed(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _safetensors(ref: HubRef, files: list[str], index: dict[str, Any] | None) -> list[str]:
    """The safetensors weights transformers reads from the repository's top level."""
    if index is not None:
        weight_map = index.get("weight_map")
        if isinstance(weight_map, dict):
            shards = sorted({str(v) for v in weight_map.values()})
            missing = [s for s in shards if s not in files]
            if missing:
                raise HubFileNotFoundError(
                    f"model.safetensors.index.json names shards the repository does not hold: {_listed(missing)}",
                    source=str(ref),
                )
            return ["model.safetensors.index.json", *shards]
    if "model.safetensors" in files:
        return ["model.safetensors"]
    return sorted(f for f in files if "/" not in f and f.endswith(".safetensors") and not f.startswith("consolidated"))


def _check_file(ref: HubRef, files: list[str], offline: bool) -> None:
    if ref.filename in files:
        return
    where = f"the cached snapshot of {ref.repo} (HF_HUB_OFFLINE is set)" if offline else f"the repository {ref.repo}"
    ggufs = _ggufs(files)
    hint = f"; its GGUF files: {_listed(ggufs)}" if ggufs else ""
    raise HubFileNotFoundError(f"no file {ref.filename!r} in {where}{hint}", source=str(ref))


def _choose(ref: HubRef, kind: Kind, backend: str, files: list[str], offline: bool, read_index: Any) -> tuple[list[str], str | None]:
    """``(files to download, the file the caller gets, or None: the snapshot folder)``."""
    base = tokenizer_files(files)
    if ref.filename is not None:
        _check_file(ref, files, offline)
        if not ref.filename.lower().endswith(".gguf"):
            raise HubError(f"{ref.filename!r}: only a .gguf file can be named after ':' (the weights to run, or read a template and vocabulary from)", source=str(ref))
        return [*base, ref.filename], ref.filename
    ggufs = _ggufs(files)
    if kind == "tokenizer":
        if any(f in CONFIG_FILES or f in TOKENIZER_FILES for f in base):
            return base, None
        if ggufs:
            raise HubError(
                f"no tokenizer or chat template files, only GGUF files: name one as {ref}:FILE.gguf "
                f"(its metadata holds both; the whole file is downloaded): {_listed(ggufs)}",
                source=str(ref),
            )
        raise HubError("no tokenizer or chat template files in this repository", source=str(ref))
    # a model
    if backend != "llama.cpp":
        index = read_index() if "model.safetensors.index.json" in files else None
        weights = _safetensors(ref, files, index)
        if weights:
            return [*base, *weights], None
        if backend == "transformers" and not ggufs:
            raise HubError("no safetensors weights for transformers (pickle *.bin weights are not downloaded)", source=str(ref))
    if len(ggufs) == 1:
        return [*base, ggufs[0]], ggufs[0]
    if ggufs:
        raise HubError(
            f"several GGUF files; name one as {ref.repo}{'@' + ref.revision if ref.revision else ''}:FILE.gguf "
            f"(CLI: --gguf-file FILE): {_listed(ggufs)}",
            source=str(ref),
        )
    what = "cached snapshot (HF_HUB_OFFLINE is set)" if offline else "repository"
    raise HubError(f"no weights chatfmt can run in this {what}: no GGUF file and no safetensors (pickle *.bin weights are not downloaded)", source=str(ref))


# -- resolving -----------------------------------------------------------------------------------

_MEMO: dict[tuple[Any, ...], Path] = {}


def _import_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as e:
        raise HubError(f"Hub model ids need huggingface_hub: pip install 'chatfmt[hf]' ({e})") from None
    return huggingface_hub


def _hub_error(e: BaseException, ref: HubRef, *, endpoint: str, cache: Path, offline: bool) -> HubError:
    """One line for an error huggingface_hub raised."""
    from huggingface_hub import errors as hf

    spec = str(ref)
    if isinstance(e, hf.GatedRepoError):
        return HubGatedRepoError(_gated_message(ref, endpoint, token=_has_token()), source=spec)
    if isinstance(e, hf.RevisionNotFoundError):
        return HubRepoNotFoundError(f"no revision {ref.revision!r} in the repository {ref.repo}", source=spec)
    if isinstance(e, hf.RepositoryNotFoundError):
        return HubRepoNotFoundError(
            f"not a local path, and no model repository {ref.repo} on the Hub ({endpoint}; a private one needs HF_TOKEN)",
            source=spec,
        )
    if isinstance(e, hf.EntryNotFoundError) and not isinstance(e, hf.LocalEntryNotFoundError):
        return HubFileNotFoundError(f"a file is missing from the repository {ref.repo}: {_gist(e)}", source=spec)
    if offline or isinstance(e, hf.OfflineModeIsEnabled):
        return HubNotCachedError(
            f"not a local path, and not in the Hub cache {cache} (HF_HUB_OFFLINE is set, so nothing is downloaded)",
            source=spec,
        )
    if isinstance(e, hf.HfHubHTTPError) and getattr(e, "response", None) is not None:
        status = e.response.status_code
        return HubError(f"the Hub ({endpoint}) answered {status} for {ref.repo}: {_gist(e)}", source=spec)
    return HubError(
        f"cannot reach the Hub ({endpoint}: {type(e).__name__}) and {ref.repo} is not in the cache {cache} "
        "(HF_HUB_OFFLINE=1 uses the cache only)",
        source=spec,
    )


def _gated_message(ref: HubRef, endpoint: str, *, token: bool) -> str:
    how = (
        "the token in use has no access: accept its conditions with that account"
        if token
        else "accept its conditions on the Hub and set HF_TOKEN (or run `hf auth login`)"
    )
    return f"a gated repository: {how} ({endpoint}/{ref.repo})"


def _gist(e: BaseException) -> str:
    """The informative line of a huggingface_hub error (it names the URL), else its first line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "url" in ln.lower():
            return ln
    return lines[0] if lines else type(e).__name__


def _has_token() -> bool:
    try:
        from huggingface_hub import get_token

        return get_token() is not None
    except Exception:  # noqa: BLE001 - no token source readable: no token
        return False


def _offline_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors as hf

    out: list[type[BaseException]] = [hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled]
    incomplete = getattr(hf, "IncompleteSnapshotError", None)
    if incomplete is not None:
        out.append(incomplete)
    return tuple(out)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection failures and timeouts of the HTTP clients huggingface_hub versions use."""
    import importlib

    errs: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod in ("httpx2", "httpx", "requests"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for name in ("ConnectError", "TimeoutException", "ConnectionError", "Timeout"):
            cls = getattr(m, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                errs.append(cls)
    return tuple(errs)


def _cached_listing(ref: HubRef, cache: Path) -> tuple[Path, list[str]]:
    """The cached snapshot folder of ``ref`` (``models--ORG--NAME/snapshots/COMMIT``, the commit read
    from ``refs/REVISION`` unless the revision is one) and the files in it (relative, ``/``-separated).
    Raises :class:`~chatfmt.errors.HubNotCachedError` when there is none."""
    repo_dir = cache / ("models--" + ref.repo.replace("/", "--"))
    rev = ref.revision or "main"
    commit: str | None = rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None
    if commit is None:
        ref_file = repo_dir / "refs" / rev
        try:
            commit = ref_file.read_text(encoding="utf-8").strip()
        except OSError:
            commit = None
    folder = repo_dir / "snapshots" / commit if commit else None
    if folder is None or not folder.is_dir():
        raise HubNotCachedError(f"not a local path, and not in the Hub cache {cache}", source=str(ref))
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return folder, files


def resolve(source: str | HubRef, kind: Kind = "tokenizer", *, backend: str = "auto") -> Path:
    """A Hub id made local: the snapshot folder with the files ``kind`` needs (``"tokenizer"``: the
    tokenizer and config files; ``"model"``: those and the weights ``backend`` runs), or the named
    (or chosen) GGUF file in it. Raises :class:`~chatfmt.errors.HubError` (one line)."""
    ref = source if isinstance(source, HubRef) else parse_hub_id(source)
    if ref is None:
        raise HubError("not a Hub model id (expected ORG/NAME[@REVISION][:FILE])", source=str(source))
    hf = _import_hub()
    cache, endpoint, offline = hub_cache_dir(), hub_endpoint(), hub_offline()
    key = (ref, kind, backend, str(cache), endpoint, offline)
    if key in _MEMO and _MEMO[key].exists():
        return _MEMO[key]
    local_only = offline
    try:
        if offline:
            try:
                folder, files = _cached_listing(ref, cache)
            except HubNotCachedError as e:
                e.message += " (HF_HUB_OFFLINE is set, so nothing is downloaded)"
                raise
        else:
            try:
                info = hf.HfApi(endpoint=endpoint).model_info(ref.repo, revision=ref.revision)
                files = [s.rfilename for s in (info.siblings or [])]
                sha = info.sha
                folder = None
                if getattr(info, "gated", False) and not _has_token():
                    raise HubGatedRepoError(_gated_message(ref, endpoint, token=False), source=str(ref))
            except _network_errors() + (_offline_errors()[1],) as net:
                local_only = True  # as huggingface_hub does: no Hub, so the cache
                try:
                    folder, files = _cached_listing(ref, cache)
                except HubNotCachedError:
                    raise _hub_error(net, ref, endpoint=endpoint, cache=cache, offline=False) from None

        def read_index() -> dict[str, Any] | None:
            import json

            p = (
                Path(folder) / "model.safetensors.index.json"
                if folder is not None
                else Path(hf.hf_hub_download(ref.repo, "model.safetensors.index.json", revision=sha, cache_dir=str(cache), endpoint=endpoint))
            )
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise HubError(f"model.safetensors.index.json is unreadable: {e}", source=str(ref)) from None
            return data if isinstance(data, dict) else None

        chosen, target = _choose(ref, kind, backend, files, local_only, read_index)
        if folder is None:
            folder = Path(
                hf.snapshot_download(
                    ref.repo, revision=ref.revision, cache_dir=str(cache), endpoint=endpoint, allow_patterns=chosen
                )
            )
            missing = [f for f in chosen if not (folder / f).is_file()]
            if missing:
                raise HubFileNotFoundError(f"the download left out {_listed(missing)}", source=str(ref))
    except HubError:
        raise
    except _offline_errors() as e:
        raise _hub_error(e, ref, endpoint=endpoint, cache=cache, offline=offline) from None
    except Exception as e:  # huggingface_hub's HTTP and repository errors
        if type(e).__module__.startswith(("huggingface_hub", "httpx", "requests")) or isinstance(e, _network_errors()):
            raise _hub_error(e, ref, endpoint=endpoint, cache=cache, offline=local_only) from None
        raise
    path = Path(folder) / target if target else Path(folder)
    _MEMO[key] = path
    return path


def local(source: Any, kind: Kind = "tokenizer", *, backend: str = "auto") -> Any:
    """``source`` itself unless it is a Hub id (:func:`hub_ref`); a Hub id resolved to a local path."""
    ref = hub_ref(source)
    return source if ref is None else resolve(ref, kind, backend=backend)


def pinned(source: Any, kind: Kind = "tokenizer") -> str | None:
    """A Hub id with its revision replaced by the commit it resolves to (``ORG/NAME@COMMIT[:FILE]``:
    what a dataset records, so that it names the exact files); ``None`` for anything else."""
    ref = hub_ref(source)
    if ref is None:
        return None
    path = resolve(ref, kind)
    snapshot = path if path.is_dir() else path.parent
    return str(replace(ref, revision=snapshot.name))


def with_gguf_file(model: str | Path | None, gguf_file: str | None) -> str | Path | None:
    """``--gguf-file FILE`` joined to ``--model``: ``FILE`` in a local directory, ``ORG/NAME:FILE``
    for a Hub id (one that names another file already is refused)."""
    if gguf_file is None:
        return model
    if model is None:
        raise HubError("gguf_file (--gguf-file) names a file in the model's directory or Hub repository: give the model (--model) too")
    ref = hub_ref(model) if isinstance(model, str) else None
    if ref is not None:
        if ref.filename is not None and ref.filename != gguf_file:
            raise HubError(f"names {ref.filename!r} and gguf_file (--gguf-file) {gguf_file!r}: give one", source=str(model))
        return str(replace(ref, filename=gguf_file))
    path = Path(model).expanduser()
    if path.is_dir():
        return path / gguf_file
    raise HubError(f"gguf_file (--gguf-file) needs a directory or a Hub id as the model, not {model}")


def origin(path: str | Path) -> str | None:
    """The Hub repository (``ORG/NAME``) a path in a Hub cache snapshot belongs to (the snapshot
    folder or a file in it, as :func:`resolve` returns them); ``None`` for any other path."""
    p = Path(path)
    for folder in (p, p.parent):
        if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
            parts = folder.parent.parent.name[len("models--") :].split("--")
            if len(parts) == 2 and all(parts):
                return "/".join(parts)
    return None


__all__ = [
    "HubRef",
    "hub_cache_dir",
    "hub_endpoint",
    "hub_offline",
    "hub_ref",
    "is_hub_id",
    "local",
    "origin",
    "parse_hub_id",
    "pinned",
    "resolve",
    "tokenizer_files",
    "with_gguf_file",
]
