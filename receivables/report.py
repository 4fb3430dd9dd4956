"""The KPI report: a self-contained HTML page with inline SVG charts, a CSV and a summary."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from html import escape
from pathlib import Path

from receivables.kpis import (
    AGING_BUCKETS,
    CONTACT_OUTCOMES,
    CURVE_DAYS,
    FUNNEL_DAYS,
    RECOVERY_WINDOWS,
    RULE_DECISIONS,
    AgingPoint,
    CurrencyAging,
    DisputeFigures,
    DsoPoint,
    KpiReport,
    PortfolioFigures,
    PromiseFigures,
    ReconciliationFigures,
    RecoveryCurve,
    RecoveryPoint,
    TaskFigures,
)
from receivables.money import Money, exponent_of, format_amount
from receivables.planning import format_local

MAX_GROUP_BARS = 15  # the aging chart keeps the groups with the largest open balance
CURVE_TABLE_STEP = 5
MAX_DOTS = 36
TASK_FIELDS = ("opened", "done", "cancelled", "escalated", "deadlines", "deadlines_met")
PROMISE_FIELDS = ("recorded", "kept", "broken", "cancelled", "open_at_end")

# Okabe-Ito colours: told apart by people with the common colour-vision deficiencies.
BUCKET_COLOURS = {
    "current": "#009E73",
    "1-30": "#56B4E9",
    "31-60": "#E69F00",
    "61-90": "#D55E00",
    "90+": "#882255",
    "no due date": "#999999",
}
SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
FUNNEL_COLOURS = {"planned": "#999999", "sent": "#0072B2", "paid": "#009E73"}


# --- plain numbers for people ---


def money(minor_units: int, currency: str) -> str:
    """An amount as every operator view shows it: ``900.000 CLP``, ``1.234,50 USD``."""
    return format_amount(minor_units, currency)


def percent(share: float | None) -> str:
    """A share with one decimal, ``57,1%``, or a dash when it is unknown."""
    return "—" if share is None else _decimal_comma(f"{share:.1%}")


def days_text(days: float | None) -> str:
    """A number of days with one decimal, ``12,5 days``, or a dash when it is unknown."""
    return "—" if days is None else f"{_decimal_comma(f'{days:.1f}')} days"


def whole_days(days: int | None) -> str:
    """A whole number of days, ``1 day``, ``3 days``, or a dash when it is unknown."""
    if days is None:
        return "—"
    return "1 day" if days == 1 else f"{days} days"


def _decimal_comma(figure: str) -> str:
    # Amounts read "3.138.820 CLP" (es-CL): a figure beside them with a decimal point
    # would read as thousands to a Chilean team. The CSV keeps plain numbers for tools.
    return figure.replace(".", ",")


def invoices(count: int) -> str:
    """A count of invoices in words: ``1 invoice``, ``3 invoices``."""
    return f"{count} invoice" if count == 1 else f"{count} invoices"


def _compact(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from zero up to at least ``top``, about ``count`` of them."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


# --- inline SVG charts ---


@dataclass(frozen=True)
class Series:
    """One line of a line chart, with its legend label."""

    label: str
    points: tuple[tuple[float, float], ...]
    colour: str
    dashed: bool = False


@dataclass(frozen=True)
class ChartText:
    """What a chart says to every reader: id, title, description and axis labels."""

    chart_id: str
    title: str
    description: str
    x_label: str
    y_label: str


def _svg_open(text: ChartText, width: int, height: int) -> str:
    cid = escape(text.chart_id)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{cid}-title {cid}-desc">'
        f'<title id="{cid}-title">{escape(text.title)}</title>'
        f'<desc id="{cid}-desc">{escape(text.description)}</desc>'
    )


def _label(
    x: float, y: float, text: str, *, anchor: str = "middle", extra: str = ""
) -> str:
    place = f'x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"'
    return f"<text {place}{extra}>{escape(text)}</text>"


def _legend(
    items: Sequence[tuple[str, str]], x: float, y: float, *, dashed: Sequence[bool] = ()
) -> str:
    # Line charts get a line sample per entry, so a dashed comparison reads as dashed.
    parts: list[str] = []
    left = x
    for index, (label, colour) in enumerate(items):
        if dashed:
            dash = ' stroke-dasharray="6 4"' if dashed[index] else ""
            parts.append(
                f'<line x1="{left:.1f}" x2="{left + 22:.1f}" y1="{y - 4:.1f}" '
                f'y2="{y - 4:.1f}" stroke="{colour}" stroke-width="2"{dash}/>'
            )
            left += 10
        else:
            parts.append(
                f'<rect x="{left:.1f}" y="{y - 10:.1f}" width="12" height="12" '
                f'fill="{colour}"/>'
            )
        parts.append(_label(left + 16, y, label, anchor="start"))
        left += 28 + 7 * len(label)
    return "".join(parts)


def _empty_chart(text: ChartText, message: str) -> str:
    return (
        _svg_open(text, 720, 80)
        + _label(360, 45, message, extra=' class="empty"')
        + "</svg>"
    )


def line_chart(
    text: ChartText,
    series: Sequence[Series],
    *,
    x_range: tuple[float, float],
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[float],
    y_format: Callable[[float], str],
) -> str:
    """A line chart with axes, ticks, legend and a dot on every point."""
    if not any(s.points for s in series):
        return _empty_chart(text, "no data for this chart in the period")
    width, height, left, right, top, bottom = 760, 340, 80, 48, 40, 60
    x_lo, x_hi = x_range[0], max(x_range[1], x_range[0] + 1)
    y_hi = y_ticks[-1] or 1.0

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - y / y_hi * (height - top - bottom)

    box = PlotBox(width, height, left, right, top, bottom)
    parts = [_svg_open(text, width, height), _axes(text, box)]
    for tick in y_ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" ')
        parts.append(f'y1="{sy(tick):.1f}" y2="{sy(tick):.1f}"/>')
        parts.append(_label(left - 6, sy(tick) + 4, y_format(tick), anchor="end"))
    for x, label in x_ticks:
        parts.append(_label(sx(x), height - bottom + 18, label))
    for line in series:
        parts.append(_polyline(line, sx, sy))
    parts.append(
        _legend(
            [(s.label, s.colour) for s in series],
            left,
            20,
            dashed=[s.dashed for s in series],
        )
    )
    return "".join(parts) + "</svg>"


@dataclass(frozen=True)
class PlotBox:
    """The size of a chart and the margins around its plot area, in pixels."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    @property
    def base(self) -> int:
        """Where the horizontal axis runs."""
        return self.height - self.bottom


def _axes(text: ChartText, box: PlotBox) -> str:
    middle = (box.top + box.base) / 2
    return (
        f'<line class="axis" x1="{box.left}" y1="{box.top - 8}" x2="{box.left}" '
        f'y2="{box.base}"/><line class="axis" x1="{box.left}" y1="{box.base}" '
        f'x2="{box.width - box.right}" y2="{box.base}"/>'
        + _label((box.left + box.width - box.right) / 2, box.height - 12, text.x_label)
        + _label(
            16, middle, text.y_label, extra=f' transform="rotate(-90 16 {middle:.1f})"'
        )
    )


