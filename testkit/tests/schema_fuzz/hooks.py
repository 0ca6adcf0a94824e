"""Schemathesis hooks for the query API's schema fuzz (testkit/tests/schema_fuzz.rs).

OpenAPI 3.0 describes each field on its own; a few rules of the API relate two
fields, and the document states them in its descriptions:

* a range's `to` is after its `from`, at most TALLY_QUERY_MAX_RANGE_DAYS (731)
  days later (`/count`'s `from`/`to`, and `{"from", "to"}` ranges in bodies);
  `/count` without `to` ends now, so a lone `from` is in the last 731 days;
* `/live`'s `from_event` and `to_event` go together;
* a saved definition is a funnel under `/funnels` and a dashboard under
  `/dashboards`;
* a `tz` is an IANA time zone name (the document gives its form, not the list);
* a report's `breakdown` is the `activity` and `retention` reports', which
  are per UTC day (granularity day; week or month for retention; tz UTC),
  never count bots and have no rollup; `periods` and `cohort` are
  retention's;
* a funnel's `exclusions` apply to the relaxed order (not strict, not any), each `between` two of its
  steps (1 <= from < to <= the number of steps); its `users.step` is one of its
  steps (before the last when `dropped`).

`/query`'s `q` (the body's JSON in the query string) is dropped: the body
carries the request. And GET/PUT of a saved item use the items the test saved
(`TALLY_FUZZ_SAVED_IDS`), so they reach the database.

For *positive* cases (the ones the document allows, which the service must
accept) this hook makes generated cases keep those rules, changing as little
as possible and keeping each value's form (epoch ms as a number or digits,
RFC 3339). Every value still comes from the document's own schemas; negative
cases are left alone.
"""

import os
import time
from datetime import datetime, timezone

import schemathesis

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MAX_SPAN_MS = 731 * DAY_MS
MAX_MS = 253_402_300_799_999


