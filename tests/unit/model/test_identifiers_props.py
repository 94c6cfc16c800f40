"""Property tests (hypothesis) for every validator and quoting function that puts a name into SQL,
argv or a path: controller/model/identifiers.py, the Hive adapter's DDL helpers, the jobkit checks.

Each validator is compared with its documented grammar written out in plain Python (an oracle),
over arbitrary text and over text built from the grammar's own characters plus the ones that have
broken such checks before (a trailing newline, NUL, quotes, backticks, non-ASCII look-alikes).
Accepted names never carry a control character or newline; rejected ones raise the project's own
error type; quoting round-trips and never lets a quote close early.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.adapters import hive_ddl
from controller.jobkit import checks
from controller.model import identifiers as ids
from controller.model.errors import PermanentBackendError
from controller.rollout.sqlrewrite import quoted_table

QUICK = settings(max_examples=200, deadline=None, database=None)

LOWER, UPPER, DIGITS = string.ascii_lowercase, string.ascii_uppercase, string.digits
TRICKY = "\n\r\t\x00\x7f\x85`'\"\\ ;é\u212a\u0663\u2028"


def names(grammar_chars: str, pattern: re.Pattern[str] | None = None) -> st.SearchStrategy[str]:
    """Text over the grammar's characters and the tricky ones, arbitrary text, and (given the
    implementation's pattern) names it accepts with a character appended."""
    near = st.text(alphabet=grammar_chars + TRICKY, max_size=300)
    grammar = st.text(alphabet=grammar_chars, min_size=1, max_size=300)
    parts = [grammar, near, grammar.map(lambda s: s + "\n"), st.text(max_size=60)]
    if pattern is not None:
        valid = st.from_regex(pattern, fullmatch=True)
        parts += [valid, st.tuples(valid, st.sampled_from(TRICKY)).map("".join)]
    return st.one_of(*parts)


def _in(chars: str, text: str) -> bool:
    return all(c in chars for c in text)


def topic_ok(s: str) -> bool:
    return 1 <= len(s) <= 249 and _in(LOWER + UPPER + DIGITS + "._-", s) and s not in {".", ".."}


def hive_ok(s: str) -> bool:
    return 1 <= len(s) <= 128 and s[0] in LOWER + "_" and _in(LOWER + DIGITS + "_", s)


def dag_ok(s: str) -> bool:
    return 1 <= len(s) <= 250 and _in(LOWER + UPPER + DIGITS + "_.-", s)


def spark_key_ok(s: str) -> bool:
    return s.startswith("spark.") and len(s) > 6 and _in(LOWER + UPPER + DIGITS + "_.-", s[6:])


def kafka_key_ok(s: str) -> bool:
    return len(s) >= 1 and s[0] in LOWER + DIGITS and _in(LOWER + DIGITS + "._-", s)


def resource_ok(s: str) -> bool:
    alnum = LOWER + DIGITS
    return 1 <= len(s) <= 63 and _in(alnum + "-", s) and s[0] in alnum and s[-1] in alnum


Grammar = tuple[Callable[[str], str], Callable[[str], bool], str, "re.Pattern[str]"]
GRAMMARS: list[Grammar] = [
    (ids.check_topic, topic_ok, LOWER + UPPER + DIGITS + "._-", ids.TOPIC_RE),
    (ids.check_hive_ident, hive_ok, LOWER + DIGITS + "_", ids.HIVE_IDENT_RE),
    (ids.check_dag_id, dag_ok, LOWER + UPPER + DIGITS + "_.-", ids.DAG_ID_RE),
    (ids.check_spark_conf_key, spark_key_ok, "spark." + LOWER + UPPER + DIGITS + "_-", ids.SPARK_CONF_KEY_RE),
    (ids.check_kafka_config_key, kafka_key_ok, LOWER + DIGITS + "._-", ids.KAFKA_CONFIG_KEY_RE),
    (ids.check_resource_name, resource_ok, LOWER + DIGITS + "-", ids.RESOURCE_NAME_RE),
]
GRAMMAR_IDS = [g[0].__name__ for g in GRAMMARS]