def _polyline(
    line: Series, sx: Callable[[float], float], sy: Callable[[float], float]
) -> str:
    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line.points)
    dash = ' stroke-dasharray="6 4"' if line.dashed else ""
    # Dots mark each value of a short series; on a long one they would blur the line.
    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{line.colour}"/>'
        for x, y in (line.points if len(line.points) <= MAX_DOTS else ())
    )
    return (
        f'<polyline fill="none" stroke="{line.colour}" stroke-width="2"{dash} '
        f'points="{coords}"/>' + dots
    )


def bar_chart(
    text: ChartText,
    rows: Sequence[tuple[str, Sequence[float]]],
    segments: Sequence[tuple[str, str]],
    *,
    stacked: bool,
    value_format: Callable[[float], str],
    detail_format: Callable[[float], str],
    empty: str = "nothing to show for this chart",
) -> str:
    """Horizontal bars, one row per label: stacked segments, or side by side."""
    if not rows or not any(any(values) for _, values in rows):
        return _empty_chart(text, empty)
    per_row = 1 if stacked else len(segments)
    band = 14 * per_row + 12
    width, left, right, top, bottom = 760, 170, 40, 40, 60
    height = top + band * len(rows) + bottom
    totals = [sum(v) if stacked else max(v) for _, v in rows]
    ticks = nice_ticks(max(totals))

    def sx(value: float) -> float:
        return left + value / ticks[-1] * (width - left - right)

    box = PlotBox(width, height, left, right, top, bottom)
    parts = [_svg_open(text, width, height), _axes(text, box)]
    for tick in ticks:
        parts.append(
            f'<line class="grid" x1="{sx(tick):.1f}" x2="{sx(tick):.1f}" y1="{top}" '
            f'y2="{height - bottom}"/>'
        )
        parts.append(_label(sx(tick), height - bottom + 18, value_format(tick)))
    for index, (label, values) in enumerate(rows):
        y = top + index * band + 6
        parts.append(_label(left - 8, y + band / 2, _short(label), anchor="end"))
        tips = [
            f"{label}: {detail_format(value)}"
            for value, (label, _) in zip(values, segments, strict=True)
        ]
        parts.append(_bars(values, tips, segments, sx, y, stacked=stacked))
    parts.append(_legend(segments, left, 20))
    return "".join(parts) + "</svg>"


def _bars(
    values: Sequence[float],
    tips: Sequence[str],
    segments: Sequence[tuple[str, str]],
    sx: Callable[[float], float],
    y: float,
    *,
    stacked: bool,
) -> str:
    parts, start = [], 0.0
    for index, (value, tip, (_, colour)) in enumerate(
        zip(values, tips, segments, strict=True)
    ):
        x0 = sx(start) if stacked else sx(0)
        x1 = sx(start + value) if stacked else sx(value)
        top = y if stacked else y + index * 14
        parts.append(
            f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(0.0, x1 - x0):.1f}" '
            f'height="{22 if stacked else 12}" fill="{colour}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        start += value if stacked else 0.0
    return "".join(parts)


def _short(label: str, limit: int = 24) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def column_chart(
    text: ChartText,
    columns: Sequence[tuple[str, Sequence[float]]],
    segments: Sequence[tuple[str, str]],
    *,
    value_format: Callable[[float], str],
    detail_format: Callable[[float], str],
    empty: str = "nothing to show for this chart",
) -> str:
    """Vertical stacked bars, one column per label from left to right, as over time."""
    if not columns or not any(any(values) for _, values in columns):
        return _empty_chart(text, empty)
    width, left, right = 760, 80, 24
    pitch = (width - left - right) / len(columns)
    # Labels wider than their column are turned, so that neighbours never overlap;
    # turned labels need more room under the axis.
    turned = pitch < 7 * max(len(label) for label, _ in columns) + 8
    bottom = 100 if turned else 60
    box = PlotBox(width, 290 + bottom, left, right, top=40, bottom=bottom)
    ticks = nice_ticks(max(sum(values) for _, values in columns))

    def sy(value: float) -> float:
        return box.base - value / ticks[-1] * (box.base - box.top)

    parts = [_svg_open(text, box.width, box.height), _axes(text, box)]
    for tick in ticks:
        parts.append(
            f'<line class="grid" x1="{box.left}" x2="{box.width - box.right}" '
            f'y1="{sy(tick):.1f}" y2="{sy(tick):.1f}"/>'
        )
        parts.append(
            _label(box.left - 6, sy(tick) + 4, value_format(tick), anchor="end")
        )
    bar = min(40.0, pitch * 0.7)
    for index, (label, values) in enumerate(columns):
        centre = box.left + pitch * (index + 0.5)
        pieces = [
            (f"{label}, {segment}: {detail_format(value)}", colour, value)
            for value, (segment, colour) in zip(values, segments, strict=True)
        ]
        parts.append(_column(pieces, sy, centre - bar / 2, bar))
        parts.append(_column_label(centre, box.base + 16, label, turned=turned))
    parts.append(_legend(segments, box.left, 20))
    return "".join(parts) + "</svg>"


