"""The chat-template sandbox: untrusted templates hit a limit or a security error quickly, never run
code, never allocate a huge value in one step, and the watchdog stays quiet for later renders."""

from __future__ import annotations

import threading
import time

import pytest

from chatfmt import TemplateError, TemplateLimitError, from_template

MESSAGES = [{"role": "user", "content": "hi"}]
TIMEOUT = 0.5
MAX_OUTPUT = 1_000_000


def render(source: str, **kwargs):
    return from_template(source, timeout=TIMEOUT, max_output=MAX_OUTPUT).render(MESSAGES, **kwargs)


def assert_stops(
    source: str, error: type[TemplateError] = TemplateLimitError, match: str | None = None
) -> TemplateError:
    """The render is stopped with ``error``. No wall-clock bound (the machine may be loaded): what
    stopped it is checked instead. Unless the deadline is what the caller expects (``match`` names
    it), the render must have been stopped by its own limit (a size, recursion or security check,
    before the value is built), not by the deadline firing on a render that was still working."""
    with pytest.raises(error, match=match) as info:
        render(source)
    if not (match and "took longer than" in match):
        assert "took longer than" not in str(info.value), f"stopped by the deadline, not by its limit: {info.value}"
    return info.value


# -- size limits: refused before the value is built ----------------------------------------------

HUGE_VALUES = {
    "string_repeat": "{{ 'a' * 10**10 }}",
    "list_repeat": "{{ ([1] * 10**9)|length }}",
    "huge_power": "{{ 10**100000000 }}",
    "tilde_doubling": "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "plus_doubling": "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "list_doubling": "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}x",
    "center_filter": "{{ 'x'|center(10**9) }}",
    "ljust_method": "{{ 'x'.ljust(10**9) }}",
    "rjust_method": "{{ 'x'.rjust(10**9) }}",
    "zfill_method": "{{ 'x'.zfill(10**9) }}",
    "expandtabs_method": "{{ ('\t' * 100).expandtabs(10**7) }}",
    "indent_filter": "{{ 'a\nb'|indent(10**9) }}",
    "wordwrap_filter": "{{ 'a b'|wordwrap(10**9) }}",
    "tojson_indent": "{{ messages|tojson(indent=10**6) }}",
    "replace_method_bomb": "{% set ns = namespace(s='aaaaaaaaaa') %}{% for i in range(40) %}{% set ns.s = ns.s.replace('a', 'aaaaaaaaaa') %}{% endfor %}x",
    "replace_filter_bomb": "{% set ns = namespace(s='aaaaaaaaaa') %}{% for i in range(40) %}{% set ns.s = ns.s|replace('a', 'aaaaaaaaaa') %}{% endfor %}x",
    "join_method_bomb": "{% set ns = namespace(s=['ab']) %}{% for i in range(64) %}{% set ns.s = [''.join(ns.s + ns.s)] %}{% endfor %}x",
    "join_filter_bomb": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}x",
    "sum_of_lists": "{{ ([range(1000)|list] * 2000)|sum(start=[])|length }}",
    "percent_width": "{{ '%1000000000s' % 'x' }}",
    "percent_precision": "{{ '%.1000000000f' % 1.0 }}",
    "percent_star_width": "{{ '%*s' % (10**9, 'x') }}",
    "format_filter_width": "{{ '%1000000000s'|format('x') }}",
    "str_format_width": "{{ '{:>1000000000}'.format('x') }}",
    "str_format_nested_width": "{{ '{:{w}}'.format('x', w=10**9) }}",
    "str_format_map_width": "{{ '{a:>1000000000}'.format_map({'a': 'x'}) }}",
}


@pytest.mark.parametrize("source", list(HUGE_VALUES.values()), ids=list(HUGE_VALUES))
def test_a_huge_value_is_refused_before_it_is_built(source):
    err = assert_stops(source, TemplateLimitError)
    assert "limit" in str(err)


def test_a_huge_range_is_refused():
    assert_stops(
        "{% for i in range(10**9) %}{% endfor %}x", TemplateLimitError, match="range of 1000000000 items"
    )
    assert render("{{ range(3)|list }}") == "[0, 1, 2]"


def test_output_over_max_output_stops_the_render():
    src = "{% for i in range(1000) %}{% for j in range(1000) %}{{ 'abcdefghij' }}{% endfor %}{% endfor %}"
    assert_stops(src, TemplateLimitError, match="output exceeded")


def test_small_values_and_ordinary_formatting_still_work():
    src = (
        "{{ 'ab' * 3 }}|{{ '%05d' % 42 }}|{{ '%-4s|' % 'x' }}{{ '{:>4}'.format('y') }}|{{ '%s=%s'|format('k', 'v') }}"
        "|{{ ['a', 'b']|join(',') }}|{{ ','.join(['c', 'd']) }}|{{ 'aXa'|replace('a', 'bb') }}|{{ [[1], [2]]|sum(start=[]) }}"
        "|{{ '{}'.format(1700000000) }}|{{ 7 % 3 }}"
    )
    assert render(src) == "ababab|00042|x   |   y|k=v|a,b|c,d|bbXbb|[1, 2]|1700000000|1"


