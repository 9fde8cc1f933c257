"""Hub model ids (chatfmt.hub) in load_format, load_tokenizer, load_backend and Chat: from a cache laid
out exactly as huggingface_hub writes it (HF_HUB_OFFLINE=1), and downloaded from a local server that
answers huggingface_hub's calls the way the Hub does (HF_ENDPOINT). Fixtures: tests/conftest.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatfmt
from chatfmt import hub
from chatfmt.errors import (
    ChatfmtError,
    HubError,
    HubFileNotFoundError,
    HubGatedRepoError,
    HubNotCachedError,
    HubRepoNotFoundError,
)
from chatfmt.formats import registry

QWEN_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json")
CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|> there"}]


def _files(root: Path, names) -> dict[str, Path]:
    return {n: root / n for n in names if (root / n).is_file()}


def _ids(messages, fmt, tok) -> list[int]:
    return chatfmt.load_format(fmt).encode(messages, tok).input_ids


@pytest.fixture
def qwen_dir(testdata) -> Path:
    return testdata("qwen2.5")


# -- the resolution rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", ("Qwen/Qwen2.5-0.5B-Instruct", None, None)),
        ("Qwen/Qwen2.5-0.5B-Instruct@v1.0", ("Qwen/Qwen2.5-0.5B-Instruct", "v1.0", None)),
        ("org/name@refs/pr/1", ("org/name", "refs/pr/1", None)),
        ("org/name-GGUF:model.Q4_K_M.gguf", ("org/name-GGUF", None, "model.Q4_K_M.gguf")),
        ("org/name@main:sub/model.gguf", ("org/name", "main", "sub/model.gguf")),
    ],
)
def test_hub_ids_parse_into_repo_revision_and_file(text, expected):
    ref = hub.parse_hub_id(text)
    assert ref is not None and (ref.repo, ref.revision, ref.filename) == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    ["qwen2.5", "chatml", "templates/chat.jinja", "org/tokenizer.json", "org/model.gguf", "org/spec.toml", "./org/name",
     "../org/name", "/abs/org", "~/models", "a/b/c", "C:/models", "org--x/name", "org/name:../../etc/passwd", ""],
)
def test_paths_built_in_names_and_file_names_are_never_hub_ids(text):
    assert hub.parse_hub_id(text) is None


def test_no_built_in_format_name_is_a_hub_id():
    assert all(hub.parse_hub_id(n) is None for n in registry.names())


@given(st.from_regex(r"[a-z][a-z0-9]{0,8}/[a-z][a-z0-9-]{0,8}\.(jinja|json|gguf|toml|j2|model|tiktoken|txt)", fullmatch=True))
def test_a_name_ending_in_a_file_suffix_stays_a_path(text):
    assert hub.parse_hub_id(text) is None


_name = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9_])?", fullmatch=True).filter(lambda n: ".." not in n and "--" not in n)


@given(
    org=_name,
    name=_name.filter(lambda n: Path(n).suffix.lower() not in hub.PATH_SUFFIXES),
    rev=st.none() | st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9_])?(/[A-Za-z0-9_]{1,5})?", fullmatch=True).filter(lambda r: ".." not in r),
    file=st.none() | st.from_regex(r"[A-Za-z0-9_]{1,10}\.gguf", fullmatch=True),
)
def test_any_well_formed_hub_id_parses_and_prints_back_the_same(org, name, rev, file):
    text = f"{org}/{name}" + (f"@{rev}" if rev else "") + (f":{file}" if file else "")
    ref = hub.parse_hub_id(text)
    assert ref is not None and str(ref) == text and ref.repo == f"{org}/{name}" and ref.revision == rev and ref.filename == file


def test_an_existing_local_path_wins_over_the_same_hub_id(hub_cache, qwen_dir, tmp_path, monkeypatch):
    fake, cache = hub_cache
    fake.add("org/model", {"chat_template.jinja": "HUB {{ messages[0]['content'] }}"})
    fake.write_cache(cache, "org/model")
    local = tmp_path / "work" / "org" / "model"
    local.mkdir(parents=True)
    (local / "chat_template.jinja").write_text("LOCAL {{ messages[0]['content'] }}")
    monkeypatch.chdir(tmp_path / "work")
    assert hub.hub_ref("org/model") is None
    assert chatfmt.load_format("org/model").render([{"role": "user", "content": "x"}]) == "LOCAL x"
    monkeypatch.chdir(tmp_path)
    assert chatfmt.load_format("org/model").render([{"role": "user", "content": "x"}]) == "HUB x"


def test_a_path_object_is_never_a_hub_id(hub_cache):
    fake, cache = hub_cache
    fake.add("org/model", {"chat_template.jinja": "x"})
    fake.write_cache(cache, "org/model")
    with pytest.raises(ChatfmtError, match="no such file"):
        chatfmt.load_format(Path("org/model"))


def test_a_missing_local_file_still_says_no_such_file(hub_cache):
    with pytest.raises(ChatfmtError, match="no such file or directory"):
        chatfmt.load_format("templates/missing.jinja")


# -- from the cache, offline ----------------------------------------------------------------------


def test_a_hub_format_renders_exactly_as_the_same_files_on_disk(hub_cache, qwen_dir):
    fake, cache = hub_cache
    fake.add("Qwen/Qwen2.5-0.5B-Instruct", _files(qwen_dir, QWEN_FILES))
    fake.write_cache(cache, "Qwen/Qwen2.5-0.5B-Instruct")
    fmt = chatfmt.load_format("Qwen/Qwen2.5-0.5B-Instruct")
    assert fmt.name == "Qwen2.5-0.5B-Instruct"
    assert fmt.render(CONV, add_generation_prompt=True) == chatfmt.load_format(qwen_dir).render(CONV, add_generation_prompt=True)


def test_a_hub_tokenizer_encodes_exactly_as_the_same_files_on_disk(hub_cache, qwen_dir):
    fake, cache = hub_cache
    fake.add("Qwen/Qwen2.5-0.5B-Instruct", _files(qwen_dir, QWEN_FILES))
    fake.write_cache(cache, "Qwen/Qwen2.5-0.5B-Instruct")
    spec = "Qwen/Qwen2.5-0.5B-Instruct"
    ids = _ids(CONV, spec, spec)
    assert ids == _ids(CONV, qwen_dir, qwen_dir)


@pytest.mark.parametrize(
    "name, repo, files",
    [
        ("llama3", "meta-llama/Llama-3.1-8B-Instruct", ("tokenizer.model", "tokenizer_config.json")),
        ("mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3",
         ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")),
    ],
)
def test_llama3_and_mistral_from_the_hub_cache_match_their_directories(hub_cache, testdata, name, repo, files):
    src = testdata(name)
    fake, cache = hub_cache
    fake.add(repo, _files(src, files))
    fake.write_cache(cache, repo)
    convo = [{"role": "user", "content": "Hello there"}]
    assert _ids(convo, repo, repo) == _ids(convo, src, src)


def test_revision_and_commit_pick_their_snapshot(hub_cache):
    fake, cache = hub_cache
    old = fake.add("org/model", {"chat_template.jinja": "OLD"}, revision="v1")
    fake.add("org/model", {"chat_template.jinja": "NEW"})
    fake.write_cache(cache, "org/model")
    convo = [{"role": "user", "content": "x"}]
    assert chatfmt.load_format("org/model").render(convo) == "NEW"
    assert chatfmt.load_format("org/model@v1").render(convo) == "OLD"
    assert chatfmt.load_format(f"org/model@{old}").render(convo) == "OLD"


def test_offline_and_not_cached_is_one_line(hub_cache):
    with pytest.raises(HubNotCachedError) as info:
        chatfmt.load_tokenizer("org/absent")
    text = str(info.value)
    assert "\n" not in text and text.startswith("org/absent: ") and "HF_HUB_OFFLINE" in text


def test_a_revision_not_in_the_cache_is_not_cached(hub_cache):
    fake, cache = hub_cache
    fake.add("org/model", {"chat_template.jinja": "x"})
    fake.write_cache(cache, "org/model")
    with pytest.raises(HubNotCachedError, match="org/model@v9"):
        chatfmt.load_format("org/model@v9")


def test_hf_home_is_where_the_cache_is_when_hf_hub_cache_is_unset(hub_cache, tmp_path, monkeypatch):
    fake, _ = hub_cache
    fake.add("org/model", {"chat_template.jinja": "HOME"})
    fake.write_cache(tmp_path / "home" / "hub", "org/model")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hub_cache_dir() == tmp_path / "home" / "hub"
    assert chatfmt.load_format("org/model").render([{"role": "user", "content": "x"}]) == "HOME"


# -- a GGUF repository (no shared test data needed) -----------------------------------------------

GGUF_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


def test_a_named_gguf_in_the_cache_gives_format_tokenizer_and_model(hub_cache, smollm2_gguf):
    fake, cache = hub_cache
    fake.add(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf})
    fake.write_cache(cache, GGUF_REPO)
    spec = f"{GGUF_REPO}:{smollm2_gguf.name}"
    fmt = chatfmt.load_format(spec)
    local_fmt = chatfmt.load_format(smollm2_gguf)
    convo = [{"role": "user", "content": "What is 2+2?"}]
    assert fmt.render(convo, add_generation_prompt=True) == local_fmt.render(convo, add_generation_prompt=True)
    assert _ids(convo, spec, spec) == _ids(convo, smollm2_gguf, smollm2_gguf)
    path = hub.resolve(GGUF_REPO, "model")  # the repository's only GGUF
    assert path.name == smollm2_gguf.name and path.read_bytes()[:4] == b"GGUF"
    assert hub.origin(path) == GGUF_REPO


def test_a_gguf_only_repo_asks_for_the_file_when_a_template_is_wanted(hub_cache, smollm2_gguf):
    fake, cache = hub_cache
    fake.add(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf})
    fake.write_cache(cache, GGUF_REPO)
    with pytest.raises(HubError, match=rf"name one as {GGUF_REPO}:FILE.gguf .*{smollm2_gguf.name}"):
        chatfmt.load_format(GGUF_REPO)


def test_several_ggufs_and_none_named_lists_them(hub_cache, smollm2_gguf):
    fake, cache = hub_cache
    fake.add(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf, "other.Q8_0.gguf": smollm2_gguf})
    fake.write_cache(cache, GGUF_REPO)
    with pytest.raises(HubError, match=r"several GGUF files.*--gguf-file.*other\.Q8_0\.gguf"):
        hub.resolve(GGUF_REPO, "model")


def test_a_named_file_not_in_the_repo_is_one_line(hub_cache, smollm2_gguf):
    fake, cache = hub_cache
    fake.add(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf})
    fake.write_cache(cache, GGUF_REPO)
    with pytest.raises(HubFileNotFoundError, match=rf"no file 'nope.gguf'.*its GGUF files: {smollm2_gguf.name}"):
        chatfmt.load_tokenizer(f"{GGUF_REPO}:nope.gguf")


def test_gguf_file_joins_a_hub_id_or_a_directory(tmp_path):
    assert hub.with_gguf_file("org/name", "m.gguf") == "org/name:m.gguf"
    assert hub.with_gguf_file("org/name@v2", "m.gguf") == "org/name@v2:m.gguf"
    assert hub.with_gguf_file(str(tmp_path), "m.gguf") == tmp_path / "m.gguf"
    assert hub.with_gguf_file("org/name", None) == "org/name"
    with pytest.raises(HubError, match="give one"):
        hub.with_gguf_file("org/name:a.gguf", "b.gguf")
    with pytest.raises(HubError, match=r"give the model \(--model\) too"):
        hub.with_gguf_file(None, "m.gguf")


@pytest.mark.slow
def test_chat_runs_a_hub_gguf_exactly_as_the_local_file(hub_cache, smollm2_gguf):
    pytest.importorskip("llama_cpp")
    fake, cache = hub_cache
    fake.add(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf})
    fake.write_cache(cache, GGUF_REPO)
    opts = {"backend": "llama.cpp", "max_new_tokens": 8, "temperature": 0.0, "seed": 1, "n_ctx": 512}
    from_hub = chatfmt.Chat(GGUF_REPO, gguf_file=smollm2_gguf.name, **opts)
    local = chatfmt.Chat(smollm2_gguf, **opts)
    assert hub.origin(from_hub.backend.model_path) == GGUF_REPO
    assert from_hub.send("What is the capital of France?").content == local.send("What is the capital of France?").content
    assert from_hub.encoder.last_text == local.encoder.last_text


# -- downloading from a server that answers as the Hub does ---------------------------------------


def _snapshot_files(cache: Path, repo: str) -> set[str]:
    snaps = cache / ("models--" + repo.replace("/", "--")) / "snapshots"
    return {p.relative_to(d).as_posix() for d in snaps.iterdir() for p in d.rglob("*") if p.is_file()}


def test_download_fetches_only_tokenizer_and_config_files_into_the_hub_cache(hub_server, qwen_dir, monkeypatch):
    fake, cache = hub_server
    files = {**_files(qwen_dir, QWEN_FILES), "model.safetensors": b"\0" * 64, "pytorch_model.bin": b"\0" * 64, "README.md": "# model", "onnx/model.onnx": b"\0"}
    fake.add("Qwen/Qwen2.5-0.5B-Instruct", files)
    fmt = chatfmt.load_format("Qwen/Qwen2.5-0.5B-Instruct")
    assert _snapshot_files(cache, "Qwen/Qwen2.5-0.5B-Instruct") == set(QWEN_FILES)
    repo_dir = cache / "models--Qwen--Qwen2.5-0.5B-Instruct"
    commit = (repo_dir / "refs" / "main").read_text()
    assert commit == fake.commit_of("Qwen/Qwen2.5-0.5B-Instruct", "main")
    snap = repo_dir / "snapshots" / commit / "vocab.json"
    assert snap.is_symlink() and snap.resolve().parent == (repo_dir / "blobs").resolve()
    assert not any(p.endswith((".safetensors", ".bin", ".md", ".onnx")) for _, p in fake.requests)
    # the same id again, offline: the cache alone
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(fake.requests)
    again = chatfmt.load_format("Qwen/Qwen2.5-0.5B-Instruct")
    assert len(fake.requests) == before
    assert again.render(CONV) == fmt.render(CONV)


def test_a_model_download_fetches_the_named_gguf_only(hub_server, smollm2_gguf):
    fake, cache = hub_server
    fake.add(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf, "SmolLM2-135M-Instruct.Q8_0.gguf": b"GGUF" + b"\0" * 32, "README.md": "x"})
    path = hub.resolve(f"{GGUF_REPO}:{smollm2_gguf.name}", "model")
    assert path.read_bytes() == smollm2_gguf.read_bytes()
    assert _snapshot_files(cache, GGUF_REPO) == {smollm2_gguf.name}


def test_transformers_weights_are_the_safetensors_shards_the_index_lists(hub_server, qwen_dir):
    fake, cache = hub_server
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    fake.add("org/sharded", {
        **_files(qwen_dir, QWEN_FILES), "config.json": "{}", "model.safetensors.index.json": json.dumps(index),
        "model-00001-of-00002.safetensors": b"1", "model-00002-of-00002.safetensors": b"2",
        "consolidated.safetensors": b"c", "pytorch_model.bin": b"p", "model.Q4_0.gguf": b"GGUF",
    })
    path = hub.resolve("org/sharded", "model", backend="transformers")
    assert path.is_dir()
    got = _snapshot_files(cache, "org/sharded")
    assert {"model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json"} <= got
    assert not got & {"consolidated.safetensors", "pytorch_model.bin", "model.Q4_0.gguf"}


def test_only_pickle_weights_are_refused_with_a_reason(hub_server):
    fake, _ = hub_server
    fake.add("org/old", {"config.json": "{}", "pytorch_model.bin": b"p"})
    with pytest.raises(HubError, match=r"pickle \*\.bin weights are not downloaded"):
        hub.resolve("org/old", "model")


def test_a_missing_repo_is_one_line(hub_server):
    with pytest.raises(HubRepoNotFoundError) as info:
        chatfmt.load_tokenizer("org/does-not-exist")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("org/does-not-exist: not a local path, and no model repository org/does-not-exist on the Hub")


def test_a_missing_revision_is_one_line(hub_server):
    fake, _ = hub_server
    fake.add("org/model", {"chat_template.jinja": "x"})
    with pytest.raises(HubRepoNotFoundError, match=r"^org/model@v9: no revision 'v9' in the repository org/model$"):
        chatfmt.load_format("org/model@v9")


def test_a_missing_file_is_one_line(hub_server):
    fake, _ = hub_server
    fake.add("org/model", {"chat_template.jinja": "x", "a.gguf": b"GGUF"})
    with pytest.raises(HubFileNotFoundError, match=r"^org/model:b\.gguf: no file 'b\.gguf' in the repository org/model; its GGUF files: a\.gguf$"):
        chatfmt.load_format("org/model:b.gguf")


def test_a_gated_repo_without_a_token_says_how_to_get_access_and_works_with_hf_token(hub_server, qwen_dir, monkeypatch):
    fake, _ = hub_server
    fake.add("meta-llama/Gated", _files(qwen_dir, QWEN_FILES), gated=True)
    with pytest.raises(HubGatedRepoError) as info:
        chatfmt.load_tokenizer("meta-llama/Gated")
    text = str(info.value)
    assert "\n" not in text and "gated repository" in text and "HF_TOKEN" in text
    monkeypatch.setenv("HF_TOKEN", fake.token)
    assert chatfmt.load_tokenizer("meta-llama/Gated").encode_text("hello")


def test_an_unreachable_hub_falls_back_to_the_cache_and_otherwise_says_so(hub_server, qwen_dir, monkeypatch):
    fake, cache = hub_server
    fake.add("Qwen/Qwen2.5-0.5B-Instruct", _files(qwen_dir, QWEN_FILES))
    want = chatfmt.load_format("Qwen/Qwen2.5-0.5B-Instruct").render(CONV)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert chatfmt.load_format("Qwen/Qwen2.5-0.5B-Instruct").render(CONV) == want
    with pytest.raises(HubError, match=r"^org/other: cannot reach the Hub \(http://127\.0\.0\.1:9"):
        chatfmt.load_format("org/other")


def test_prepare_workers_read_a_hub_id_from_the_cache(hub_server, qwen_dir, tmp_path):
    fake, _ = hub_server
    fake.add("Qwen/Qwen2.5-0.5B-Instruct", _files(qwen_dir, QWEN_FILES))
    from chatfmt.train.encoder import Loader

    loader = Loader("tokenizer", "Qwen/Qwen2.5-0.5B-Instruct")
    assert loader.spec is not None and os.path.isdir(loader.spec) and hub.origin(loader.spec) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_a_gated_repo_with_a_token_that_has_no_access_says_so(hub_server, qwen_dir, monkeypatch):
    fake, _ = hub_server
    fake.add("meta-llama/Gated", _files(qwen_dir, QWEN_FILES), gated=True)
    monkeypatch.setenv("HF_TOKEN", "hf_someone_else")
    with pytest.raises(HubGatedRepoError, match=r"^meta-llama/Gated: a gated repository: the token in use has no access"):
        chatfmt.load_format("meta-llama/Gated")


@pytest.mark.slow
def test_transformers_runs_a_safetensors_repo_downloaded_from_the_hub_as_its_local_copy(hub_server, smollm2_gguf, tmp_path):
    """SmolLM2 saved by transformers (safetensors, config, tokenizer, template) and served as a Hub
    repo beside a pickle decoy: Chat(model=REPO, backend="transformers") downloads the safetensors and
    the tokenizer files only and answers as the same directory on disk does."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    saved = tmp_path / "SmolLM2-135M-Instruct"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    # transformers will not save a model it dequantized from a GGUF: write the weights and config itself
    from safetensors.torch import save_model

    saved.mkdir()
    save_model(model, str(saved / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (saved / "config.json").write_text(json.dumps(config))
    tok = transformers.AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    tok.save_pretrained(saved)
    if not any((saved / n).is_file() for n in ("chat_template.jinja", "chat_template.json")) and "chat_template" not in json.loads((saved / "tokenizer_config.json").read_text()):
        from chatfmt.gguf_meta import read_gguf_chat_metadata

        (saved / "chat_template.jinja").write_text(read_gguf_chat_metadata(smollm2_gguf).templates["default"])
    fake, cache = hub_server
    files = {p.relative_to(saved).as_posix(): p for p in saved.rglob("*") if p.is_file()}
    assert any(n.endswith(".safetensors") for n in files)
    fake.add("HuggingFaceTB/SmolLM2-135M-Instruct", {**files, "pytorch_model.bin": b"decoy", "onnx/model.onnx": b"decoy"})
    opts = {"backend": "transformers", "max_new_tokens": 8, "temperature": 0.0, "seed": 0}
    from_hub = chatfmt.Chat("HuggingFaceTB/SmolLM2-135M-Instruct", **opts)
    local = chatfmt.Chat(saved, **opts)
    fetched = {p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p in fake.requests if m == "GET" and "/resolve/" in p}
    assert "pytorch_model.bin" not in fetched and "onnx/model.onnx" not in fetched
    assert any(n.endswith(".safetensors") for n in fetched)
    question = "What is the capital of France?"
    assert from_hub.send(question).content == local.send(question).content
    assert from_hub.encoder.last_text == local.encoder.last_text


def test_pinned_names_the_commit_a_revision_resolves_to(hub_cache):
    fake, cache = hub_cache
    commit = fake.add("org/model", {"chat_template.jinja": "x"})
    fake.write_cache(cache, "org/model")
    assert hub.pinned("org/model") == f"org/model@{commit}"
    assert hub.pinned(f"org/model@{commit}") == f"org/model@{commit}"
    assert hub.pinned("qwen2.5") is None
    assert chatfmt.load_format(hub.pinned("org/model")).render([{"role": "user", "content": "y"}]) == "x"


def test_a_hub_that_answers_with_an_error_status_is_one_line_naming_it(hub_server):
    fake, _ = hub_server
    fake.add("org/down", {"chat_template.jinja": "x"}, status=500)
    with pytest.raises(HubError) as info:
        chatfmt.load_format("org/down")
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"org/down: the Hub ({fake.endpoint}) answered 500 for org/down")