def _column(
    pieces: Sequence[tuple[str, str, float]],
    sy: Callable[[float], float],
    x: float,
    width: float,
) -> str:
    # Each piece is (tooltip, colour, value), stacked from the axis up.
    parts, start = [], 0.0
    for tip, colour, value in pieces:
        if value <= 0:
            continue  # an empty piece would leave a hairline on the column
        top, bottom = sy(start + value), sy(start)
        parts.append(
            f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{bottom - top:.1f}" fill="{colour}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        start += value
    return "".join(parts)


def _column_label(x: float, y: float, label: str, *, turned: bool) -> str:
    if not turned:
        return _label(x, y, label)
    return _label(
        x, y, label, anchor="end", extra=f' transform="rotate(-45 {x:.1f} {y:.1f})"'
    )


# --- HTML pieces ---


def _table(
    caption: str,
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    text_columns: Sequence[int] = (),
) -> str:
    header = "".join(f'<th scope="col">{escape(cell)}</th>' for cell in head)

    def cell(index: int, text: str) -> str:
        kind = ' class="text"' if index in text_columns else ""
        return f"<td{kind}>{escape(text)}</td>"

    body = "".join(
        "<tr>"
        + f'<th scope="row">{escape(row[0])}</th>'
        + "".join(cell(i, text) for i, text in enumerate(row[1:], start=1))
        + "</tr>"
        for row in rows
    )
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr>{header}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _figure(svg: str, table: str, note: str = "", *, caption: str = "") -> str:
    heading = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return f"<figure>{heading}{svg}{extra}{table}</figure>"


def _section(section_id: str, heading: str, body: str) -> str:
    return (
        f'<section aria-labelledby="{section_id}">'
        f'<h2 id="{section_id}">{escape(heading)}</h2>{body}</section>'
    )


def _card(label: str, value: str, detail: str = "") -> str:
    small = f"<small>{escape(detail)}</small>" if detail else ""
    return (
        f'<div class="card"><span class="label">{escape(label)}</span>'
        f'<span class="value">{escape(value)}</span>{small}</div>'
    )


# --- headline figures, shared by the page, the comparison and the terminal ---


@dataclass(frozen=True)
class Headline:
    """One headline figure: what it is, its value, and the detail that qualifies it."""

    label: str
    value: str
    detail: str = ""


def _recovery_headlines(curve: RecoveryCurve) -> Iterator[Headline]:
    for window in RECOVERY_WINDOWS:
        point = curve.at(window)
        detail = (
            f"{money(point.recovered_minor, curve.currency)} of "
            f"{money(point.overdue_minor, curve.currency)} overdue, "
            f"{invoices(point.invoices)}"
            if point.invoices
            else f"no overdue invoice was due {window} days before the report date"
        )
        yield Headline(
            f"Recovered within {window} days after due, {curve.currency}",
            percent(point.share),
            detail,
        )


def _balance_headlines(figures: PortfolioFigures) -> Iterator[Headline]:
    for aging in figures.aging:
        cur = aging.currency
        yield Headline(
            f"Open balance, {cur}",
            money(aging.open_minor, cur),
            invoices(aging.open_count),
        )
        yield Headline(
            f"More than 30 days past due, {cur}",
            money(aging.over_30_minor, cur),
            f"{invoices(aging.over_30_count)}, {percent(aging.over_30_share)} of open",
        )
    for point in figures.dso_as_of:
        yield Headline(
            f"DSO (countback), {point.currency}",
            days_text(point.days),
            f"receivables {money(point.receivables_minor, point.currency)}",
        )


def headlines(kpis: KpiReport) -> list[Headline]:
    """The figures at the top of the report, in reading order."""
    figures = kpis.overall
    settled = figures.settlement
    sent = figures.contacts_sent
    outcomes = {
        o: sum(getattr(f, o) for f in figures.channels) for o in CONTACT_OUTCOMES
    }
    paid_after = sum(f.paid_within_days for f in figures.channels)
    items = [*_balance_headlines(figures)]
    for curve in figures.recovery:
        items.extend(_recovery_headlines(curve))
    items += [
        Headline(
            "Average days late",
            days_text(settled.average_days_late),
            f"{invoices(settled.settled)} paid in the period",
        ),
        Headline(
            "Paid by the due date",
            f"{settled.paid_by_due_date} of {settled.settled}",
            percent(settled.paid_by_due_date_share),
        ),
        Headline(
            "Contacts sent",
            str(sent),
            f"{outcomes['consolidated']} more named in statements, "
            f"{outcomes['cancelled']} cancelled, {outcomes['blocked']} blocked, "
            f"{outcomes['failed']} failed",
        ),
        Headline(f"Paid within {FUNNEL_DAYS} days of a contact", str(paid_after)),
        *_task_headlines(figures.tasks),
        *_commitment_headlines(figures),
        *_reconciliation_headlines(figures.reconciliation),
    ]
    return items


def _task_headlines(tasks: TaskFigures) -> Iterator[Headline]:
    yield Headline(
        "Tasks created",
        str(tasks.opened),
        f"{tasks.done} done, {tasks.cancelled} cancelled, {tasks.escalated} escalated",
    )
    yield Headline(
        "Task deadlines met (SLA)",
        percent(tasks.sla_share),
        f"{tasks.deadlines_met} of {tasks.deadlines} deadlines in the period",
    )


def _commitment_headlines(figures: PortfolioFigures) -> Iterator[Headline]:
    promises = figures.promises
    yield Headline(
        "Promises kept",
        percent(promises.kept_rate),
        f"{promises.kept} kept, {promises.broken} broken, {promises.open_at_end} open",
    )
    disputes = figures.dispute_summary
    days = disputes.median_days_to_resolution
    yield Headline(
        "Disputes opened",
        str(disputes.opened),
        f"{disputes.resolved} resolved"
        + (f" in a median {days_text(days)}" if days is not None else "")
        + f", {disputes.open_at_end} open",
    )
    by_rule = figures.contacts_by_rule
    yield Headline(
        "Contacts deferred by a contact rule",
        str(by_rule["deferred"]),
        f"{by_rule['suppressed']} suppressed by a rule",
    )


def _reconciliation_headlines(lines: ReconciliationFigures) -> Iterator[Headline]:
    yield Headline(
        "Bank payments reconciled, median time",
        days_text(lines.median_days),
        f"{lines.applied} reconciled, nine in ten within {whole_days(lines.p90_days)}"
        if lines.applied
        else "no movements reconciled in the period",
    )
    yield Headline(
        "Bank lines unmatched at the report date",
        str(lines.unmatched_at_end),
        f"the oldest booked {whole_days(lines.oldest_unmatched_days)} before the "
        "report date"
        if lines.unmatched_at_end
        else "none waiting for a person",
    )


def headline_text(kpis: KpiReport) -> str:
    """The headline figures as aligned lines for the terminal, then each group's figures."""
    start, end = kpis.period
    lines = [
        f"KPIs of tenant {kpis.tenant} at {kpis.as_of} "
        f"(period {start} to {end}, dates in {kpis.time_zone})"
    ]
    for item in headlines(kpis):
        detail = f"  ({item.detail})" if item.detail else ""
        lines.append(f"  {item.label:<48} {item.value}{detail}")
    if kpis.groups:
        noun = _group_noun(kpis)
        lines += ["", f"By {noun} ({len(kpis.groups)}):"]
        labels = _group_columns(kpis)[1:]
        for group in kpis.groups:
            lines.append(f"  {group.key}")
            values = _group_row(group.key, group.figures)[1:]
            lines += [
                f"    {label:<46} {value}"
                for label, value in zip(labels, values, strict=True)
            ]
    return "\n".join(lines)


# --- the charts of the report ---


def _major(minor_units: float, currency: str) -> float:
    return float(Money(int(minor_units), currency).to_decimal())


def _amount_text(major_units: float, currency: str) -> str:
    return money(round(major_units * 10 ** exponent_of(currency)), currency)


def _group_noun(kpis: KpiReport) -> str:
    return {"customer": "customer code", None: "group"}.get(
        kpis.group_by, kpis.group_by or ""
    )


def _aging_rows(
    kpis: KpiReport, currency: str
) -> tuple[list[tuple[str, list[float]]], int]:
    def amounts(aging: CurrencyAging) -> list[float]:
        return [_major(aging.bucket(b).amount_minor, currency) for b in AGING_BUCKETS]

    rows = [
        ("All invoices", amounts(a))
        for a in kpis.overall.aging
        if a.currency == currency
    ]
    grouped = [
        (group.key, aging)
        for group in kpis.groups
        for aging in group.figures.aging
        if aging.currency == currency and aging.open_minor > 0
    ]
    grouped.sort(key=lambda pair: -pair[1].open_minor)
    shown = [(key, amounts(aging)) for key, aging in grouped[:MAX_GROUP_BARS]]
    return rows + shown, len(grouped)


def _aging_figure(kpis: KpiReport, aging: CurrencyAging, index: int) -> str:
    cur = aging.currency
    rows, candidates = _aging_rows(kpis, cur)
    text = ChartText(
        f"aging-{index}",
        f"Aging of the open balance, {cur}, at {kpis.as_of}",
        f"Open balance by days past due in {cur}, as stacked bars: all invoices"
        + (f", then the largest {_group_noun(kpis)}s" if len(rows) > 1 else ""),
        f"Open balance ({cur})",
        _group_noun(kpis).capitalize() if len(rows) > 1 else "",
    )
    segments = [(label, BUCKET_COLOURS[label]) for label in AGING_BUCKETS]
    svg = bar_chart(
        text,
        rows,
        segments,
        stacked=True,
        value_format=_compact,
        # A bar's tooltip reads like the table under it, not 2.3397e+07.
        detail_format=partial(_amount_text, currency=cur),
    )
    open_minor = aging.open_minor
    table = _table(
        f"Aging of the open balance, {cur}",
        ["Days past due", "Amount", "Invoices", "Share of open"],
        [
            (
                b.label,
                money(b.amount_minor, cur),
                str(b.count),
                percent(b.amount_minor / open_minor if open_minor else None),
            )
            for b in aging.buckets
        ],
    )
    shown = len(rows) - 1
    note = ""
    if candidates > shown:
        noun = _group_noun(kpis)
        note = f"The chart shows the {shown} {noun}s with the largest open balance."
    return _figure(svg, table, note, caption=text.title)


def _aging_series_figure(points: Sequence[AgingPoint], index: int) -> str:
    cur = points[0].currency
    text = ChartText(
        f"aging-series-{index}",
        f"Aging of the open balance, {cur}, at each month end",
        f"Stacked columns, one per month end of the period (the last is the period's "
        f"end): the open balance in {cur} by days past due as it stood that day.",
        "Month end",
        f"Open balance ({cur})",
    )
    columns = [
        (
            f"{p.on}",
            [_major(p.aging.bucket(b).amount_minor, cur) for b in AGING_BUCKETS],
        )
        for p in points
    ]

    svg = column_chart(
        text,
        columns,
        [(label, BUCKET_COLOURS[label]) for label in AGING_BUCKETS],
        value_format=_compact,
        detail_format=partial(_amount_text, currency=cur),
    )
    table = _aging_series_table(points, cur)
    return _figure(svg, f'<div class="wide">{table}</div>', caption=text.title)


def _aging_series_table(points: Sequence[AgingPoint], currency: str) -> str:
    head = ["Month end", *AGING_BUCKETS, "Open", "Invoices open"]
    head += ["Over 30 days", "Invoices over 30 days"]
    rows = [
        [
            f"{p.on}",
            *(money(b.amount_minor, currency) for b in p.aging.buckets),
            money(p.aging.open_minor, currency),
            str(p.aging.open_count),
            money(p.aging.over_30_minor, currency),
            str(p.aging.over_30_count),
        ]
        for p in points
    ]
    caption = f"Aging of the open balance at each month end, {currency}"
    return _table(caption, head, rows)


def _aging_series_figures(kpis: KpiReport) -> list[str]:
    series = kpis.overall.aging_series
    currencies = sorted({point.currency for point in series})
    figures = [
        _aging_series_figure([p for p in series if p.currency == cur], index)
        for index, cur in enumerate(currencies)
    ]
    if figures:
        return figures
    text = ChartText(
        "aging-series-0",
        "Aging of the open balance at each month end",
        "Nothing was open at any month end of the period.",
        "",
        "",
    )
    message = "nothing open at any month end of the period"
    return [_figure(_empty_chart(text, message), "")]


def _aging_section(kpis: KpiReport) -> str:
    figures = [_aging_figure(kpis, a, i) for i, a in enumerate(kpis.overall.aging)]
    if not figures:
        text = ChartText(
            "aging-0", "Aging of the open balance", "Nothing is open.", "", ""
        )
        message = f"nothing open at {kpis.as_of}"
        if kpis.overall.aging_series:
            message += "; the month ends below show how the balance aged"
        figures = [_figure(_empty_chart(text, message), "")]
    figures += _aging_series_figures(kpis)
    return _section("aging", "Aging", "".join(figures))


def _dso_series(points: Sequence[DsoPoint]) -> tuple[list[Series], list[date]]:
    # Month ends sit at even steps on the x axis, one line per currency.
    days = sorted({p.on for p in points})
    currencies = sorted({p.currency for p in points})
    series = [
        Series(
            cur,
            tuple(
                (float(days.index(p.on)), p.days) for p in points if p.currency == cur
            ),
            SERIES_COLOURS[i % len(SERIES_COLOURS)],
        )
        for i, cur in enumerate(currencies)
    ]
    return series, days


def _dso_section(kpis: KpiReport) -> str:
    points = kpis.overall.dso
    series, days = _dso_series(points)
    every = max(1, math.ceil(len(days) / 8))
    ticks = [(float(i), f"{d:%Y-%m-%d}") for i, d in enumerate(days) if i % every == 0]
    text = ChartText(
        "dso",
        "Days sales outstanding (countback), month by month",
        "Line chart of DSO at each month end of the period, one line per currency.",
        "Month end",
        "Days",
    )
    top = max((p.days for p in points), default=0.0)
    svg = line_chart(
        text,
        series,
        x_range=(0.0, float(max(len(days) - 1, 1))),
        x_ticks=ticks,
        y_ticks=nice_ticks(top),
        y_format=_compact,
    )
    table = _table(
        "Days sales outstanding (countback)",
        ["Date", "Currency", "DSO", "Receivables"],
        [
            (
                f"{p.on}",
                p.currency,
                days_text(p.days),
                money(p.receivables_minor, p.currency),
            )
            for p in points
        ],
    )
    return _section(
        "dso", "Days sales outstanding", _figure(svg, table, caption=text.title)
    )


RECOVERY_NOTE = (
    "Day N counts only invoices due at least N days before the report date, so a "
    "window still open never reads as money not recovered. Each day therefore has "
    "its own set of invoices (see the Invoices column): the curve can step down "
    "where that set changes."
)


def _curve_series(
    curves: Sequence[RecoveryCurve], suffix: str, offset: int, dashed: bool
) -> list[Series]:
    return [
        Series(
            curve.currency + suffix,
            tuple((float(p.day), p.share) for p in curve.points if p.share is not None),
            SERIES_COLOURS[(offset + i) % len(SERIES_COLOURS)],
            dashed,
        )
        for i, curve in enumerate(curves)
    ]


def _recovery_table(
    curve: RecoveryCurve, compare: RecoveryCurve | None, compare_label: str
) -> str:
    head = ["Days after due", "Invoices", "Overdue at due", "Recovered", "Share"]
    if compare is not None:
        head.append(f"Share, {compare_label}")
    rows = []
    for point in curve.points[::CURVE_TABLE_STEP]:
        row = [
            str(point.day),
            str(point.invoices),
            money(point.overdue_minor, curve.currency),
            money(point.recovered_minor, curve.currency),
            percent(point.share),
        ]
        if compare is not None:
            row.append(percent(compare.at(point.day).share))
        rows.append(row)
    return _table(f"Recovery after the due date, {curve.currency}", head, rows)


def _recovery_section(
    kpis: KpiReport, compare: KpiReport | None, compare_label: str
) -> str:
    curves = kpis.overall.recovery
    others = compare.overall.recovery if compare else ()
    series = _curve_series(curves, "", 0, dashed=False)
    series += _curve_series(others, f" ({compare_label})", len(curves), dashed=True)
    text = ChartText(
        "recovery",
        f"Share of the overdue amount recovered, day 0 to {CURVE_DAYS} after due",
        "Line chart: for invoices due in the period and unpaid at their due date, the "
        "share of that amount paid by each day after it; dashed lines are the "
        "comparison.",
        "Days after the due date",
        "Share recovered",
    )
    ticks = [(float(d), str(d)) for d in range(0, CURVE_DAYS + 1, 15)]
    svg = line_chart(
        text,
        series,
        x_range=(0.0, float(CURVE_DAYS)),
        x_ticks=ticks,
        y_ticks=[0, 0.25, 0.5, 0.75, 1.0],
        y_format=percent,
    )
    by_currency = {c.currency: c for c in others}
    tables = "".join(
        _recovery_table(
            c,
            by_currency.get(c.currency, _no_curve(c.currency)) if compare else None,
            compare_label,
        )
        for c in curves
    )
    figure = _figure(svg, tables, RECOVERY_NOTE, caption=text.title)
    return _section("recovery", "Recovery after the due date", figure)


def _no_curve(currency: str) -> RecoveryCurve:
    points = tuple(RecoveryPoint(day, 0, 0, 0) for day in range(CURVE_DAYS + 1))
    return RecoveryCurve(currency, points)


def _funnel_rows(
    figures: PortfolioFigures, suffix: str
) -> list[tuple[str, list[float]]]:
    return [
        (
            f.channel + suffix,
            [float(f.planned), float(f.sent), float(f.paid_within_days)],
        )
        for f in figures.channels
    ]


def _funnel_section(
    kpis: KpiReport, compare: KpiReport | None, compare_label: str
) -> str:
    rows = _funnel_rows(kpis.overall, "")
    tables = [_funnel_table(kpis.overall, "Contacts by channel and outcome")]
    if compare is not None:
        rows += _funnel_rows(compare.overall, f" ({compare_label})")
        tables.append(_funnel_table(compare.overall, f"Contacts, {compare_label}"))
    text = ChartText(
        "funnel",
        f"Contacts: planned, sent, and paid within {FUNNEL_DAYS} days, by channel",
        "Grouped bars per channel: contacts planned in the ledger, contacts sent, and "
        f"sent contacts whose invoice was paid within {FUNNEL_DAYS} days.",
        "Contacts",
        "Channel",
    )
    segments = [
        ("planned", FUNNEL_COLOURS["planned"]),
        ("sent", FUNNEL_COLOURS["sent"]),
        (f"paid within {FUNNEL_DAYS} days", FUNNEL_COLOURS["paid"]),
    ]
    svg = bar_chart(
        text,
        rows,
        segments,
        stacked=False,
        value_format=_compact,
        detail_format=lambda count: str(round(count)),
        empty="no contact planned in the period",
    )
    return _section(
        "funnel",
        "Contacts and what followed",
        _figure(svg, "".join(tables), caption=text.title),
    )


def _funnel_table(figures: PortfolioFigures, caption: str) -> str:
    head = ["Channel", "Planned", *(o.capitalize() for o in CONTACT_OUTCOMES)]
    head.append(f"Paid within {FUNNEL_DAYS} days")
    rows = [
        [
            f.channel,
            str(f.planned),
            *(str(getattr(f, o)) for o in CONTACT_OUTCOMES),
            str(f.paid_within_days),
        ]
        for f in figures.channels
    ]
    if not rows:
        return f'<p class="note">{escape(caption)}: no contact in the period.</p>'
    return _table(caption, head, rows)


def _reasons_section(kpis: KpiReport) -> str:
    reasons = kpis.overall.reasons
    if not reasons:
        body = '<p class="note">No contact was cancelled or blocked in the period.</p>'
    else:
        body = _table(
            "Contacts cancelled or blocked, by reason",
            ["Outcome", "Reason", "Contacts"],
            [(r.status, r.reason, str(r.count)) for r in reasons],
            text_columns=(1,),
        )
    return _section("reasons", "Why contacts were not sent", body)


def _tasks_section(kpis: KpiReport, compare: KpiReport | None, label: str) -> str:
    reports = [("This report", kpis)] + ([(label, compare)] if compare else [])
    kinds = sorted(
        {kind for _, r in reports for kind, _ in r.overall.tasks.opened_by_kind}
    )
    rows = [
        [
            name,
            *(str(getattr(r.overall.tasks, field)) for field in TASK_FIELDS),
            percent(r.overall.tasks.sla_share),
            *(str(dict(r.overall.tasks.opened_by_kind).get(k, 0)) for k in kinds),
        ]
        for name, r in reports
    ]
    head = ["", "Created", "Done", "Cancelled", "Escalated", "Deadlines", "Met"]
    head += ["Met, share", *(f"Created: {k}" for k in kinds)]
    table = _table("Tasks created in the period and their deadlines", head, rows)
    note = (
        "Done, cancelled and escalated count the tasks created in the period, as they "
        "stand now. Deadlines are the SLA deadlines that fell in the period; a task "
        "cancelled before its deadline has none to meet."
    )
    body = f'<div class="wide">{table}</div><p class="note">{escape(note)}</p>'
    return _section("tasks", "Tasks for people", body)


def _per_currency(parts: Iterable[str]) -> str:
    return "; ".join(parts) or "—"


def _group_row(key: str, figures: PortfolioFigures) -> list[str]:
    def recovered(window: int) -> str:
        return _per_currency(
            f"{c.currency} {percent(c.at(window).share)}" for c in figures.recovery
        )

    return [
        key,
        str(figures.invoices),
        _per_currency(money(a.open_minor, a.currency) for a in figures.aging),
        _per_currency(
            f"{a.currency} {percent(a.over_30_share)}" for a in figures.aging
        ),
        _per_currency(f"{p.currency} {days_text(p.days)}" for p in figures.dso_as_of),
        *(recovered(window) for window in RECOVERY_WINDOWS),
        days_text(figures.settlement.average_days_late),
        str(figures.contacts_sent),
        str(figures.tasks.opened),
        f"{figures.promises.kept} / {figures.promises.broken}",
        str(figures.dispute_summary.opened),
        str(figures.contacts_by_rule["deferred"]),
    ]


def _group_columns(kpis: KpiReport) -> list[str]:
    """What each of ``_group_row``'s cells is, the group's own name first."""
    return [
        _group_noun(kpis).capitalize(),
        "Invoices",
        "Open balance",
        "Over 30 days, share",
        "DSO",
        *(f"Recovered in {w} days" for w in RECOVERY_WINDOWS),
        "Average days late",
        "Contacts sent",
        "Tasks created",
        "Promises kept / broken",
        "Disputes opened",
        "Deferred by a rule",
    ]


def _groups_section(kpis: KpiReport) -> str:
    if not kpis.groups:
        return ""
    noun = _group_noun(kpis)
    rows = [_group_row(group.key, group.figures) for group in kpis.groups]
    table = _table(f"KPIs by {noun}", _group_columns(kpis), rows)
    return _section("groups", f"By {noun}", f'<div class="wide">{table}</div>')


def _promise_table(promises: PromiseFigures, caption: str) -> str:
    rows = [
        [
            "Promises",
            *(str(getattr(promises, name)) for name in PROMISE_FIELDS),
            percent(promises.kept_rate),
        ]
    ]
    head = ["", "Recorded", "Kept", "Broken", "Cancelled", "Open at report date"]
    table = _table(caption, [*head, "Kept rate"], rows)
    if promises.amounts:
        table += _table(
            f"{caption}: amounts of the promises kept and broken",
            ["Currency", "Kept", "Broken"],
            [
                (
                    a.currency,
                    money(a.kept_minor, a.currency),
                    money(a.broken_minor, a.currency),
                )
                for a in promises.amounts
            ],
        )
    return table


def _dispute_table(disputes: Sequence[DisputeFigures], caption: str) -> str:
    if not disputes:
        return f'<p class="note">{escape(caption)}: no dispute in the period.</p>'
    head = ["Category", "Currency", "Opened", "Amount opened", "Upheld", "Rejected"]
    head += [
        "Mean days to resolution",
        "Median days",
        "Open at report date",
        "Open amount",
    ]
    rows = [
        (
            d.category.replace("_", " "),
            d.currency,
            str(d.opened),
            money(d.opened_minor, d.currency),
            str(d.upheld),
            str(d.rejected),
            days_text(d.mean_days_to_resolution),
            days_text(d.median_days_to_resolution),
            str(d.open_at_end),
            money(d.open_minor, d.currency),
        )
        for d in disputes
    ]
    return _table(caption, head, rows, text_columns=(0,))


PROMISES_NOTE = (
    "Kept and broken count the promises whose deadline (the promised date plus the "
    "policy's grace) or covering payment fell in the period; the kept rate is kept over "
    "kept and broken. Cancelled promises were replaced by a newer one or ended with "
    "their case. Days to resolution run from opening to the decision (upheld or "
    "rejected); disputes that closed with their case were not resolved."
)


def _promises_section(kpis: KpiReport, compare: KpiReport | None, label: str) -> str:
    parts = [
        _promise_table(kpis.overall.promises, "Payment promises"),
        _dispute_table(kpis.overall.disputes, "Disputes by category"),
    ]
    if compare is not None:
        parts.append(_promise_table(compare.overall.promises, f"Promises, {label}"))
        parts.append(_dispute_table(compare.overall.disputes, f"Disputes, {label}"))
    body = f'<div class="wide">{"".join(parts)}</div>'
    body += f'<p class="note">{escape(PROMISES_NOTE)}</p>'
    return _section("promises", "Promises and disputes", body)


RECONCILIATION_NOTE = (
    "Reconciled counts the incoming bank lines applied to an invoice in the period, by "
    "starter.py reconcile or by hand with pay and the line's reference. Their time runs "
    "in whole calendar days from the bank's booking date to the day the line was "
    "reconciled; 0 is the same day. Unmatched lines are those booked by the report date "
    "that still wait for a person, as they stand now."
)


def _reconciliation_row(name: str, lines: ReconciliationFigures) -> list[str]:
    return [
        name,
        str(lines.applied),
        days_text(lines.median_days),
        whole_days(lines.p90_days),
        str(lines.unmatched_at_end),
        whole_days(lines.oldest_unmatched_days),
    ]


def _reconciliation_section(
    kpis: KpiReport, compare: KpiReport | None, label: str
) -> str:
    reports = [("This report", kpis)] + ([(label, compare)] if compare else [])
    rows = [_reconciliation_row(n, r.overall.reconciliation) for n, r in reports]
    head = ["", "Reconciled", "Median time", "Nine in ten within", "Unmatched"]
    table = _table(
        "Incoming bank payments: booking to reconciliation",
        [*head, "Oldest unmatched, since booking"],
        rows,
    )
    body = f'<div class="wide">{table}</div>'
    body += f'<p class="note">{escape(RECONCILIATION_NOTE)}</p>'
    return _section("reconciliation", "Bank reconciliation", body)


def _rules_section(kpis: KpiReport) -> str:
    decisions = kpis.overall.rule_decisions
    if not decisions:
        body = '<p class="note">No contact was deferred or suppressed by a rule.</p>'
    else:
        body = _table(
            "Contacts deferred or suppressed, by the rule that decided",
            ["Decision", "Rule", "Decisions"],
            [(d.outcome, d.rule, str(d.count)) for d in decisions],
            text_columns=(1,),
        )
    note = (
        "Each decision counts: a contact deferred twice (outside hours, then by a "
        "weekly cap) counts twice. A decision counts under the first rule its reason "
        "names. Suppressed contacts were denied by a stop or opt-out rule."
    )
    body += f'<p class="note">{escape(note)}</p>'
    return _section("rules", "Contacts deferred or suppressed by a contact rule", body)


METHOD_NOTES = (
    "Balances are as they stood at the end of each date; payments and contacts count "
    "within the period and never after the report date.",
    "Aging buckets are whole days past the due date: current (not yet due), 1-30, "
    "31-60, 61-90 and over 90.",
    "The aging at each month end takes every balance as it stood at the end of that "
    "day: a payment dated the day after a month end first shows at the next one.",
    "DSO by countback: the open receivables are matched against the invoiced amounts "
    "of the latest months, newest first; each month fully covered adds its days, the "
    "month only partly covered adds the same fraction of its days.",
    "Recovery: invoices due in the period and unpaid at the end of their due date; "
    "payments (not credit notes) received by each day after it.",
    "Days late: invoices paid in the period; paying early counts as zero days late. "
    "An invoice's payment date is the last payment that brought its balance to zero, "
    "or its settled date when imported as already paid.",
    f"A contact counts as followed by payment when its invoice was paid on its day or "
    f"within {FUNNEL_DAYS} days after it.",
)


def _method_section() -> str:
    items = "".join(f"<li>{escape(note)}</li>" for note in METHOD_NOTES)
    return _section("method", "How the figures are computed", f"<ul>{items}</ul>")


def _headline_section(kpis: KpiReport) -> str:
    cards = "".join(_card(h.label, h.value, h.detail) for h in headlines(kpis))
    return _section("headline", "Headline", f'<div class="cards">{cards}</div>')


def _comparison_section(kpis: KpiReport, compare: KpiReport, compare_label: str) -> str:
    mine = {h.label: h for h in headlines(kpis)}
    theirs = {h.label: h for h in headlines(compare)}
    labels = list(mine) + [label for label in theirs if label not in mine]

    def cell(item: Headline | None) -> str:
        if item is None:
            return "—"
        return f"{item.value} ({item.detail})" if item.detail else item.value

    rows = [(label, cell(mine.get(label)), cell(theirs.get(label))) for label in labels]
    table = _table(
        f"This report and {compare_label}, side by side",
        ["Figure", "This report", compare_label],
        rows,
    )
    return _section("comparison", f"Compared with {compare_label}", table)


# --- the page ---


STYLE_SHEET = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1b1b1b; background: #fff; margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 32px 0 12px; border-bottom: 1px solid #ccc; }
.meta, .note { color: #444; font-size: 0.9em; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr));
  gap: 10px; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 10px 12px; }
.card .label { display: block; font-size: 0.85em; color: #444; }
.card .value { display: block; font-size: 1.35em; font-weight: 600; }
.card small { color: #444; }
figure { margin: 0 0 24px; }
figcaption { font-weight: 600; margin: 8px 0 4px; }
svg { max-width: 100%; height: auto; font-size: 12px; fill: #1b1b1b; }
svg .axis { stroke: #1b1b1b; }
svg .grid { stroke: #ddd; }
svg .empty { fill: #666; font-style: italic; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th[scope=row], thead th, td.text { text-align: left; }
td:not(.text), th[scope=row] { white-space: nowrap; }
th[scope=row], thead th { background: #f4f4f4; }
.wide { overflow-x: auto; }
dt { font-weight: 600; }
dd { margin: 0 0 8px 16px; }
"""


def render_html(
    kpis: KpiReport,
    *,
    title: str,
    compare: KpiReport | None = None,
    compare_label: str | None = None,
) -> str:
    """The whole report page as one HTML string: no script, no external resource."""
    label = compare_label or (f"tenant {compare.tenant}" if compare else "")
    start, end = kpis.period
    generated = format_local(kpis.generated_at, kpis.time_zone)
    meta = (
        f"Tenant {kpis.tenant} · report date {kpis.as_of} · period {start} to {end} · "
        f"dates in {kpis.time_zone} · generated {generated}"
    )
    sections = [
        _headline_section(kpis),
        _comparison_section(kpis, compare, label) if compare else "",
        _aging_section(kpis),
        _dso_section(kpis),
        _recovery_section(kpis, compare, label),
        _funnel_section(kpis, compare, label),
        _reasons_section(kpis),
        _tasks_section(kpis, compare, label),
        _promises_section(kpis, compare, label),
        _reconciliation_section(kpis, compare, label),
        _rules_section(kpis),
        _groups_section(kpis),
        _method_section(),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE_SHEET}</style></head><body><main>"
        f'<header><h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p></header>'
        + "".join(sections)
        + "</main></body></html>\n"
    )


def write_html_report(
    kpis: KpiReport,
    path: Path,
    *,
    title: str,
    compare: KpiReport | None = None,
    compare_label: str | None = None,
) -> Path:
    """Write the report as one self-contained HTML file and return its path."""
    page = render_html(kpis, title=title, compare=compare, compare_label=compare_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# --- CSV export ---


CSV_COLUMNS = ("metric", "dimension", "value", "unit")


@dataclass(frozen=True)
class KpiRow:
    """One figure of the CSV export; the dimension reads ``key=value;key=value``."""

    metric: str
    dimension: str
    value: str
    unit: str


def _dimension(*pairs: tuple[str, object]) -> str:
    # The separators of the dimension never appear inside a value, so it splits back.
    return ";".join(
        f"{key}={str(value).replace(';', ',').replace('=', ':')}"
        for key, value in pairs
    )


def _amount(minor_units: int, currency: str) -> str:
    return str(Money(minor_units, currency).to_decimal())


def _ratio(share: float | None) -> str:
    return "" if share is None else f"{share:.6f}"


Scope = tuple[tuple[str, object], ...]


def _aging_csv(aging: CurrencyAging, scope: Scope) -> Iterator[KpiRow]:
    cur = aging.currency
    dim = _dimension(*scope, ("currency", cur))
    yield KpiRow("open_balance", dim, _amount(aging.open_minor, cur), cur)
    yield KpiRow("open_invoices", dim, str(aging.open_count), "invoices")
    for bucket in aging.buckets:
        where = _dimension(*scope, ("currency", cur), ("bucket", bucket.label))
        yield KpiRow("aging_amount", where, _amount(bucket.amount_minor, cur), cur)
        yield KpiRow("aging_invoices", where, str(bucket.count), "invoices")
    yield KpiRow("over_30_amount", dim, _amount(aging.over_30_minor, cur), cur)
    yield KpiRow("over_30_invoices", dim, str(aging.over_30_count), "invoices")
    yield KpiRow("over_30_share", dim, _ratio(aging.over_30_share), "ratio")


def _aging_series_csv(points: Iterable[AgingPoint], scope: Scope) -> Iterator[KpiRow]:
    for point in points:
        aging, cur = point.aging, point.currency
        dim = _dimension(*scope, ("currency", cur), ("date", point.on))
        yield KpiRow("open_balance_series", dim, _amount(aging.open_minor, cur), cur)
        for bucket in aging.buckets:
            where = _dimension(
                *scope, ("currency", cur), ("date", point.on), ("bucket", bucket.label)
            )
            amount = _amount(bucket.amount_minor, cur)
            yield KpiRow("aging_series_amount", where, amount, cur)
            yield KpiRow("aging_series_invoices", where, str(bucket.count), "invoices")
        over = _amount(aging.over_30_minor, cur)
        yield KpiRow("over_30_series_amount", dim, over, cur)
        yield KpiRow(
            "over_30_series_invoices", dim, str(aging.over_30_count), "invoices"
        )


def _dso_csv(figures: PortfolioFigures, scope: Scope, full: bool) -> Iterator[KpiRow]:
    for point in figures.dso_as_of:
        dim = _dimension(*scope, ("currency", point.currency), ("date", point.on))
        yield KpiRow("dso_as_of", dim, f"{point.days:.2f}", "days")
    for point in figures.dso if full else ():
        dim = _dimension(*scope, ("currency", point.currency), ("date", point.on))
        yield KpiRow("dso", dim, f"{point.days:.2f}", "days")


def _recovery_csv(
    figures: PortfolioFigures, scope: Scope, days: Iterable[int]
) -> Iterator[KpiRow]:
    wanted = list(days)
    for curve in figures.recovery:
        cur = curve.currency
        for day in wanted:
            point = curve.at(day)
            dim = _dimension(*scope, ("currency", cur), ("day", day))
            yield KpiRow("recovery_share", dim, _ratio(point.share), "ratio")
            yield KpiRow(
                "recovery_overdue", dim, _amount(point.overdue_minor, cur), cur
            )
            recovered = _amount(point.recovered_minor, cur)
            yield KpiRow("recovery_recovered", dim, recovered, cur)
            yield KpiRow("recovery_invoices", dim, str(point.invoices), "invoices")


def _settlement_csv(figures: PortfolioFigures, scope: Scope) -> Iterator[KpiRow]:
    settled, dim = figures.settlement, _dimension(*scope)
    late = settled.average_days_late
    yield KpiRow("settled_invoices", dim, str(settled.settled), "invoices")
    yield KpiRow(
        "average_days_late", dim, "" if late is None else f"{late:.2f}", "days"
    )
    yield KpiRow("paid_by_due_date", dim, str(settled.paid_by_due_date), "invoices")
    share = _ratio(settled.paid_by_due_date_share)
    yield KpiRow("paid_by_due_date_share", dim, share, "ratio")


def _tasks_csv(figures: PortfolioFigures, scope: Scope) -> Iterator[KpiRow]:
    tasks, dim = figures.tasks, _dimension(*scope)
    for field in TASK_FIELDS:
        yield KpiRow(f"tasks_{field}", dim, str(getattr(tasks, field)), "tasks")
    yield KpiRow("tasks_deadlines_met_share", dim, _ratio(tasks.sla_share), "ratio")
    for kind, count in tasks.opened_by_kind:
        where = _dimension(*scope, ("kind", kind))
        yield KpiRow("tasks_opened", where, str(count), "tasks")


def _contacts_csv(figures: PortfolioFigures, scope: Scope) -> Iterator[KpiRow]:
    paid = f"paid_within_{FUNNEL_DAYS}_days"
    for funnel in figures.channels:
        counts = {"planned": funnel.planned}
        counts |= {o: getattr(funnel, o) for o in CONTACT_OUTCOMES}
        counts[paid] = funnel.paid_within_days
        for outcome, count in counts.items():
            dim = _dimension(*scope, ("channel", funnel.channel), ("outcome", outcome))
            yield KpiRow("contacts", dim, str(count), "contacts")
    for reason in figures.reasons:
        dim = _dimension(*scope, ("outcome", reason.status), ("reason", reason.reason))
        yield KpiRow("contacts_by_reason", dim, str(reason.count), "contacts")


def _commitments_csv(figures: PortfolioFigures, scope: Scope) -> Iterator[KpiRow]:
    promises, dim = figures.promises, _dimension(*scope)
    for name in PROMISE_FIELDS:
        count = str(getattr(promises, name))
        yield KpiRow(f"promises_{name}", dim, count, "promises")
    yield KpiRow("promises_kept_rate", dim, _ratio(promises.kept_rate), "ratio")
    for amounts in promises.amounts:
        cur = amounts.currency
        where = _dimension(*scope, ("currency", cur))
        yield KpiRow(
            "promises_kept_amount", where, _amount(amounts.kept_minor, cur), cur
        )
        broken = _amount(amounts.broken_minor, cur)
        yield KpiRow("promises_broken_amount", where, broken, cur)
    for d in figures.disputes:
        cur = d.currency
        where = _dimension(*scope, ("category", d.category), ("currency", cur))
        yield KpiRow("disputes_opened", where, str(d.opened), "disputes")
        yield KpiRow("disputes_opened_amount", where, _amount(d.opened_minor, cur), cur)
        yield KpiRow("disputes_upheld", where, str(d.upheld), "disputes")
        yield KpiRow("disputes_rejected", where, str(d.rejected), "disputes")
        for name in ("mean", "median"):
            days = getattr(d, f"{name}_days_to_resolution")
            value = "" if days is None else f"{days:.2f}"
            yield KpiRow(f"disputes_{name}_days_to_resolution", where, value, "days")
        yield KpiRow("disputes_open", where, str(d.open_at_end), "disputes")
        yield KpiRow("disputes_open_amount", where, _amount(d.open_minor, cur), cur)
    by_rule = figures.contacts_by_rule
    for outcome in RULE_DECISIONS.values():
        where = _dimension(*scope, ("outcome", outcome))
        yield KpiRow("contacts_by_rule_total", where, str(by_rule[outcome]), "contacts")
    for item in figures.rule_decisions:
        where = _dimension(*scope, ("outcome", item.outcome), ("rule", item.rule))
        yield KpiRow("contacts_by_rule", where, str(item.count), "contacts")


def _reconciliation_csv(figures: PortfolioFigures, scope: Scope) -> Iterator[KpiRow]:
    lines, dim = figures.reconciliation, _dimension(*scope)
    median, p90 = lines.median_days, lines.p90_days
    oldest = lines.oldest_unmatched_days
    yield KpiRow("reconciled_lines", dim, str(lines.applied), "lines")
    median_text = "" if median is None else f"{median:.2f}"
    yield KpiRow("reconciliation_median_days", dim, median_text, "days")
    yield KpiRow(
        "reconciliation_p90_days", dim, "" if p90 is None else str(p90), "days"
    )
    yield KpiRow("unmatched_lines", dim, str(lines.unmatched_at_end), "lines")
    oldest_text = "" if oldest is None else str(oldest)
    yield KpiRow("oldest_unmatched_days", dim, oldest_text, "days")


def _figure_rows(
    figures: PortfolioFigures, scope: Scope, full: bool
) -> Iterator[KpiRow]:
    yield KpiRow("invoices", _dimension(*scope), str(figures.invoices), "invoices")
    for aging in figures.aging:
        yield from _aging_csv(aging, scope)
    # Series by date are for the whole portfolio; groups get their figures at as_of.
    yield from _aging_series_csv(figures.aging_series if full else (), scope)
    yield from _dso_csv(figures, scope, full)
    yield from _recovery_csv(
        figures, scope, range(CURVE_DAYS + 1) if full else RECOVERY_WINDOWS
    )
    yield from _settlement_csv(figures, scope)
    yield from _contacts_csv(figures, scope)
    yield from _tasks_csv(figures, scope)
    yield from _commitments_csv(figures, scope)
    yield from _reconciliation_csv(figures, scope)


def kpi_rows(kpis: KpiReport) -> list[KpiRow]:
    """Every figure of the report as one row each; groups get their summary figures."""
    rows = list(_figure_rows(kpis.overall, (), full=True))
    for group in kpis.groups:
        scope: Scope = ((kpis.group_by or "group", group.key),)
        rows.extend(_figure_rows(group.figures, scope, full=False))
    return rows


def write_csv_export(kpis: KpiReport, path: Path) -> Path:
    """Write the KPI figures as UTF-8 CSV: metric, dimension, value, unit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(
            (r.metric, r.dimension, r.value, r.unit) for r in kpi_rows(kpis)
        )
    return path
