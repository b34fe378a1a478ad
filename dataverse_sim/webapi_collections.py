"""Reading the Web API's collections: ``$filter``/``$orderby``/``$top``/``$count``,
server-driven paging with Dataverse's paging cookies, ``$count`` segments, annotations and
change tracking (``Prefer: odata.track-changes`` / ``$deltatoken``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from . import schema
from .annotations import annotator, wanted
from .http_util import Response, odata_response
from .odata_filter import FilterError, compile_filter
from .paging import (
    Cookie,
    PagingError,
    braced,
    dotnet_urlencode,
    encode_outer,
    make_deltatoken,
    parse_deltatoken,
    parse_skiptoken,
)
from .tables import Table, guid_sort_key
from .webapi_query import (
    ApiError,
    Query,
    is_guid,
    parse_orderby,
    parse_query,
    parse_select,
    query_error,
)

MAX_PAGE = 5000
COUNT_LIMIT = 5000
FAST_JSON_ROWS = 500  # pages this large are serialized with ASCII escapes (faster)


def _norm_sort(typ: str, value: Any):
    if value is None:
        return (False, "")
    if typ == schema.STRING:
        return (True, value.lower())
    if typ == schema.GUID:
        return (True, guid_sort_key(value.lower()))
    if typ == schema.DATETIME:
        return (True, value.rstrip("Z"))
    return (True, value)


def _cookie_value(typ: str, value: Any) -> str | None:
    if value is None:
        return None
    if typ == schema.GUID:
        return braced(value)
    if typ == schema.BOOL:
        return "1" if value else "0"
    if typ == schema.FLOAT:
        return repr(float(value))
    return str(value)


def _from_cookie(typ: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        if typ == schema.GUID:
            return text.strip("{}").lower()
        if typ == schema.INT:
            return int(text)
        if typ == schema.FLOAT:
            return float(text)
        if typ == schema.BOOL:
            return text in ("1", "true", "True")
    except ValueError as exc:
        raise PagingError("The paging cookie in $skiptoken could not be parsed.") from exc
    return text


class CollectionQueries:
    """Collection reads, ``$count`` and change tracking (mixed into ``WebApi``)."""

    def _filter(self, table: Table, query: Query):
        text = query.options.get("$filter")
        if text is None:
            return None
        try:
            return compile_filter(
                text, table.types, table.getter, table.logical_name, query.aliases
            )
        except FilterError as exc:
            raise query_error(str(exc)) from exc

    def _count(self, table: Table, raw_query: str) -> Response:
        query = parse_query(raw_query)
        pred = self._filter(table, query)
        with self.store.lock:
            if "$deltatoken" in query.options:
                n = min(self._delta_change_count(table, query.options["$deltatoken"]), COUNT_LIMIT)
            elif pred is None:
                n = min(len(table), COUNT_LIMIT)
            else:
                n = 0
                for row in table.iter_from(None):
                    if pred(row):
                        n += 1
                        if n >= COUNT_LIMIT:
                            break
        resp = Response(200, str(n).encode(), content_type="text/plain")
        resp.header("OData-Version", "4.0")
        return resp

    # ------------------------------------------------------------------ collections
    def _list(self, api: str, table: Table, raw_query: str, prefer) -> Response:
        query = parse_query(raw_query)
        opts = query.options
        tracking = "odata.track-changes" in prefer or "$deltatoken" in opts
        if tracking:
            for opt in ("$filter", "$orderby", "$expand", "$top"):
                if opt in opts:
                    raise ApiError(
                        400,
                        "0x80060888",
                        f'The "{opt}" query parameter isn\'t supported when Change Tracking is '
                        "enabled.",
                    )
            if not self.change_tracking:
                raise ApiError(
                    400,
                    "0x80060888",
                    f"Change tracking is not enabled for the entity '{table.logical_name}'.",
                )
        if "$expand" in opts or "$apply" in opts:
            opt = "$expand" if "$expand" in opts else "$apply"
            raise query_error(f"The query parameter {opt} is not implemented by dataverse_sim.")
        select = parse_select(table.types, opts.get("$select"), table.logical_name)
        orderby = parse_orderby(table, opts.get("$orderby"))
        pred = self._filter(table, query)

        applied: list[str] = []
        page_size = MAX_PAGE
        maxpagesize = prefer.get("odata.maxpagesize")
        has_maxpagesize = False
        if maxpagesize is not None:
            try:
                requested = int(maxpagesize)
            except ValueError:
                requested = None
            if requested is not None and requested > 0:
                page_size = min(requested, MAX_PAGE)
                has_maxpagesize = True
                applied.append(f"odata.maxpagesize={page_size}")
        top = None
        if "$top" in opts:
            raw = opts["$top"]
            if not raw.isdigit():
                raise query_error(
                    f"Invalid value '{raw}' for $top query option found. The $top query option "
                    "requires a non-negative integer value."
                )
            if not has_maxpagesize:
                top = min(int(raw), MAX_PAGE)
        count = False
        if "$count" in opts:
            if opts["$count"] not in ("true", "false"):
                raise query_error(f"'{opts['$count']}' is not a valid count option.")
            count = opts["$count"] == "true"
        annotations = prefer.get("odata.include-annotations")
        want_total = False
        if annotations is not None:
            ann = annotations.strip('"')
            want_total = (
                ann == "*"
                or "totalrecordcount" in ann
                or ann.startswith("Microsoft.Dynamics.CRM.*")
            )
            applied.append(f"odata.include-annotations={annotations}")

        cookie = None
        if "$skiptoken" in opts:
            try:
                cookie = parse_skiptoken(opts["$skiptoken"])
            except PagingError as exc:
                raise ApiError(400, "0x80040203", str(exc)) from exc

        if tracking:
            if "odata.track-changes" in prefer:
                applied.append("odata.track-changes")
            if "$deltatoken" in opts:
                return self._delta(api, table, query, select, page_size, cookie, applied)

        sel = f"({','.join(select)})" if select else ""
        context = f"{api}/$metadata#{table.entity_set}{sel}"
        render = self._with_annotations(table, table.renderer(select), annotations)
        limit = top if top is not None else page_size
        with self.store.lock:
            if orderby:
                rows, more = self._page_ordered(table, orderby, pred, cookie, limit)
            else:
                rows, more = self._page_by_key(table, pred, cookie, limit)
            total = None
            if count or want_total:
                total = self._capped_count(table, pred)
            tracking_version = None
            if tracking:
                if cookie is not None and cookie.extra.get("trackingversion", "").isdigit():
                    tracking_version = int(cookie.extra["trackingversion"])
                else:
                    tracking_version = self.store.version
            values = [render(r) for r in rows]
        body: dict[str, Any] = {"@odata.context": context}
        if count:
            body["@odata.count"] = total
        if want_total:
            body["@Microsoft.Dynamics.CRM.totalrecordcount"] = total if count else -1
            body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = bool(
                total is not None and total >= COUNT_LIMIT
            )
        body["value"] = values
        if more and top is None and rows:
            pagenumber = cookie.pagenumber + 1 if cookie else 2
            nxt = self._next_cookie(table, orderby, rows, pagenumber, tracking, tracking_version)
            body["@odata.nextLink"] = self._link(
                api, table, query, "$skiptoken", encode_outer(nxt.skiptoken())
            )
        elif tracking:
            token = make_deltatoken(tracking_version, self.clock())
            body["@odata.deltaLink"] = self._link(
                api, table, query, "$deltatoken", dotnet_urlencode(token), keep_only_select=True
            )
        resp = odata_response(200, body, fast=len(values) >= FAST_JSON_ROWS)
        for item in applied:
            resp.header("Preference-Applied", item)
        return resp

    def _with_annotations(self, table: Table, render, annotations: str | None):
        formatted, lookups = wanted(annotations)
        if not (formatted or lookups):
            return render
        tables = self.store.tables()

        def names(target: str, guid: str) -> str | None:
            other = tables.get(target + "s")
            if other is None:
                return None
            row = other.get(guid)
            return None if row is None else other.value(row, other.primary_name)

        annotate = annotator(table, names, formatted, lookups)
        return lambda row: annotate(render(row))

    def _capped_count(self, table: Table, pred) -> int:
        if pred is None:
            return min(len(table), COUNT_LIMIT)
        n = 0
        for row in table.iter_from(None):
            if pred(row):
                n += 1
                if n >= COUNT_LIMIT:
                    break
        return n

    def _page_by_key(self, table: Table, pred, cookie: Cookie | None, limit: int):
        after = None
        if cookie is not None:
            found, last = cookie.last(table.primary_key)
            if not found or last is None or not is_guid(last.strip("{}")):
                raise ApiError(
                    400, "0x80040203", "The paging cookie in $skiptoken does not match this query."
                )
            after = guid_sort_key(last.strip("{}").lower())
        rows = []
        want = limit + 1
        for row in table.iter_from(after):
            if pred is None or pred(row):
                rows.append(row)
                if len(rows) >= want:
                    break
        more = len(rows) > limit
        return rows[:limit], more

    def _page_ordered(self, table: Table, orderby, pred, cookie: Cookie | None, limit: int):
        getters = [(table.getter(c), table.types[c], desc) for c, desc in orderby]
        rows = [r for r in table.iter_from(None) if pred is None or pred(r)]
        # stable multi-key sort: primary key ascending is the final tie-breaker
        for g, typ, desc in reversed(getters):
            rows.sort(key=lambda r, g=g, typ=typ: _norm_sort(typ, g(r)), reverse=desc)
        start = 0
        if cookie is not None:
            last_keys = []
            for col, _desc in orderby:
                found, text = cookie.last(col)
                if not found:
                    raise ApiError(
                        400,
                        "0x80040203",
                        "The paging cookie in $skiptoken does not match this query.",
                    )
                last_keys.append(_norm_sort(table.types[col], _from_cookie(table.types[col], text)))
            found, pk = cookie.last(table.primary_key)
            if not found or pk is None:
                raise ApiError(
                    400, "0x80040203", "The paging cookie in $skiptoken does not match this query."
                )
            last_pk = guid_sort_key(pk.strip("{}").lower())
            dirs = [desc for _c, desc in orderby]

            def after(row) -> bool:
                for (g, typ, _d), lk, desc in zip(getters, last_keys, dirs, strict=True):
                    v = _norm_sort(typ, g(row))
                    if v != lk:
                        return (v > lk) != desc
                return guid_sort_key(row[0]) > last_pk

            lo, hi = 0, len(rows)
            while lo < hi:
                mid = (lo + hi) // 2
                if after(rows[mid]):
                    hi = mid
                else:
                    lo = mid + 1
            start = lo
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return page, more

    def _next_cookie(self, table, orderby, rows, pagenumber, tracking, tracking_version):
        first, last = rows[0], rows[-1]
        cols = []
        for col, _desc in orderby:
            g = table.getter(col)
            typ = table.types[col]
            cols.append((col, _cookie_value(typ, g(last)), _cookie_value(typ, g(first))))
        cols.append((table.primary_key, braced(last[0]), braced(first[0])))
        extra = {}
        if tracking and tracking_version is not None:
            extra["trackingversion"] = str(tracking_version)
        return Cookie(
            pagenumber=pagenumber,
            page=pagenumber - 1,
            columns=cols,
            istracking=bool(tracking),
            extra=extra,
        )

    def _link(self, api, table, query: Query, name: str, encoded: str, keep_only_select=False):
        parts = []
        for key, value in query.pairs:
            if key in ("$skiptoken", "$deltatoken"):
                continue
            if keep_only_select and key != "$select":
                continue
            parts.append(f"{quote(key, safe='$@')}={quote(value, safe="$()',/:@*;=!")}")
        parts.append(f"{name}={encoded}")
        return f"{api}/{table.entity_set}?" + "&".join(parts)

    # ------------------------------------------------------------------ change tracking
    def _since(self, table: Table, deltatoken: str) -> int:
        """The version a delta token was issued at (checked for expiry)."""
        if not self.change_tracking:
            raise ApiError(
                400,
                "0x80060888",
                f"Change tracking is not enabled for the entity '{table.logical_name}'.",
            )
        try:
            since, issued = parse_deltatoken(deltatoken)
        except PagingError as exc:
            raise ApiError(400, "0x80060888", str(exc)) from exc
        if self.clock() - issued > self.change_tracking_days * 86400:
            raise ApiError(
                400,
                "0x80044352",
                "Version stamp associated with the client has expired. Please perform a full sync.",
            )
        return since

    def _delta_change_count(self, table: Table, deltatoken: str) -> int:
        """``<set>/$count?$deltatoken=...``: changed rows plus deletions since the token."""
        since = self._since(table, deltatoken)
        with self.store.lock:
            upper = self.store.version
            changed = sum(1 for _ in table.changed(since, upper))
            deleted = sum(
                1
                for v, entity_set, _guid in self.store.tombstones
                if entity_set == table.entity_set and since < v <= upper
            )
        return changed + deleted

    def _delta(self, api, table: Table, query: Query, select, page_size, cookie, applied):
        since = self._since(table, query.options["$deltatoken"])
        render = table.renderer(select)
        sel = f"({','.join(select)})" if select else ""
        deleted_context = f"{api}/$metadata#{table.entity_set}/$deletedEntity"
        with self.store.lock:
            if cookie is not None and cookie.extra.get("upper", "").isdigit():
                upper = int(cookie.extra["upper"])
                phase = int(cookie.extra.get("phase", "0"))
                after_version = int(cookie.extra.get("after", "0"))
            else:
                upper = self.store.version
                phase, after_version = 0, since
            vi = table.version_index
            items: list[tuple[int, int, Any]] = []
            if phase == 0:
                items.extend((0, r[vi], r) for r in table.changed(after_version, upper))
                floor = since
            else:
                floor = after_version
            deletes = sorted(
                (v, guid)
                for v, entity_set, guid in self.store.tombstones
                if entity_set == table.entity_set and floor < v <= upper
            )
            items.extend((1, v, guid) for v, guid in deletes)
            page = items[:page_size]
            more = len(items) > page_size
            values = []
            for kind, _v, item in page:
                if kind == 0:
                    values.append(render(item))
                else:
                    values.append(
                        {"@odata.context": deleted_context, "id": item, "reason": "deleted"}
                    )
        body: dict[str, Any] = {"@odata.context": f"{api}/$metadata#{table.entity_set}{sel}/$delta"}
        body["value"] = values
        if more:
            last_kind, last_version, _ = page[-1]
            pagenumber = cookie.pagenumber + 1 if cookie else 2
            nxt = Cookie(
                pagenumber=pagenumber,
                page=pagenumber - 1,
                columns=[],
                istracking=True,
                extra={"upper": str(upper), "phase": str(last_kind), "after": str(last_version)},
            )
            body["@odata.nextLink"] = self._link(
                api, table, query, "$skiptoken", encode_outer(nxt.skiptoken())
            )
            # the delta token must survive in the next link
            body["@odata.nextLink"] += "&$deltatoken=" + dotnet_urlencode(
                query.options["$deltatoken"]
            )
        else:
            token = make_deltatoken(upper, self.clock())
            body["@odata.deltaLink"] = self._link(
                api, table, query, "$deltatoken", dotnet_urlencode(token), keep_only_select=True
            )
        resp = odata_response(200, body)
        # Delta pages carry no annotations here (Microsoft doesn't document that they do),
        # so the preference isn't reported as applied to them either.
        for item in applied:
            if not item.startswith("odata.include-annotations"):
                resp.header("Preference-Applied", item)
        return resp
