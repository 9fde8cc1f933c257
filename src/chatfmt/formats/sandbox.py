"""A Jinja environment that renders chat templates the way transformers does, inside a sandbox with
limits on time and output size.

Compatibility (what ``apply_chat_template`` gives the template): an immutable sandboxed
environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, a
``{% generation %}`` block, ``tojson`` as ``json.dumps`` (non-ASCII kept; ``indent``,
``separators``, ``sort_keys``), ``raise_exception``, ``strftime_now``, a safe ``dict`` and a
``namespace`` that refuses underscore names.

Limits (untrusted templates): the render runs under a deadline (an asynchronous exception is raised
in the rendering thread when it passes), output is streamed and counted, and operations that could
allocate huge values in one step (``*``, ``**``, ``~`` and ``+`` on strings and lists, string
padding methods, padding filters, ``tojson`` indent) are checked before they run.

What runs in C cannot be stopped by the deadline, so everything that could take long or allocate much
in one C call is bounded before it runs: turning a container into text (output, ``~``, ``%``,
``format``, ``|string``, ``|tojson``, ``|join``...) and comparing or hashing containers are sized
first by a walk that counts shared parts as often as they are printed or compared (a list that holds
one big string a thousand times is a thousand big strings; ``[x, x]`` nested 64 deep is 2**64
nodes); block, macro and ``caller()`` output is capped like top-level output; integers are capped
in bits; ``str.translate`` is sized; ``str.encode`` (bytes) is refused. What runs in Python is
stopped by the deadline, and the memory a render can hold is bounded by a budget on the values it
builds (``ALLOC_FACTOR`` times ``max_output`` characters or items in total, counting values of at
least ``_ACCOUNT_MIN`` items). Compile errors of any kind (too deep nesting, too many nested blocks)
are :class:`TemplateError`; templates over ``MAX_TEMPLATE_SIZE`` characters are refused.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import json
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import lru_cache, update_wrapper
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import RenderDeadline, TemplateError, TemplateLimitError

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
#: a render may build values of this many times ``max_output`` characters/items in total
ALLOC_FACTOR = 16
#: values smaller than this are not counted against the allocation budget
_ACCOUNT_MIN = 256
#: integers a template computes are capped at this many bits (``*`` and ``**`` of big integers run in
#: C for as long as they like)
MAX_INT_BITS = 1 << 16
#: template sources longer than this are refused before they are compiled
MAX_TEMPLATE_SIZE = 1_000_000


# --------------------------------------------------------------------------------------------------
# watchdog: one daemon thread for all renders


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int]] = []  # (deadline, token, thread_id)
        self._live: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="chatfmt-template-watchdog", daemon=True)
            self._thread.start()

    def arm(self, seconds: float) -> int:
        token = next(self._tokens)
        deadline = time.monotonic() + seconds
        with self._cond:
            self._start()
            # the watchdog sleeps until the earliest deadline in the heap (entries of finished renders
            # are dropped lazily); it only needs waking when this deadline comes first
            wake = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, token, threading.get_ident()))
            self._live.add(token)
            if wake:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, tid = self._heap[0]
                now = time.monotonic()
                if now < deadline:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                if token in self._live:
                    self._live.discard(token)
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(RenderDeadline))


_watchdog = _Watchdog()


# --------------------------------------------------------------------------------------------------
# environment


class _GenerationExtension(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body and records where it went."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation", []), [], [], body).set_lineno(lineno)

    def _generation(self, caller: Any) -> str:
        rv: str = caller()
        state = _render_state.current
        if state is not None:
            start = state.emitted
            state.generation.append((start, start + len(rv)))
        return rv


class _RenderState:
    __slots__ = ("allocated", "emitted", "generation", "max_output")

    def __init__(self, max_output: int) -> None:
        self.emitted = 0
        self.allocated = 0
        self.generation: list[tuple[int, int]] = []
        self.max_output = max_output


class _StateHolder(threading.local):
    current: _RenderState | None = None


_render_state = _StateHolder()


class _LimitedCodeGenerator(CodeGenerator):
    """Routes string concatenation (``~``), comparisons, slices and tuple literals through the
    environment so their cost can be checked before they run."""

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: Any) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: jinja2.nodes.Compare, frame: Any) -> None:
        # all operands are evaluated first (a chain ``a < b < c`` evaluates ``c`` even when ``a < b``
        # is false; template expressions have no side effects)
        self.write("environment.checked_compare(")
        self.visit(node.expr, frame)
        self.write(", (")
        for op in node.ops:
            self.write(f"({op.op!r}, ")
            self.visit(op.expr, frame)
            self.write("), ")
        self.write("))")

    def visit_Getitem(self, node: jinja2.nodes.Getitem, frame: Any) -> None:
        if not isinstance(node.arg, jinja2.nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.checked_slice(")
        self.visit(node.node, frame)
        self.write(", ")
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
            self.write(", ")
        self.write(")")

    def visit_Tuple(self, node: jinja2.nodes.Tuple, frame: Any) -> None:
        if node.ctx != "load":
            super().visit_Tuple(node, frame)
            return
        self.write("environment.checked_tuple(")
        super().visit_Tuple(node, frame)
        self.write(")")


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_ACCOUNTED = frozenset((str, list, tuple, dict))
_CONTAINERS: tuple[type, ...] = (list, tuple, dict, set, frozenset, type({}.keys()), type({}.values()), type({}.items()), jinja2.utils.Namespace)


def _children(obj: Any) -> list[Any] | None:
    """The parts of a container that ``repr``, ``==`` or ``hash`` visit, or None for a leaf."""
    if isinstance(obj, (str, bytes)):
        return None
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, type({}.items())):
        pairs: Iterable[tuple[Any, Any]] = obj
        return [x for kv in pairs for x in kv]
    if isinstance(obj, (list, tuple, set, frozenset, type({}.keys()), type({}.values()))):
        return list(obj)
    if isinstance(obj, jinja2.utils.Namespace):
        return [object.__getattribute__(obj, "_Namespace__attrs")]
    return None


def _leaf_chars(obj: Any) -> int:
    if isinstance(obj, (str, bytes)):
        return len(obj) + 2
    if isinstance(obj, bool) or obj is None:
        return 5
    if isinstance(obj, int):
        return obj.bit_length() * 30103 // 100000 + 2
    return 32


def measure(value: Any, limit: int, what: str, *, chars: bool = True) -> tuple[int, int, int]:
    """``(chars, nodes, depth)`` of a value as ``repr``/``str``/``json`` and ``==`` see it: shared
    parts counted every time they appear (so a DAG of lists is as big as the tree it prints as),
    computed in time linear in the distinct objects. Raises :class:`TemplateLimitError` as soon as the
    characters or the nodes pass ``limit``."""
    check_chars = chars
    if isinstance(value, str):
        return len(value), 1, 0
    if _children(value) is None:
        return _leaf_chars(value), 1, 0
    memo: dict[int, tuple[int, int, int] | None] = {}
    keep: list[Any] = []  # keeps the objects alive so their ids stay unique during the walk
    stack: list[tuple[Any, list[Any] | None]] = [(value, None)]
    while stack:
        obj, kids = stack.pop()
        if kids is None:
            if id(obj) in memo:
                continue
            kids = _children(obj)
            if kids is None:
                memo[id(obj)] = (_leaf_chars(obj), 1, 0)
                continue
            keep.append(obj)
            memo[id(obj)] = None  # in progress: a cycle (a namespace holding itself) prints as ``...``
            stack.append((obj, kids))
            stack.extend((k, None) for k in kids if id(k) not in memo)
            continue
        width, nodes, depth = 2, 1, 0
        for k in kids:
            m = memo.get(id(k)) or (5, 1, 0)
            width += m[0] + 2
            nodes += m[1]
            depth = max(depth, m[2] + 1)
        if nodes > limit or (width > limit and check_chars):
            raise TemplateLimitError(
                f"template tried to {what} a value of more than {limit} characters or parts (counting shared parts "
                f"each time they appear; limit {limit})"
            )
        memo[id(obj)] = (width, nodes, depth)
    result = memo[id(value)]
    assert result is not None  # the walk finished every object it started
    return result


def _limited_range(*args: int) -> range:
    """``range`` capped like jinja2's sandbox does (``MAX_RANGE`` items), failing with a limit error."""
    rng = range(*args)
    if len(rng) > jinja2.sandbox.MAX_RANGE:
        raise TemplateLimitError(f"template tried to build a range of {len(rng)} items (limit {jinja2.sandbox.MAX_RANGE})")
    return rng


