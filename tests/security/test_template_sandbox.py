"""Hostile chat templates (tests/security/corpus.py) are refused with a clear error, run no code, and
stay under their time and memory limits.

The corpus runs in a child process under ``RLIMIT_AS`` and ``RLIMIT_CPU``, so that a hole in the
sandbox fails these tests instead of taking pytest (or the machine) down. A template must be refused
by a check, not by running out of memory: the child reports ``MemoryError`` as a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatfmt import TemplateError, TemplateLimitError, from_template

from .corpus import CANARY, corpus

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
TIMEOUT = 1.0
MAX_OUTPUT = 1_000_000
#: address space the child may add to what it uses after importing chatfmt
HEADROOM = 768 * 1024 * 1024
CPU_SECONDS = int(os.environ.get("CHATFMT_SANDBOX_CPU", "120"))
#: CPU seconds past the deadline a render may use before it stops. The check is on the rendering
#: thread's CPU time, not on wall-clock time: a loaded machine stretches the wall-clock time of a
#: render but cannot raise the CPU time it used, while work in C that the deadline cannot interrupt
#: (the hole this looks for) keeps using CPU past it.
SLACK = 0.75

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, traceback
    sys.path[:0] = [{src!r}, {here!r}]
    import chatfmt
    from chatfmt import TemplateError, TemplateLimitError, from_template
    from corpus import corpus

    def vm_bytes():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()

    base = vm_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (base + {headroom}, base + {headroom}))
    resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    messages = [{{"role": "user", "content": "hi"}}]
    for name, (src, kind) in corpus().items():
        print(json.dumps({{"start": name}}), flush=True)
        t = time.monotonic()
        c = time.thread_time()
        try:
            out = from_template(src, timeout={timeout}, max_output={max_output}).render(messages)
            res = {{"error": None, "output": out[:200]}}
        except MemoryError:
            res = {{"error": "MemoryError", "message": "a raw MemoryError escaped"}}
        except TemplateError as e:
            res = {{"error": type(e).__name__, "message": str(e)[:500]}}
        except BaseException as e:
            res = {{"error": "unexpected " + type(e).__name__, "message": "".join(traceback.format_exception(e))[-1500:]}}
        res.update(name=name, seconds=time.monotonic() - t, cpu_seconds=time.thread_time() - c,
                   rss_growth_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0)
        print(json.dumps(res), flush=True)
    print(json.dumps({{"done": True}}), flush=True)
    """
)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> dict:
    """Run the whole corpus once in a limited child process; ``name -> result``, plus the run."""
    workdir = tmp_path_factory.mktemp("sandbox-run")
    script = CHILD.format(
        src=str(SRC), here=str(HERE), headroom=HEADROOM, cpu=CPU_SECONDS, timeout=TIMEOUT, max_output=MAX_OUTPUT
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": ""},
    )
    results: dict = {}
    started = None
    done = False
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        if "start" in rec:
            started = rec["start"]
        elif rec.get("done"):
            done = True
        else:
            results[rec["name"]] = rec
    return {
        "results": results,
        "done": done,
        "crashed_in": None if done else started,
        "returncode": proc.returncode,
        "stderr": proc.stderr[-3000:],
        "workdir": workdir,
    }


CORPUS = corpus()


def test_the_child_ran_the_whole_corpus_without_dying(corpus_run):
    assert corpus_run["done"], (
        f"the child died (exit {corpus_run['returncode']}) while rendering {corpus_run['crashed_in']!r}: "
        f"{corpus_run['stderr']}"
    )