def no_control(s: str) -> bool:
    return not any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in s)


@pytest.mark.parametrize(("check", "oracle", "chars", "pattern"), GRAMMARS, ids=GRAMMAR_IDS)
def test_validator_matches_its_grammar(
    check: Callable[[str], str], oracle: Callable[[str], bool], chars: str, pattern: re.Pattern[str]
) -> None:
    @QUICK
    @given(names(chars, pattern))
    def prop(s: str) -> None:
        if oracle(s):
            assert check(s) == s
            assert no_control(s)
        else:
            with pytest.raises(ids.IdentifierError):
                check(s)

    prop()


@pytest.mark.parametrize(("check", "oracle", "chars", "pattern"), GRAMMARS, ids=GRAMMAR_IDS)
def test_a_trailing_newline_is_refused(
    check: Callable[[str], str], oracle: Callable[[str], bool], chars: str, pattern: re.Pattern[str]
) -> None:
    @QUICK
    @given(st.from_regex(pattern, fullmatch=True).filter(oracle))
    def prop(s: str) -> None:
        for bad in (s + "\n", s + "\r\n", "\n" + s, s + "\x00"):
            with pytest.raises(ids.IdentifierError):
                check(bad)

    prop()


@QUICK
@given(st.from_regex(ids.SEMVER_RE, fullmatch=True))
def test_semver_accepts_its_grammar(v: str) -> None:
    assert ids.check_semver(v) == v
    assert no_control(v) and v.isascii()
    major, minor, patch, release, pre = ids.semver_key(v)
    assert f"{major}.{minor}.{patch}" == v.split("+")[0].split("-")[0]
    assert release == (0 if pre else 1)
    for bad in (v + "\n", v + " ", " " + v):
        with pytest.raises(ids.IdentifierError):
            ids.check_semver(bad)
        with pytest.raises(ids.IdentifierError):
            ids.semver_key(bad)


@QUICK
@given(names(DIGITS + ".-+" + LOWER[:6]))
def test_semver_refuses_what_is_not_a_version(v: str) -> None:
    core = v.split("+")[0].split("-")[0]
    parts = core.split(".")
    plausible = (
        len(parts) == 3
        and all(p and _in(DIGITS, p) and (p == "0" or p[0] != "0") for p in parts)
        and _in(LOWER + UPPER + DIGITS + ".-+", v)
    )
    if not plausible:
        with pytest.raises(ids.IdentifierError):
            ids.check_semver(v)


HIVE_IDENTS = st.from_regex(ids.HIVE_IDENT_RE, fullmatch=True)


@QUICK
@given(names(LOWER + DIGITS + "_."))
def test_split_qualified(name: str) -> None:
    parts = name.split(".")
    if len(parts) == 2 and all(hive_ok(p) for p in parts):
        assert ids.split_qualified(name) == (parts[0], parts[1])
        db, table = parts
        assert ids.quote_hive_qualified(db, table) == f"`{db}`.`{table}`"
        assert quoted_table(name) == f'"{db}"."{table}"'
    else:
        with pytest.raises(ids.IdentifierError):
            ids.split_qualified(name)


@QUICK
@given(names(LOWER + DIGITS + "_"))
def test_identifier_quoting_never_breaks_out(name: str) -> None:
    if hive_ok(name):
        for quote, q in ((ids.quote_hive, "`"), (ids.quote_presto, '"')):
            out = quote(name)
            assert out == f"{q}{name}{q}"
            assert out[1:-1] == name and q not in name  # the only quotes are the outer two
    else:
        for quote in (ids.quote_hive, ids.quote_presto):
            with pytest.raises(ids.IdentifierError):
                quote(name)