def _raise_exception(message: Any) -> None:
    if not isinstance(message, str):
        env = _environment(DEFAULT_MAX_OUTPUT)
        measure(message, env.max_value, "raise")
        message = str(message)
    raise jinja2.exceptions.TemplateError(message)


_MAX_STRFTIME = 256


def _strftime_now(fmt: str) -> str:
    if isinstance(fmt, str) and len(fmt) > _MAX_STRFTIME:
        raise TemplateLimitError(f"strftime_now format of {len(fmt)} characters is over the limit of {_MAX_STRFTIME}")
    return datetime.now().strftime(fmt)


class _SafeDict:
    """``dict(...)`` for templates, without exposing the dict type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """``namespace(...)`` that refuses underscore-prefixed attribute names."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - same trick as jinja2's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
# filters that turn their value into text (sized first when it is not a string)
_STRINGIFYING_FILTERS = frozenset(
    ["string", "pprint", "lower", "upper", "title", "capitalize", "trim", "striptags", "escape", "e", "forceescape", "urlize", "wordcount", "truncate", "center", "indent", "wordwrap", "replace", "format", "urlencode", "xmlattr", "safe", "reverse", "list"]
)
# filters and tests that compare or hash their values (sized first: a DAG of lists compares in C for
# as long as it is wide)
_COMPARING_FILTERS = frozenset(["sort", "unique", "dictsort", "groupby", "min", "max"])
_COMPARING_TESTS = frozenset(["!=", "<", "<=", "==", ">", ">=", "eq", "equalto", "ge", "greaterthan", "gt", "in", "le", "lessthan", "lt", "ne"])
# a printf-style conversion: its width and precision (digits or ``*``)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandboxed, size-checked environment chat templates run in."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        super().__init__(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_GenerationExtension, jinja2.ext.loopcontrols],
            finalize=self._finalize,
        )
        self.max_value = max_output
        # block, macro, caller() and {% set %}...{% endset %} output is joined through this (jinja2
        # declares concat as a class-level function meant to be replaced; this one needs the instance)
        self.concat = self._checked_buffer_concat  # type: ignore[method-assign]
        self.filters["tojson"] = self._tojson
        for name in ("center", "indent", "wordwrap", "format", "join", "replace", "sum", "batch", "slice"):
            self.filters[name] = self._checked_filter(name, self.filters[name])
        for name, fn in list(self.filters.items()):
            self.filters[name] = self._guarded_filter(name, fn)
        for name, fn in list(self.tests.items()):
            if name in _COMPARING_TESTS:
                self.tests[name] = self._guarded_test(fn)
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.globals["dict"] = _SafeDict()
        self.globals["namespace"] = _Namespace
        self.globals["range"] = _limited_range
        self.globals["lipsum"] = self._lipsum

    # -- what a render may hold and what C may be asked to do ----------------------------------------

    def _account(self, value: Any) -> Any:
        """Count a value a template operation built against the render's allocation budget."""
        if type(value) in _ACCOUNTED or isinstance(value, (str, list, tuple, dict)):
            n = len(value)
            if n >= _ACCOUNT_MIN:
                state = _render_state.current
                if state is not None:
                    state.allocated += n
                    budget = self.max_value * ALLOC_FACTOR
                    if state.allocated > budget:
                        raise TemplateLimitError(
                            f"template built more than {budget} characters or items of values in total "
                            f"(limit {ALLOC_FACTOR} x max_output)"
                        )
        return value

    def _finalize(self, value: Any) -> Any:
        if not isinstance(value, str) and _children(value) is not None:
            measure(value, self.max_value, "print")
        return value

    def _checked_buffer_concat(self, parts: Any) -> str:
        parts = parts if isinstance(parts, list) else list(parts)
        self._too_big("a block, macro or {% set %} body", sum(len(p) for p in parts))
        text: str = self._account("".join(parts))
        return text

    def _text_size(self, value: Any) -> int:
        return len(value) if isinstance(value, str) else measure(value, self.max_value, "print")[0]

    def _compare_size(self, value: Any) -> None:
        if not isinstance(value, _SCALARS) and _children(value) is not None:
            measure(value, self.max_value, "compare", chars=False)

    def checked_compare(self, left: Any, ops: tuple[tuple[str, Any], ...]) -> Any:
        """``left op1 right1 op2 right2 ...`` with containers sized first."""
        if len(ops) == 1 and type(left) in _SCALAR_TYPES and type(ops[0][1]) in _SCALAR_TYPES:
            return _COMPARE[ops[0][0]](left, ops[0][1])
        result: Any = True
        for op, right in ops:
            if not (isinstance(left, _SCALARS) and isinstance(right, _SCALARS)):
                hashed = op in ("in", "notin") and isinstance(left, _SCALARS) and isinstance(right, (dict, set, frozenset))
                if not hashed:
                    self._compare_size(left)
                    self._compare_size(right)
            result = _COMPARE[op](left, right)
            if not result:
                return result
            left = right
        return result

    def checked_slice(self, obj: Any, start: Any, stop: Any, step: Any) -> Any:
        return self._account(obj[start:stop:step])

    def checked_tuple(self, value: tuple[Any, ...]) -> tuple[Any, ...]:
        """Tuple literals are hashable: a nested one is sized so that hashing it stays cheap."""
        for item in value:
            if not isinstance(item, _SCALARS):
                self._compare_size(value)
                break
        return value

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        if isinstance(n, int) and isinstance(max, int):
            self._too_big("lipsum", n * max * 12)
        text: str = self._account(jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max))
        return text

    def _guarded_filter(self, name: str, fn: Any) -> Any:
        """Every filter: a container it stringifies or compares is sized first; what it returns is
        counted against the allocation budget."""
        pass_arg = jinja2.utils._PassArg.from_obj(fn)
        at = 0 if pass_arg is None else 1
        stringifies, compares = name in _STRINGIFYING_FILTERS, name in _COMPARING_FILTERS

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if len(args) > at and not isinstance(args[at], str):
                if stringifies:
                    self._text_size(args[at])
                elif compares:
                    self._compare_size(args[at])
            return self._account(fn(*args, **kwargs))

        guarded.__name__ = getattr(fn, "__name__", name)
        if hasattr(fn, "jinja_pass_arg"):
            vars(guarded)["jinja_pass_arg"] = fn.jinja_pass_arg
        return guarded

    def _guarded_test(self, fn: Any) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            for a in (*args, *kwargs.values()):
                self._compare_size(a)
            return fn(*args, **kwargs)

        guarded.__name__ = getattr(fn, "__name__", "test")
        if hasattr(fn, "jinja_pass_arg"):
            vars(guarded)["jinja_pass_arg"] = fn.jinja_pass_arg
        return guarded

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Also refuses ``str.encode``: bytes have none of the size checks strings have, and no chat
        template needs them."""
        if attr == "encode" and isinstance(obj, str):
            return False
        return super().is_safe_attribute(obj, attr, value)

    # -- size checks -------------------------------------------------------------------------------

    def _too_big(self, what: str, size: float) -> None:
        if size > self.max_value:
            raise TemplateLimitError(f"template tried to build a value of {int(size)} items with {what} (limit {self.max_value})")

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Fail at once on an unsafe attribute (jinja2 returns an Undefined that prints as ``""``)."""
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def _check_digits(self, what: str, digits: str) -> None:
        self._too_big(what, int(digits) if len(digits) < 19 else float("inf"))

    def _check_percent(self, fmt: str, args: Any) -> None:
        """Width and precision of ``fmt % args`` (``*`` takes them from ``args``), and the size of the
        result: every conversion may print the largest argument (``%(a)s%(a)s`` repeats one)."""
        star = False
        conversions = 0
        values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple) else [args]
        largest = max((self._text_size(v) for v in values), default=0)
        for m in _PERCENT_SPEC.finditer(fmt):
            conversions += 1
            for g in m.groups():
                if g == "*":
                    star = True
                elif g:
                    self._check_digits("% formatting", g)
        if star:
            for a in args if isinstance(args, tuple) else (args,):
                if isinstance(a, int):
                    self._too_big("% formatting", a)
        self._too_big("% formatting", len(fmt) + conversions * largest)

    def _check_str_format(self, fmt: str, values: Any) -> None:
        """Width and precision in the replacement fields of ``fmt.format(...)``."""
        nested = False
        fields = 0
        for _, name, spec, _ in string.Formatter().parse(fmt):
            if name is not None:
                fields += 1
            if spec:
                nested = nested or "{" in spec
                for digits in re.findall(r"\d+", spec):
                    self._check_digits("str.format", digits)
        if nested:
            for v in values:
                if isinstance(v, int):
                    self._too_big("str.format", v)
        # every replacement field may print the largest value ('{0}{0}{0}' repeats one)
        largest = max((self._text_size(v) for v in values), default=0)
        self._too_big("str.format", len(fmt) + fields * largest)

    def _check_join(self, what: str, sep: Any, items: list[Any]) -> None:
        self._too_big(what, sum(self._text_size(x) for x in items) + self._text_size(sep) * max(len(items) - 1, 0))

    def wrap_str_format(self, value: Any) -> Any:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            mapping = args[0] if is_map and args and isinstance(args[0], dict) else {}
            self._check_str_format(fmt, [*args, *kwargs.values(), *mapping.values()])
            return wrapper(*args, **kwargs)

        return update_wrapper(checked, value)

    def _int_too_big(self, what: str, bits: int) -> None:
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(f"template tried to build an integer of about {bits} bits with {what} (limit {MAX_INT_BITS})")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is str and type(right) is str:
            # the hot path of most templates ('<|im_start|>' + role + ...): checked inline
            n = len(left) + len(right)
            if n > self.max_value:
                self._too_big("+", n)
            return left + right if n < _ACCOUNT_MIN else self._account(left + right)
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                self._int_too_big("*", left.bit_length() + right.bit_length())
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    self._too_big("*", len(seq) * max(n, 0))
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                self._int_too_big("**", right * abs(left).bit_length())
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            self._too_big("+", len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            self._check_percent(left, right)
        rv = super().call_binop(context, operator, left, right)
        return self._account(rv) if type(rv) in _ACCOUNTED and len(rv) >= _ACCOUNT_MIN else rv

    def checked_concat(self, parts: tuple[Any, ...]) -> str:
        self._too_big("~", sum(self._text_size(p) for p in parts))
        text: str = self._account("".join([p if isinstance(p, str) else str(p) for p in parts]))
        return text

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", None)
        if name in _PADDING_METHODS and isinstance(getattr(__obj, "__self__", None), str):
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, int):
                    __self._too_big(f"str.{name}", a)
            if name == "expandtabs":
                __self._too_big("str.expandtabs", len(__obj.__self__) * (args[0] if args and isinstance(args[0], int) else 8))
        elif name == "join" and isinstance(getattr(__obj, "__self__", None), str) and len(args) == 1:
            items = list(args[0])
            __self._check_join("str.join", __obj.__self__, items)
            args = (items,)
        elif name == "replace" and isinstance(getattr(__obj, "__self__", None), str) and len(args) >= 2:
            s, old, new = __obj.__self__, args[0], args[1]
            if isinstance(old, str) and isinstance(new, str):
                count = s.count(old) if old else len(s) + 1
                __self._too_big("str.replace", len(s) + count * max(len(new) - len(old), 0))
        elif name == "translate" and isinstance(getattr(__obj, "__self__", None), str) and args:
            table = args[0]
            values = table.values() if isinstance(table, dict) else table if isinstance(table, (list, tuple)) else ()
            longest = max((len(v) for v in values if isinstance(v, str)), default=1)
            __self._too_big("str.translate", len(__obj.__self__) * max(longest, 1))
        if not isinstance(__obj, jinja2.runtime.Macro):
            # builtin methods that compare their arguments (list.index, list.count, loop.changed)
            for a in (*args, *kwargs.values()):
                if not isinstance(a, _SCALARS):
                    __self._compare_size(a)
        return __self._account(super().call(__context, __obj, *args, **kwargs))

    def _checked_filter(self, name: str, fn: Any) -> Any:
        if name in ("format", "join", "replace", "sum"):
            return self._checked_content_filter(name, fn)

        def checked(*args: Any, **kwargs: Any) -> Any:
            for a in list(args[1:]) + list(kwargs.values()):
                if isinstance(a, int) and not isinstance(a, bool):
                    self._too_big(f"|{name}", a)
                    if name == "slice" and a > jinja2.sandbox.MAX_RANGE:
                        raise TemplateLimitError(f"|slice into {a} lists is over the limit of {jinja2.sandbox.MAX_RANGE}")
            if name == "indent" and args:
                width = args[1] if len(args) > 1 else kwargs.get("width", 4)
                if isinstance(width, int):
                    self._too_big("|indent", len(str(args[0])) * (1 + width))
            return fn(*args, **kwargs)

        checked.__name__ = getattr(fn, "__name__", name)
        for attr in ("jinja_pass_arg",):
            if hasattr(fn, attr):
                setattr(checked, attr, getattr(fn, attr))
        return checked

    def _checked_content_filter(self, name: str, fn: Any) -> Any:
        """``format``, ``join``, ``replace`` and ``sum``: their result size depends on their input, so
        it is computed (and the iterable materialised) before the filter runs."""

        def checked(*given: Any, **kwargs: Any) -> Any:
            args = list(given)
            if name == "format" and args:  # (value, *args, **kwargs)
                if isinstance(args[0], str):
                    self._check_percent(args[0], tuple(args[1:]) or tuple(kwargs.values()))
            elif name == "join" and len(args) >= 2:  # (eval_ctx, value, d="", attribute=None)
                attribute = args.pop(3) if len(args) > 3 else kwargs.pop("attribute", None)
                items = list(args[1])
                if attribute is not None:
                    items = list(map(jinja2.filters.make_attrgetter(self, attribute), items))
                args[1] = items
                self._check_join("|join", args[2] if len(args) > 2 else kwargs.get("d", ""), items)
            elif name == "replace" and len(args) >= 4:  # (eval_ctx, s, old, new, count=None)
                s, old, new = str(args[1]), str(args[2]), str(args[3])
                count = s.count(old) if old else len(s) + 1
                self._too_big("|replace", len(s) + count * max(len(new) - len(old), 0))
            elif name == "sum" and len(args) >= 2:  # (environment, iterable, attribute=None, start=0)
                start = args[3] if len(args) > 3 else kwargs.get("start", 0)
                if isinstance(start, (str, list, tuple)):
                    args[1] = list(args[1])
                    total = len(start) + sum(len(x) for x in args[1] if isinstance(x, (str, list, tuple)))
                    self._too_big("|sum", total)
                    self._too_big("|sum (repeated concatenation)", total * len(args[1]) / 64)
            return fn(*args, **kwargs)

        checked.__name__ = getattr(fn, "__name__", name)
        if hasattr(fn, "jinja_pass_arg"):
            vars(checked)["jinja_pass_arg"] = fn.jinja_pass_arg
        return checked

    def _tojson(
        self,
        x: Any,
        ensure_ascii: bool = False,
        indent: int | str | None = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        if isinstance(indent, int):
            if indent > 64:
                raise TemplateLimitError(f"tojson indent {indent} is over the limit of 64")
        elif isinstance(indent, str) and len(indent) > 64:
            raise TemplateLimitError("tojson indent string is over the limit of 64 characters")
        chars, nodes, depth = measure(x, self.max_value, "serialise")
        step = indent if isinstance(indent, int) else len(indent) if isinstance(indent, str) else 0
        if step:
            self._too_big("tojson", chars + nodes * (1 + step * depth))
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _environment(max_output: int) -> ChatTemplateEnvironment:
    return ChatTemplateEnvironment(max_output)


@lru_cache(maxsize=256)
def compile_template(source: str, max_output: int = DEFAULT_MAX_OUTPUT) -> jinja2.Template:
    """Compile (and cache) a chat template; syntax errors become :class:`TemplateError`, a template
    over :data:`MAX_TEMPLATE_SIZE` or one that nests too deeply :class:`TemplateLimitError`."""
    if len(source) > MAX_TEMPLATE_SIZE:
        raise TemplateLimitError(f"template of {len(source)} characters is over the limit of {MAX_TEMPLATE_SIZE}")
    try:
        return _environment(max_output).from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"template syntax error: {e.message}", line=e.lineno) from None
    except (RecursionError, MemoryError):
        raise TemplateLimitError("template nests too deeply to compile") from None
    except SyntaxError as e:  # Python's own limits on the generated code (e.g. > 20 nested loops)
        raise TemplateLimitError(f"template cannot be compiled: {e.msg} (a limit of Python's compiler)") from None
    except (ValueError, OverflowError, TypeError) as e:
        raise TemplateError(f"template cannot be compiled: {type(e).__name__}: {e}") from None


