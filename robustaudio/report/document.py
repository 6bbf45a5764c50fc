"""How every report is written: Markdown and one self-contained HTML file (figures inline) from a title,
summary lines, tables, figures and warnings, with the headline above everything; every text escaped, since labels
and file names are data, never markup. The attack, jamming, defence, comparison and sticker reports all write
through :func:`document_markdown` and :func:`document_html`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import style
from .headline import Headline

FIGURES_DIR = "figures"


def fmt(value: object, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant digits, "–" for a missing or non-finite value."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def estimate_text(estimate: dict) -> str:
    """An estimate ``{"value", "ci95"}`` as ``value [low, high]``."""
    value, (low, high) = estimate["value"], estimate["ci95"]
    shown = f"{value:.3f}" if isinstance(value, float) and np.isfinite(value) else fmt(value)
    return f"{shown} [{fmt(low)}, {fmt(high)}]"


def save_figure(fig: plt.Figure, path: Path) -> bytes:
    """Write ``fig`` as a PNG to ``path`` (the house style's resolution); returns the bytes for inline HTML."""
    data = style.png(fig)
    path.write_bytes(data)
    return data


Section = tuple[str, list[str], list[list[str]], str]  # (title, header, rows, note)


def markdown_text(text: object) -> str:
    """Text for a Markdown line: HTML special characters escaped (labels and file names are data,
    never markup), line breaks as spaces."""
    return " ".join(html.escape(str(text), quote=False).splitlines())


def markdown_cell(text: object) -> str:
    """Text for a Markdown table cell: :func:`markdown_text`, with backslashes and ``|`` escaped so
    that a cell such as ``max |Δlogit|`` stays one cell."""
    return markdown_text(str(text).replace("\\", "\\\\")).replace("|", "\\|")


def headline_markdown(headline: Headline | None) -> list[str]:
    """The headline as Markdown lines: the sentence in bold, the flags as a quoted list (each with its fix)
    or the passed line, the settings on one line."""
    if headline is None:
        return []
    t = markdown_text
    out = [f"**{t(headline.sentence)}**", ""]
    if headline.flags:
        out += [f"> **⚠ {len(headline.flags)} problem{'s' if len(headline.flags) > 1 else ''} flagged: read the fixes "
                f"before trusting the numbers.**", ">"]
        out += [f"> - **{t(f.name)}**" + (f" ({t(f.where)})" if f.where else "") + f": {t(f.seen)}. Fix: {t(f.fix)}"
                for f in headline.flags]
        out.append("")
    elif headline.passed:
        out += [f"✓ {t(headline.passed)}", ""]
    if headline.settings:
        out += ["Settings: " + "; ".join(t(item) for item in headline.settings) + ".", ""]
    return out


def headline_html(headline: Headline | None) -> list[str]:
    """The headline as HTML: the sentence, a coloured box of flags (each with its fix) or a green passed
    line, the settings."""
    if headline is None:
        return []
    e = html.escape
    parts = ["<section class='headline'>", f"<p class='key'>{e(headline.sentence)}</p>"]
    if headline.flags:
        parts.append(f"<div class='flags'><p><strong>⚠ {len(headline.flags)} problem"
                     f"{'s' if len(headline.flags) > 1 else ''} flagged: read the fixes before trusting the "
                     f"numbers.</strong></p><ul>")
        parts += [f"<li><strong>{e(f.name)}</strong>"
                  + (f" <span class='where'>({e(f.where)})</span>" if f.where else "")
                  + f": {e(f.seen)}.<br><em>Fix:</em> {e(f.fix)}</li>" for f in headline.flags]
        parts.append("</ul></div>")
    elif headline.passed:
        parts.append(f"<p class='passed'>✓ {e(headline.passed)}</p>")
    if headline.settings:
        parts.append("<p class='settings'>" + " · ".join(e(item) for item in headline.settings) + "</p>")
    parts.append("</section>")
    return parts


CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;}"
       "table{border-collapse:collapse;font-size:90%;}td,th{border:1px solid #ccc;padding:4px 8px;}"
       "img{max-width:100%;}"
       ".headline{margin:1em 0 1.5em;}.headline .key{font-size:125%;line-height:1.4;margin:.4em 0;}"
       ".flags{background:#fff3e0;border-left:6px solid #e65100;padding:.3em 1em;margin:.6em 0;}"
       ".flags li{margin:.3em 0;}.flags .where{color:#555;font-size:90%;}"
       ".passed{background:#e8f5e9;border-left:6px solid #2e7d32;padding:.5em 1em;margin:.6em 0;}"
       ".settings{color:#444;font-size:92%;}"
       ".example{border-top:1px solid #ddd;margin-top:1em;}.example h3{font-size:105%;margin:.6em 0 .2em;}"
       ".players{display:flex;flex-wrap:wrap;gap:1em;}.players figure{margin:0;}"
       ".players figcaption{font-size:85%;color:#444;}.players audio{width:300px;}")