# -- time limit -----------------------------------------------------------------------------------


def test_a_render_that_loops_without_output_stops_at_the_timeout():
    src = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    err = assert_stops(src, TemplateLimitError, match="took longer than 0.5 s")
    assert isinstance(err, TemplateLimitError)


def test_the_watchdog_does_not_fire_on_later_renders():
    assert_stops(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        match="took longer than",
    )
    fmt = from_template("{% for m in messages %}{{ m.content }}{% endfor %}", timeout=0.2)
    deadline = time.monotonic() + 1.0  # well past any deadline that could still be pending
    n = 0
    while time.monotonic() < deadline or n < 500:
        assert fmt.render(MESSAGES) == "hi"
        n += 1


def test_the_timeout_only_stops_the_thread_that_ran_over():
    results: dict[str, object] = {}

    def slow():
        try:
            render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        except TemplateLimitError as e:
            results["slow"] = e

    def fast():
        fmt = from_template("{{ messages[0].content }}", timeout=5)
        out = []
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            out.append(fmt.render(MESSAGES))
        results["fast"] = out

    threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(results.get("slow"), TemplateLimitError)
    assert results["fast"] and set(results["fast"]) == {"hi"}


def test_deep_macro_recursion_is_stopped():
    assert_stops(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", TemplateLimitError, match="recursion"
    )


# -- no way out of the sandbox --------------------------------------------------------------------

ATTRIBUTE_WALKS = {
    "str_mro": "{{ ''.__class__.__mro__ }}",
    "str_subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "messages_class": "{{ messages.__class__ }}",
    "message_dict_class": "{{ messages[0].__class__.__init__ }}",
    "cycler_globals": "{{ cycler.__init__.__globals__ }}",
    "joiner_globals": "{{ joiner.__init__.__globals__.os }}",
    "namespace_init": "{{ namespace.__init__.__globals__ }}",
    "raise_exception_globals": "{{ raise_exception.__globals__ }}",
    "strftime_now_globals": "{{ strftime_now.__globals__['datetime'] }}",
    "dict_call": "{{ dict.__call__.__globals__ }}",
    "self_dict": "{{ self.__dict__ }}",
    "self_module": "{{ self._TemplateReference__context }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].system('echo pwned') }}",
    "range_globals": "{{ range.__globals__ }}",
    "attr_filter": "{{ ''|attr('__class__') }}",
    "format_field_walk": "{{ '{0.__class__.__mro__}'.format('') }}",
    "format_map_walk": "{{ '{a.__class__}'.format_map({'a': ''}) }}",
    "list_append": "{% set x = [] %}{{ x.append(1) }}",
    "dict_update": "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "namespace_underscore_kwarg": "{% set ns = namespace(__class__=1) %}x",
    "namespace_underscore_set": "{% set ns = namespace() %}{% set ns._private = 1 %}x",
    "namespace_dunder_set": "{% set ns = namespace() %}{% set ns.__dict__ = 1 %}x",
}


@pytest.mark.parametrize("source", list(ATTRIBUTE_WALKS.values()), ids=list(ATTRIBUTE_WALKS))
def test_attribute_walks_are_refused_and_run_no_code(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = assert_stops(source, TemplateError)
    assert "pwned" not in str(err)
    assert list(tmp_path.iterdir()) == []


def test_the_sandbox_forbids_rather_than_silently_printing_nothing():
    # jinja2's sandbox renders ``{{ obj.__class__ }}`` as an empty string; chatfmt refuses it
    with pytest.raises(TemplateLimitError, match="unsafe"):
        render("{{ messages.__class__ }}")


# -- errors say what went wrong -------------------------------------------------------------------


def test_raise_exception_surfaces_its_message_and_line():
    with pytest.raises(TemplateError, match="boom") as info:
        render("{% if messages %}\n{{ raise_exception('boom') }}{% endif %}")
    assert not isinstance(info.value, TemplateLimitError)
    assert info.value.message == "boom"
    assert info.value.line == 2


def test_a_syntax_error_names_its_line():
    with pytest.raises(TemplateError) as info:
        from_template("{% for m in messages %}\n{{ m.content }}\n{% if %}\n{% endfor %}")
    assert info.value.line == 3
    assert "line 3" in str(info.value)


def test_a_runtime_error_names_the_template_line():
    with pytest.raises(TemplateError) as info:
        render("line one\n{{ messages[0].content + 1 }}")
    assert info.value.line == 2
    assert "TypeError" in str(info.value)