def read_spark_literal(lit: str) -> str:
    """Parse one Spark SQL / HiveQL literal: a backslash escapes the next character; the first
    unescaped quote must be the last character."""
    assert lit[0] == "'"
    out, i = [], 1
    while i < len(lit):
        c = lit[i]
        if c == "\\":
            out.append(lit[i + 1])
            i += 2
            continue
        if c == "'":
            assert i == len(lit) - 1, f"quote closes early at {i} in {lit!r}"
            return "".join(out)
        out.append(c)
        i += 1
    raise AssertionError(f"unterminated literal {lit!r}")


def read_presto_literal(lit: str) -> str:
    """Parse one ANSI literal: ``''`` is a quote; a lone quote must be the last character."""
    assert lit[0] == "'"
    out, i = [], 1
    while i < len(lit):
        if lit[i] == "'":
            if lit[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            assert i == len(lit) - 1, f"quote closes early at {i} in {lit!r}"
            return "".join(out)
        out.append(lit[i])
        i += 1
    raise AssertionError(f"unterminated literal {lit!r}")


LITERALS = st.one_of(st.text(alphabet="ab'\\\"`;-\n\x00 é", max_size=40), st.text(max_size=40))


@QUICK
@given(LITERALS)
def test_string_literals_round_trip(value: str) -> None:
    has_control = any(unicodedata.category(c) == "Cc" for c in value)
    for quote, read in (
        (ids.spark_string_literal, read_spark_literal),
        (ids.presto_string_literal, read_presto_literal),
    ):
        if has_control:
            with pytest.raises(ids.IdentifierError):
                quote(value)
        else:
            assert read(quote(value)) == value


@QUICK
@given(st.dictionaries(LITERALS, LITERALS, max_size=4))
def test_table_properties_are_literals(props: dict[str, str]) -> None:
    try:
        sql = hive_ddl.props_sql(props)
    except ids.IdentifierError:
        assert any(unicodedata.category(c) == "Cc" for c in "".join(props) + "".join(props.values()))
        return
    if props:
        assert sql.count("=") >= len(props)


def hive_types(depth: int = 2) -> st.SearchStrategy[tuple[str, str]]:
    """(spelling, canonical) pairs of valid Hive types."""
    prim = st.sampled_from(sorted(ids._PRIMITIVE_TYPES)).map(
        lambda t: (t.upper() if len(t) % 2 else t, "int" if t == "integer" else t)
    )
    sized = st.tuples(st.sampled_from(["varchar", "char"]), st.integers(1, 65535)).map(
        lambda p: (f"{p[0]}( {p[1]} )", f"{p[0]}({p[1]})")
    )
    dec = st.tuples(st.integers(1, 38), st.integers(0, 38)).map(
        lambda p: (f"DECIMAL({p[0]},{p[1]})", f"decimal({p[0]},{p[1]})")
    )
    leaf = st.one_of(prim, sized, dec)
    if depth == 0:
        return leaf
    inner = hive_types(depth - 1)
    arr = inner.map(lambda t: (f"array<{t[0]}>", f"array<{t[1]}>"))
    mp = st.tuples(prim, inner).map(lambda kv: (f"map<{kv[0][0]}, {kv[1][0]}>", f"map<{kv[0][1]},{kv[1][1]}>"))
    struct = st.lists(st.tuples(HIVE_IDENTS.filter(lambda s: len(s) < 20), inner), min_size=1, max_size=3).map(
        lambda fs: (
            "struct<" + ", ".join(f"{n}: {t[0]}" for n, t in fs) + ">",
            "struct<" + ",".join(f"{n}:{t[1]}" for n, t in fs) + ">",
        )
    )
    return st.one_of(leaf, arr, mp, struct)


@QUICK
@given(hive_types())
def test_hive_types_normalize(pair: tuple[str, str]) -> None:
    text, canonical = pair
    assert ids.normalize_hive_type(text) == canonical
    assert ids.normalize_hive_type(canonical) == canonical


@QUICK
@given(names(LOWER + DIGITS + "<>,:() _"))
def test_any_accepted_type_is_plain_ascii_and_canonical(text: str) -> None:
    try:
        out = ids.normalize_hive_type(text)
    except ids.IdentifierError:
        return
    assert _in(LOWER + DIGITS + "_<>,:()", out), out
    assert ids.normalize_hive_type(out) == out


def timestamp_ok(s: str) -> bool:
    if len(s) not in (19, *range(21, 27)):
        return False
    shape = "dddd-dd-dd dd:dd:dd"
    head_ok = all((c in DIGITS) if k == "d" else c == k for c, k in zip(s[:19], shape, strict=True))
    return head_ok and (len(s) == 19 or (s[19] == "." and _in(DIGITS, s[20:])))


@QUICK
@given(st.one_of(names(DIGITS + "-: ."), st.datetimes().map(lambda d: d.isoformat(" ")[:26])))
def test_segment_timestamps(s: str) -> None:
    if timestamp_ok(s):
        assert hive_ddl.check_timestamp(s) == s
    else:
        with pytest.raises(PermanentBackendError):
            hive_ddl.check_timestamp(s)


# --- the jobkit's own copy (it ships with the job and imports only the standard library) --------


def query_name_ok(s: str) -> bool:
    return 1 <= len(s) <= 128 and s[0] in LOWER + UPPER + DIGITS + "_" and _in(LOWER + UPPER + DIGITS + "_.-", s)


def partition_ok(s: str) -> bool:
    first = LOWER + UPPER + DIGITS + "_"
    return 1 <= len(s) <= 128 and s[0] in first and _in(first + ".:+-", s)


@pytest.mark.parametrize(
    ("check", "oracle", "chars"),
    [
        (checks.check_ident, hive_ok, LOWER + DIGITS + "_"),
        (checks.check_query_name, query_name_ok, LOWER + UPPER + DIGITS + "_.-"),
        (checks.check_partition_value, partition_ok, LOWER + DIGITS + "_.:+-"),
    ],
    ids=["check_ident", "check_query_name", "check_partition_value"],
)
def test_jobkit_checks_match_their_grammar(
    check: Callable[[str], str], oracle: Callable[[str], bool], chars: str
) -> None:
    @QUICK
    @given(names(chars))
    def prop(s: str) -> None:
        if oracle(s):
            assert check(s) == s and no_control(s)
        else:
            with pytest.raises(checks.SinkError):
                check(s)

    prop()


@QUICK
@given(LITERALS)
def test_jobkit_quoting(value: str) -> None:
    if hive_ok(value):
        assert checks.quote_ident(value) == f"`{value}`"
    else:
        with pytest.raises(checks.SinkError):
            checks.quote_ident(value)
    if any(c in value for c in "'\\") or any(unicodedata.category(c) == "Cc" for c in value):
        with pytest.raises(checks.SinkError):
            checks.sql_string(value)
    else:
        assert read_presto_literal(checks.sql_string(value)) == value


# --- other grammars in controller/: principals (API tokens) -------------------------------------


def user_ok(s: str) -> bool:
    first = LOWER + UPPER + DIGITS
    return 1 <= len(s) <= 128 and s[0] in first and _in(first + "._@-", s)


def group_ok(s: str) -> bool:
    first = LOWER + UPPER + DIGITS
    return 1 <= len(s) <= 64 and s[0] in first and _in(first + "._-", s)


@QUICK
@given(names(LOWER + UPPER + DIGITS + "._@-"))
def test_principal_names(s: str) -> None:
    from controller.store.tokens import check_groups, check_user

    if user_ok(s):
        assert check_user(s) == s
    else:
        with pytest.raises(ValueError):
            check_user(s)
    if group_ok(s):
        assert check_groups([s]) == [s]
    else:
        with pytest.raises(ValueError):
            check_groups([s])