def document_markdown(title: str, lines: list[str], sections: list[Section],
                      figures: list[tuple[str, str, bytes]], warnings: list[dict],
                      headline: Headline | None = None, extra: list[str] | None = None) -> str:
    """A report as Markdown: the headline, summary bullets, tables, figures (files under figures/), ``extra``
    lines (already Markdown), warnings; every text escaped (:func:`markdown_text`, :func:`markdown_cell`)."""
    t, cell = markdown_text, markdown_cell
    out = [f"# {t(title)}", ""] + headline_markdown(headline)
    out += [f"- {t(line)}" for line in lines] + [""]
    titles = {heading for heading, *_ in sections}
    for heading, header, rows, note in sections:
        out += [f"## {t(heading)}", "", "| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(map(cell, r)) + " |" for r in rows] + [""]
        out += [t(note), ""] if note else []
        out += [f"![{t(title)}]({FIGURES_DIR}/{name})" for title, name, _ in figures if title == heading]
        out += [""] if any(title == heading for title, *_ in figures) else []
    for heading, name, _ in figures:
        if heading not in titles:  # a figure titled like a section is shown in it: no heading twice
            out += [f"## {t(heading)}", "", f"![{t(heading)}]({FIGURES_DIR}/{name})", ""]
    out += extra or []
    if warnings:
        out += ["## Warnings", ""] + [f"- [{t(w['kind'])}] {t(w['message'])}" for w in warnings] + [""]
    return "\n".join(out)


def document_html(title: str, lines: list[str], sections: list[Section],
                  figures: list[tuple[str, str, bytes]], warnings: list[dict],
                  headline: Headline | None = None, extra: list[str] | None = None) -> str:
    """The same report as one self-contained HTML file (figures inline); every text escaped. ``extra``:
    HTML fragments (already escaped) placed after the figures."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>", *headline_html(headline), "<ul>",
        *[f"<li>{e(line)}</li>" for line in lines], "</ul>",
    ]
    for heading, header, rows, note in sections:
        parts.append(f"<h2>{e(heading)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in r) + "</tr>" for r in rows]
        parts.append("</table>" + (f"<p>{e(note)}</p>" if note else ""))
        parts += [f"<img alt='{e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
                  for title, _, png in figures if title == heading]
    titles = {heading for heading, *_ in sections}
    for heading, _, png in figures:
        if heading in titles:  # shown in its section: no heading twice
            continue
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{e(heading)}</h2><img alt='{e(heading)}' src='data:image/png;base64,{data}'>")
    parts += extra or []
    if warnings:
        parts.append("<h2>Warnings</h2><ul>")
        parts += [f"<li>[{e(w['kind'])}] {e(w['message'])}</li>" for w in warnings]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["CSS", "FIGURES_DIR", "Section", "document_html", "document_markdown", "estimate_text", "fmt",
           "headline_html", "headline_markdown", "markdown_cell", "markdown_text", "save_figure"]
