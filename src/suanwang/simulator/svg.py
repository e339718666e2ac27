"""Small, dependency-free SVG line charts for the simulator's HTML report.

:func:`line_chart` draws a few named series of (x, y) points with axes, ticks and a
legend, as one ``<svg>`` element ready to inline in HTML. Nothing else: no interactivity,
no log scales.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 680, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 28, 42
TICKS = 5
COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
Points = Sequence[tuple[float, float]]
Format = Callable[[float], str]


def _general(value: float) -> str:
    """``1,440`` for large values, three significant digits for small ones."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def line_chart(
    title: str,
    series: Mapping[str, Points],
    *,
    x_label: str,
    y_label: str,
    x_format: Format = _general,
    y_format: Format = _general,
    y_max: float | None = None,
) -> str:
    """One SVG chart of ``series`` (name -> points), scaled to fit, zero-based axes."""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x_max = max(xs, default=1.0) or 1.0
    top = y_max if y_max is not None else (max(ys, default=1.0) or 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def py(y: float) -> float:
        return TOP + plot_h * (1 - min(y, top) / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        *_axes(x_max, top, px, py, x_format, y_format),
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>',
    ]
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}"/>'
        )
        ly = TOP + 14 * i + 6
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 12}" y1="{ly}" x2="{WIDTH - RIGHT + 30}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<text x="{WIDTH - RIGHT + 34}" y="{ly + 4}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _axes(
    x_max: float,
    y_max: float,
    px: Callable[[float], float],
    py: Callable[[float], float],
    x_format: Format,
    y_format: Format,
) -> list[str]:
    """Axis lines, tick marks, tick labels and light grid lines."""
    parts = [
        f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(x_max)}" y2="{py(0)}" stroke="#333"/>',
        f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(0)}" y2="{py(y_max)}" stroke="#333"/>',
    ]
    for i in range(TICKS + 1):
        x, y = x_max * i / TICKS, y_max * i / TICKS
        parts.append(
            f'<text x="{px(x):.1f}" y="{py(0) + 14:.1f}" text-anchor="middle">'
            f"{escape(x_format(x))}</text>"
        )
        parts.append(
            f'<line x1="{px(0)}" y1="{py(y):.1f}" x2="{px(x_max)}" y2="{py(y):.1f}" '
            f'stroke="#ddd"/><text x="{px(0) - 4}" y="{py(y) + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(y))}</text>"
        )
    return parts