def _ms(value):
    """Epoch ms of a timestamp as the document allows it, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        return int(parsed.timestamp() * 1000)
    return None


def _like(example, ms):
    """`ms` in the form of `example`."""
    ms = max(0, min(ms, MAX_MS))
    if isinstance(example, int) and not isinstance(example, bool):
        return ms
    if isinstance(example, str) and example.isdigit():
        return str(ms)
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fix_pair(bounds):
    """Makes `bounds["to"]` one hour after `bounds["from"]` unless it already
    follows it within the span (in place; `from` moves only when it is within
    an hour of the latest time)."""
    start, end = _ms(bounds.get("from")), _ms(bounds.get("to"))
    if start is None or end is None:
        return
    if start < end <= start + MAX_SPAN_MS:
        return
    if start > MAX_MS - HOUR_MS:
        start = MAX_MS - HOUR_MS
        bounds["from"] = _like(bounds["from"], start)
    bounds["to"] = _like(bounds["to"], start + HOUR_MS)


def _fix_ranges(value):
    """Every `{"from", "to"}` range inside a body (also in saved definitions)."""
    if isinstance(value, dict):
        if "from" in value and "to" in value:
            _fix_pair(value)
        for inner in value.values():
            _fix_ranges(inner)
    elif isinstance(value, list):
        for inner in value:
            _fix_ranges(inner)


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def _zone(value):
    """A real zone in place of a generated name (the same one for the same name)."""
    return ZONES[sum(map(ord, str(value))) % len(ZONES)]


def _fix_zones(value):
    """Every `tz` inside a body (also in saved definitions)."""
    if isinstance(value, dict):
        if isinstance(value.get("tz"), str):
            value["tz"] = _zone(value["tz"])
        for inner in value.values():
            _fix_zones(inner)
    elif isinstance(value, list):
        for inner in value:
            _fix_zones(inner)


def _fix_funnels(value):
    """Every funnel body inside a body (also in saved definitions and widgets)."""
    if isinstance(value, dict):
        steps = value.get("steps")
        exclusions = value.get("exclusions")
        users = value.get("users")
        if isinstance(steps, list) and len(steps) >= 2 and isinstance(users, dict) and isinstance(users.get("step"), int):
            last = len(steps) - 1 if users.get("dropped") is True else len(steps)
            if not 1 <= users["step"] <= last:
                users["step"] = 1
        if isinstance(steps, list) and isinstance(exclusions, list):
            if value.get("order") in ("strict", "any"):
                value.pop("exclusions")
            else:
                for exclusion in exclusions:
                    between = exclusion.get("between") if isinstance(exclusion, dict) else None
                    if isinstance(between, list) and len(between) == 2:
                        low, high = between
                        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low < high <= len(steps)):
                            exclusion["between"] = [1, len(steps)]
        for inner in value.values():
            _fix_funnels(inner)
    elif isinstance(value, list):
        for inner in value:
            _fix_funnels(inner)


def _saved_ids():
    """`TALLY_FUZZ_SAVED_IDS`, e.g. `dashboards=3,funnels=4`, as a dict."""
    pairs = (item.split("=", 1) for item in os.environ.get("TALLY_FUZZ_SAVED_IDS", "").split(",") if "=" in item)
    return {kind: int(value) for kind, value in pairs}


def _positive(case):
    meta = getattr(case, "meta", None)
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context, case):
    if not _positive(case):
        return case
    path = case.operation.path
    query = case.query if isinstance(case.query, dict) else None
    if path.endswith("/count") and query is not None:
        if "from" in query and "to" in query:
            _fix_pair(query)
        elif "from" in query:
            start = _ms(query["from"])
            now = int(time.time() * 1000)
            if start is not None and not now - MAX_SPAN_MS + HOUR_MS < start < now:
                query["from"] = _like(query["from"], now - HOUR_MS)
    if path.endswith("/live") and query is not None:
        if ("from_event" in query) != ("to_event" in query):
            query.pop("from_event", None)
            query.pop("to_event", None)
    if path.endswith("/{kind}") or path.endswith("/{kind}/{id}"):
        body = case.body if isinstance(case.body, dict) else None
        definition = body.get("definition") if body else None
        if isinstance(definition, dict):
            kind = "dashboards" if "widgets" in definition else "funnels"
            case.path_parameters["kind"] = kind
    if path.endswith("/{kind}/{id}") and case.method.upper() in ("GET", "PUT"):
        # Read and replace items that exist (the test saved one of each kind), so
        # these requests reach the database rather than stopping at 404.
        saved = _saved_ids()
        kind = case.path_parameters.get("kind")
        if kind in saved:
            case.path_parameters["id"] = saved[kind]
    if path.endswith("/query") and query is not None:
        # `q` is the body in another place: the generated body is the request.
        query.pop("q", None)
    if query is not None and isinstance(query.get("tz"), str):
        query["tz"] = _zone(query["tz"])
    if path.endswith("/reports/{report}") and query is not None:
        report = case.path_parameters.get("report")
        if report in ("activity", "retention"):
            # Per UTC day, persons without bots, from reports or raw rows;
            # retention's periods are UTC days, weeks or months.
            periods = ("day",) if report == "activity" else ("day", "week", "month")
            if query.get("tz") not in (None, "UTC"):
                query["tz"] = "UTC"
            if query.get("granularity") not in (None,) + periods:
                query["granularity"] = "day"
            if query.get("include_bots") in (True, "true"):
                query.pop("include_bots")
            if query.get("source") == "rollup":
                query["source"] = "raw"
        else:
            query.pop("breakdown", None)
            if query.get("granularity") in ("week", "month"):
                query["granularity"] = "day"
        if report != "retention":
            query.pop("periods", None)
            query.pop("cohort", None)
    if isinstance(case.body, (dict, list)):
        _fix_ranges(case.body)
        _fix_zones(case.body)
        _fix_funnels(case.body)
    return case