def test_the_corpus_is_large_enough():
    kinds = [k for _, k in CORPUS.values()]
    assert kinds.count("escape") >= 30 and kinds.count("limit") >= 30


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_template_is_refused_quickly_without_running_out_of_memory(corpus_run, name):
    src, kind = CORPUS[name]
    res = corpus_run["results"].get(name)
    if res is None:
        pytest.fail(f"no result: the child died at {corpus_run['crashed_in']!r}")
    assert res["error"] is not None, f"rendered: {res.get('output')!r}"
    assert not res["error"].startswith("unexpected"), res["message"]
    assert res["error"] != "MemoryError" and "out of memory" not in res["message"], "refused by memory exhaustion, not by a check"
    if kind in ("escape", "limit"):
        assert res["error"] == "TemplateLimitError", res
    else:
        assert res["error"] == "TemplateError", res
    if kind == "escape":
        assert "unsafe" in res["message"] or "forbids" in res["message"], res["message"]
    if kind == "limit":
        assert "limit" in res["message"] or "longer than" in res["message"] or "too deep" in res["message"], res["message"]
    assert res["cpu_seconds"] < TIMEOUT + SLACK, (
        f"used {res['cpu_seconds']:.2f} CPU s ({res['seconds']:.2f} s wall): the deadline was overrun (work in C?)"
    )


def test_the_corpus_used_bounded_memory(corpus_run):
    growth = max((r["rss_growth_kb"] for r in corpus_run["results"].values()), default=0)
    assert growth < 512 * 1024, f"peak RSS grew by {growth // 1024} MB over the corpus"


def test_no_template_ran_code(corpus_run):
    workdir: Path = corpus_run["workdir"]
    assert not (workdir / CANARY).exists()
    assert list(workdir.iterdir()) == []


def test_the_canary_would_be_noticed(tmp_path, monkeypatch):
    """The canary command is real: unsandboxed jinja2 runs it (the test above can fail)."""
    import jinja2

    from .corpus import ESCAPES

    monkeypatch.chdir(tmp_path)
    jinja2.Environment().from_string(ESCAPES["cycler_init_globals_os"]).render()
    assert (tmp_path / CANARY).exists()


# -- in-process: the limits leave ordinary templates alone ---------------------------------------


HI = [{"role": "user", "content": "hi"}]
ORDINARY = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if messages[0] == messages[0] and messages[0]['role'] in ['user', 'system'] %}ok{% endif %}"
    "{{ messages|tojson(indent=2)|length > 0 }}{{ (messages|map(attribute='content')|list)|join(',') }}"
    "{% set ns = namespace(t=()) %}{% for m in messages %}{% set ns.t = (ns.t, m.role) %}{% endfor %}{{ ns.t|string|length }}"
    "{{ '%s=%s'|format('a', messages[0].content) }}{{ ('{}' ~ '').format(messages|length) }}{{ messages[0].content[::-1] }}"
)


def test_ordinary_operations_still_work_with_large_content():
    big = "word " * 100_000  # 500 KB of content, well under max_output
    messages = [{"role": "user", "content": big}, {"role": "assistant", "content": "ok"}]
    out = from_template(ORDINARY, timeout=5, max_output=8_000_000).render(messages)
    assert out.startswith("<|im_start|>user\n" + big)
    assert "ok" in out


def test_a_render_stays_within_its_allocation_budget_only_when_it_must():
    # 16 x max_output characters of values in total: 20 copies of 100 KB pass, 200 do not
    src = "{% set big = 'x' * 100000 %}{{ (range({n})|map('center', 100000)|list)|length }}"
    assert from_template(src.replace("{n}", "20"), max_output=1_000_000).render(HI) == "20"
    with pytest.raises(TemplateLimitError, match="in total"):
        from_template(src.replace("{n}", "200"), max_output=1_000_000).render(HI)


def test_errors_say_which_limit():
    with pytest.raises(TemplateLimitError, match=r"bits"):
        from_template("{{ 2**100000 }}").render(HI)
    with pytest.raises(TemplateLimitError, match="compare"):
        from_template(
            "{% set ns = namespace(a=0) %}{% for i in range(64) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a == ns.a }}"
        ).render(HI)
    with pytest.raises(TemplateError):
        from_template("{{ 7**20000 }}").render(HI)  # under the bit limit, over Python's int->str limit