@lru_cache(maxsize=256)
def template_variables(source: str) -> frozenset[str]:
    """The variables a template reads from its context (``jinja2.meta.find_undeclared_variables``
    of the parsed template): what it can render at all. Empty for a template that does not parse."""
    import jinja2.meta

    try:
        ast = _environment(DEFAULT_MAX_OUTPUT).parse(source)
        return frozenset(jinja2.meta.find_undeclared_variables(ast))
    except (jinja2.TemplateSyntaxError, RecursionError, MemoryError, SyntaxError, ValueError, TypeError):
        return frozenset()


def render_template(
    template: jinja2.Template,
    context: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> tuple[str, list[tuple[int, int]]]:
    """Render under the limits; returns the text and the spans of ``{% generation %}`` blocks.

    Errors: :class:`TemplateLimitError` for a broken limit or a sandbox violation,
    :class:`TemplateError` (with the template's own message) when the template raises.
    """
    state = _RenderState(max_output)
    outer = _render_state.current
    _render_state.current = state
    chunks: list[str] = []
    token = _watchdog.arm(timeout) if timeout and timeout > 0 else None
    try:
        try:
            gen: Iterator[str] = template.generate(**context)
            for chunk in gen:
                chunks.append(chunk)
                state.emitted += len(chunk)
                if state.emitted > max_output:
                    raise TemplateLimitError(f"template output exceeded {max_output} characters (the max_output limit)")
        finally:
            if token is not None:
                _watchdog.disarm(token)
    except RenderDeadline:
        raise TemplateLimitError(f"template rendering took longer than {timeout:g} s") from None
    except TemplateLimitError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise TemplateLimitError(f"template tried an operation the sandbox forbids: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        lineno = getattr(e, "lineno", None) or _template_line(e)
        raise TemplateError(str(e.message if getattr(e, "message", None) else e), line=lineno) from None
    except RecursionError:
        raise TemplateLimitError("template recursion went too deep") from None
    except MemoryError:
        raise TemplateLimitError("template ran out of memory") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise TemplateError(f"template failed: {type(e).__name__}: {e}", line=_template_line(e)) from None
    finally:
        _render_state.current = outer
    return "".join(chunks), state.generation


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception came from, if its traceback passes through template code."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == "<template>":
            template = tb.tb_frame.f_globals.get("__jinja_template__")
            if template is None:
                line = tb.tb_lineno  # a frame jinja2 already rewrote to the template's own line
            else:
                try:
                    line = template.get_corresponding_lineno(tb.tb_lineno)
                except Exception:  # pragma: no cover - debug info only
                    line = None
        tb = tb.tb_next
    return line
