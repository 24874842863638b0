"""Shared by the dashboard checks: loading the dashboards, walking their
panels and queries, expanding Grafana variables, and a small PromQL scanner that finds every
vector selector with its matchers, range and enclosing function (enough for the lint rules; the
real parse is left to promtool and Prometheus), and the report every check prints."""
import glob
import json
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD_DIR = os.path.join(REPO, "grafana", "dashboards")
METRICS_DOC = os.path.join(REPO, "docs", "metrics.md")
APP_SECTION = "## App-side metrics the rules expect"


def dashboard_files(directory=DASHBOARD_DIR):
    return sorted(glob.glob(os.path.join(directory, "*.json")))


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def panels(dashboard):
    """Every panel, rows included, with the panels of collapsed rows."""
    for p in dashboard.get("panels") or []:
        yield p
        for inner in p.get("panels") or []:
            yield inner


def targets(dashboard):
    """(panel, target) for every query of every panel."""
    for p in panels(dashboard):
        for t in p.get("targets") or []:
            yield p, t


# Values a query gets when it is run outside Grafana. $__rate_interval and friends are given
# sensible fixed durations; template variables match everything unless the caller says otherwise.
DEFAULT_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "15000",
}
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variables_used(expr):
    return {next(g for g in m.groups() if g) for m in VARIABLE_RE.finditer(expr)}


def expand(expr, values):
    """Replaces $var, ${var} and [[var]] by values[var]; unknown variables stay as they are."""
    def sub(m):
        name = next(g for g in m.groups() if g)
        return values.get(name, m.group(0))
    return VARIABLE_RE.sub(sub, expr)


# ---------------------------------------------------------------------------------------------
# PromQL scanner

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w]))
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<var>\$\{[^}]+\}|\$\w+|\[\[\w+\]\])
  | (?P<ident>[a-zA-Z_:][\w:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
""", re.VERBOSE)

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"} | LABEL_LIST_KEYWORDS
MATCHER_RE = re.compile(r"""\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)\s*,?""")


class PromQLError(ValueError):
    pass


def tokenize(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise PromQLError("cannot read %r at offset %d" % (expr[pos:pos + 20], pos))
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(0)))
        pos = m.end()
    return out


class Selector:
    def __init__(self, metric, matchers, range_, function):
        self.metric = metric            # None for a bare {…}
        self.matchers = matchers        # [(label, op, value without quotes)]
        self.range = range_             # text inside [...] or None
        self.function = function        # innermost enclosing function/aggregation, or None

    def has(self, label, op, value):
        return (label, op, value) in self.matchers

    def __repr__(self):
        return "%s{%s}%s" % (self.metric or "", ", ".join(
            "%s%s%r" % m for m in self.matchers), "[%s]" % self.range if self.range else "")


def _skip_group(tokens, i, open_, close):
    """tokens[i] is `open_`; returns the index after its matching `close`."""
    depth = 0
    while i < len(tokens):
        if tokens[i][1] == open_:
            depth += 1
        elif tokens[i][1] == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PromQLError("unbalanced %s" % open_)


def selectors(expr):
    """Every vector selector of a PromQL expression (Grafana variables may be left in it)."""
    tokens = tokenize(expr)
    found = []
    stack = []          # enclosing function names (None for a plain parenthesis)
    pending = None      # function name whose "(" comes next (after by/without lists)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and text in LABEL_LIST_KEYWORDS and nxt == "(":
            i = _skip_group(tokens, i + 1, "(", ")")
            continue
        if kind == "ident" and text == "offset":
            i += 2 if nxt != "-" else 3
            continue
        if kind == "ident" and (nxt == "(" or (text in AGGREGATIONS and nxt in ("by", "without"))):
            pending = text
            i += 1
            continue
        if text == "(":
            stack.append(pending)
            pending = None
            i += 1
            continue
        if text == ")":
            if not stack:
                raise PromQLError("unbalanced )")
            stack.pop()
            i += 1
            continue
        if text == "@":
            i += 2
            continue
        if (kind == "ident" and text not in KEYWORDS) or text == "{":
            metric = text if kind == "ident" else None
            j = i + 1 if metric else i
            matchers = []
            if j < len(tokens) and tokens[j][1] == "{":
                end = _skip_group(tokens, j, "{", "}")
                matchers = parse_matchers("".join(t[1] for t in tokens[j + 1:end - 1]))
                j = end
            range_ = None
            if j < len(tokens) and tokens[j][1] == "[":
                end = _skip_group(tokens, j, "[", "]")
                range_ = "".join(t[1] for t in tokens[j + 1:end - 1])
                j = end
            found.append(Selector(metric, matchers, range_, stack[-1] if stack else None))
            i = j
            continue
        if text == "[":   # a subquery's range after a parenthesis
            i = _skip_group(tokens, i, "[", "]")
            continue
        i += 1
    if stack:
        raise PromQLError("unbalanced (")
    return found


def parse_matchers(body):
    matchers, pos = [], 0
    body = body.strip()
    while pos < len(body):
        m = MATCHER_RE.match(body, pos)
        if not m:
            raise PromQLError("cannot read label matchers {%s}" % body)
        matchers.append((m.group(1), m.group(2), m.group(3)[1:-1]))
        pos = m.end()
    return matchers


def app_metrics(path=METRICS_DOC):
    """{metric: its labels} of docs/metrics.md's app-side section, the one place the application
    metrics the rules read are spelled: each row's first `name`, and the labels of any
    `name{a,b}` or `name_bucket{a,b}` in that row (a histogram's `le` included)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.find(APP_SECTION)
    if start < 0:
        return {}
    end = text.find("\n## ", start + len(APP_SECTION))
    found = {}
    for row in text[start:end if end >= 0 else len(text)].splitlines():
        m = re.match(r"^\| `([a-z_][a-z0-9_]*)`", row)
        if m:
            name = base_metric(m.group(1))
            found[name] = {label.strip() for spelled, body in
                           re.findall(r"`([a-z_][a-z0-9_]*)\{([^}]*)\}`", row)
                           if base_metric(spelled) == name for label in body.split(",")}
    return found


def base_metric(name):
    """The metric a series belongs to: a histogram's _bucket/_sum/_count belong to it."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def report(label, results):
    """Prints `ok   NAME` or `FAIL NAME` with its errors for each (name, errors) of `results`,
    then `LABEL: N passed, M failed`; returns the exit status (1 on any failure)."""
    passed = failed = 0
    for name, errors in results:
        if errors:
            failed += 1
            print("FAIL %s" % name)
            for e in errors:
                print("     - %s" % e)
        else:
            passed += 1
            print("ok   %s" % name)
    print("%s: %d passed, %d failed" % (label, passed, failed))
    return 1 if failed else 0
