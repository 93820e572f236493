"""`whoiscrawl map`: IPv4 on a Hilbert curve, one pixel per /24 at 4096, coloured by what a crawl found."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.results.diff import changes
from whoiscrawl.results.hilbert import cell_prefix, d2xy
from whoiscrawl.results.source import ResultSet
from whoiscrawl.results.summary import ScopeCounter, holder_of, own_addresses, scope_of, values
from whoiscrawl.rirs import REGISTRIES

Rgb = tuple[int, int, int]
MODES = ("registry", "country", "holder", "found")
SIZES = (4096, 2048, 1024, 512)
NOT_FOUND: Rgb = (44, 44, 48)
SPECIAL: Rgb = (150, 150, 150)
BACKGROUND: Rgb = (18, 18, 20)
REGISTRY_COLOURS: dict[str, Rgb] = {
    "arin": (31, 119, 220), "ripencc": (220, 50, 47), "apnic": (60, 180, 75),
    "lacnic": (255, 160, 20), "afrinic": (160, 90, 210),
}
# Distinct colours for the largest countries or holders (Tableau 20, less greys); the rest share OTHER.
PALETTE: tuple[Rgb, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138),
    (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210),
)
OTHER: Rgb = (90, 110, 120)
FOUND: Rgb = (60, 180, 75)


@dataclass
class Legend:
    """Categories of a map: index -> label and colour. 0 is "not found", 1 special-purpose space."""

    labels: list[str] = field(default_factory=lambda: ["not found", "special-purpose / IANA"])
    colours: list[Rgb] = field(default_factory=lambda: [NOT_FOUND, SPECIAL])
    index: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, label: str, colour: Rgb) -> int:
        self.index[key] = len(self.labels)
        self.labels.append(label)
        self.colours.append(colour)
        return self.index[key]


def legend_for(by: str, results: ResultSet) -> tuple[Legend, Any]:
    """The categories of a mode and the function giving a record's category."""
    legend = Legend()
    if by == "found":
        found = legend.add("found", "found", FOUND)
        return legend, lambda doc: found
    if by == "registry":
        for r in REGISTRIES:
            legend.add(r, r, REGISTRY_COLOURS[r])
        return legend, lambda doc: legend.index[doc["registry"]]
    key = holder_of if by == "holder" else (lambda doc: str(doc.get("country") or "none"))
    top = _largest(results, key, len(PALETTE))
    for name, colour in zip(top, PALETTE, strict=False):
        legend.add(name, name, colour)
    other = legend.add("\0other", f"other {(by == 'holder' and 'holders') or 'countries'}", OTHER)
    return legend, lambda doc: legend.index.get(key(doc), other)


def _largest(results: ResultSet, key: Any, n: int) -> list[str]:
    """The n largest keys by addresses (each address for its most specific block)."""
    own = own_addresses(*results.spans(), ScopeCounter(scope_of(None)))
    sizes: Counter[str] = Counter()
    for doc, addresses in zip(results.nested(), values(own), strict=True):
        sizes[key(doc)] += addresses
    return [k for k, _ in sizes.most_common(n)]


def paint(results: ResultSet, category: Any) -> np.ndarray:
    """One category per /24, parents first so their children paint over them, then the space no
    one may hold (special-purpose ranges, the /8s IANA keeps) over everything."""
    cells = np.zeros(1 << 24, np.uint8)
    _paint_blocks(cells, results.nested(), category)
    _paint_special(cells)
    return cells


def _paint_blocks(cells: np.ndarray, docs: Iterable[dict[str, Any]], category: Any) -> None:
    for doc in docs:
        cells[doc["_first"] >> 8 : (doc["_last"] >> 8) + 1] = category(doc)


def _paint_special(cells: np.ndarray) -> None:
    allocatable = scope_of(None)
    gap = 0
    for first, last in zip(allocatable.firsts, allocatable.lasts, strict=True):
        cells[gap >> 8 : first >> 8] = 1
        gap = last + 1
    cells[gap >> 8 :] = 1


DIFF_COLOURS: dict[str, Rgb] = {"unchanged": (70, 90, 110), "added": (60, 200, 80),
                                "removed": (230, 50, 50), "changed": (255, 170, 20),
                                "transferred": (60, 160, 255)}


def render_diff(old: ResultSet, new: ResultSet, size: int, title: str) -> MapImage:
    """The blocks of NEW (unchanged), and over them what `diff` finds: added, removed,
    changed, transferred."""
    legend = Legend()
    for kind, colour in DIFF_COLOURS.items():
        legend.add(kind, kind, colour)
    cells = np.zeros(1 << 24, np.uint8)
    _paint_blocks(cells, new.nested(), lambda doc: legend.index["unchanged"])
    for change in changes(old, new):
        first, last = ip_int(change.start_address), ip_int(change.end_address)
        cells[first >> 8 : (last >> 8) + 1] = legend.index[change.kind]
    _paint_special(cells)
    return _picture(cells, legend, size, title, f"{old.blocks:,} -> {new.blocks:,} blocks")


def downsample(cells: np.ndarray, prefix: int) -> np.ndarray:
    """Cells of /24 -> cells of /prefix, each the most common category among its /24s."""
    group = 1 << (24 - prefix)
    if group == 1:
        return cells
    grouped = cells.reshape(-1, group)
    best = np.zeros(len(grouped), np.uint8)
    best_count = np.zeros(len(grouped), np.int32)
    for cat in np.unique(cells).tolist():
        count = (grouped == cat).sum(axis=1)
        better = count > best_count
        best[better], best_count[better] = cat, count[better]
    return best


def raster(cells: np.ndarray, colours: list[Rgb], size: int) -> np.ndarray:
    """size x size x 3 pixels: cell d of the curve at its (x, y)."""
    cells = downsample(cells, cell_prefix(size))
    x, y = d2xy(size.bit_length() - 1, np.arange(len(cells), dtype=np.int32))
    image = np.zeros((size, size, 3), np.uint8)
    image[y, x] = np.array(colours, np.uint8)[cells]
    return image


def slash8_squares(size: int) -> Iterator[tuple[int, int, int, int]]:
    """(first octet, x, y, side) of each /8's square on the map."""
    side = size // 16
    xs, ys = d2xy(4, np.arange(256, dtype=np.int32))
    for octet, (x, y) in enumerate(zip(xs.tolist(), ys.tolist(), strict=True)):
        yield octet, x * side, y * side, side


@dataclass
class MapImage:
    """A rendered map: the pixels (map area only), its legend, and the words around it."""

    pixels: np.ndarray
    legend: Legend
    share: list[float]  # of the map's cells, per category
    title: str
    subtitle: str

    @property
    def size(self) -> int:
        return int(self.pixels.shape[0])


def layout(size: int) -> tuple[int, int]:
    """(title bar height, legend panel width) around a size x size map."""
    return max(48, size // 16), max(220, size // 3)


def render(results: ResultSet, by: str, size: int, title: str) -> MapImage:
    if by not in MODES:
        raise ValueError(f"unknown --by {by!r}: use {', '.join(MODES)}")
    legend, category = legend_for(by, results)
    return _picture(paint(results, category), legend, size, title, f"{results.blocks:,} blocks")


def _picture(cells: np.ndarray, legend: Legend, size: int, title: str, blocks: str) -> MapImage:
    share = (np.bincount(cells, minlength=len(legend.labels)) / len(cells)).tolist()
    subtitle = f"{blocks} · Hilbert curve, one pixel = /{cell_prefix(size)} · squares are /8s"
    return MapImage(raster(cells, legend.colours, size), legend, share, title, subtitle)


def _font(px: int) -> Any:
    return ImageFont.load_default(size=max(8, px))


def to_image(m: MapImage, grid: bool = True) -> Any:
    """The whole picture as a Pillow image: title, map with the /8 grid and labels, legend."""
    top, panel = layout(m.size)
    canvas = Image.new("RGB", (m.size + panel, m.size + top), BACKGROUND)
    canvas.paste(Image.fromarray(m.pixels, "RGB"), (0, top))
    draw = ImageDraw.Draw(canvas, "RGBA")
    draw.text((top // 4, top // 8), m.title, fill=(240, 240, 240), font=_font(top * 2 // 5))
    draw.text((top // 4, top * 5 // 8), m.subtitle, fill=(170, 170, 170), font=_font(top // 4))
    if grid:
        _grid(draw, m.size, top)
    _legend(draw, m, m.size + panel // 12, top + panel // 12, panel)
    return canvas


def _grid(draw: Any, size: int, top: int) -> None:
    font = _font(size // 160)
    for octet, x, y, side in slash8_squares(size):
        draw.rectangle((x, top + y, x + side - 1, top + y + side - 1), outline=(255, 255, 255, 60))
        draw.text((x + 3, top + y + 2), str(octet), fill=(255, 255, 255, 170), font=font)


def _legend(draw: Any, m: MapImage, x: int, y: int, panel: int) -> None:
    row = max(16, panel // 14)
    font = _font(row * 3 // 5)
    for label, colour, share in zip(m.legend.labels, m.legend.colours, m.share, strict=True):
        draw.rectangle((x, y, x + row * 3 // 4, y + row * 3 // 4), fill=colour)
        text = f"{label[:28]}  {100 * share:.2f}%"
        draw.text((x + row, y), text, fill=(230, 230, 230), font=font)
        y += row


def save_png(m: MapImage, out: str) -> None:
    to_image(m).save(out, "PNG", optimize=False)


def save_svg(m: MapImage, out: str) -> None:
    """An SVG: the map's pixels as one embedded PNG, the grid, labels, title and legend as vectors."""
    top, panel = layout(m.size)
    width, height = m.size + panel, m.size + top
    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", width=str(width), height=str(height),
                     viewBox=f"0 0 {width} {height}", style="font-family:sans-serif")
    ET.SubElement(svg, "rect", width=str(width), height=str(height), fill=_hex(BACKGROUND))
    png = io.BytesIO()
    Image.fromarray(m.pixels, "RGB").save(png, "PNG")
    ET.SubElement(svg, "image", x="0", y=str(top), width=str(m.size), height=str(m.size),
                  href="data:image/png;base64," + base64.b64encode(png.getvalue()).decode(),
                  style="image-rendering:pixelated")
    _svg_text(svg, top // 4, top // 2, m.title, top * 2 // 5, "#f0f0f0")
    _svg_text(svg, top // 4, top * 7 // 8, m.subtitle, top // 4, "#aaaaaa")
    for octet, x, y, side in slash8_squares(m.size):
        ET.SubElement(svg, "rect", x=str(x), y=str(top + y), width=str(side), height=str(side),
                      attrib={"fill": "none", "stroke": "white", "stroke-opacity": "0.25"})
        label_px = max(8, m.size // 160)
        _svg_text(svg, x + 3, top + y + label_px + 2, str(octet), label_px, "#ffffff")
    row, lx, ly = max(16, panel // 14), m.size + panel // 12, top + panel // 12
    for label, colour, share in zip(m.legend.labels, m.legend.colours, m.share, strict=True):
        ET.SubElement(svg, "rect", x=str(lx), y=str(ly), width=str(row * 3 // 4), height=str(row * 3 // 4),
                      fill=_hex(colour))
        text = f"{label[:28]}  {100 * share:.2f}%"
        _svg_text(svg, lx + row, ly + row * 3 // 5, text, row * 3 // 5, "#e6e6e6")
        ly += row
    ET.ElementTree(svg).write(out, encoding="utf-8", xml_declaration=True)


def _svg_text(parent: Any, x: int, y: int, text: str, px: int, fill: str) -> None:
    attrib = {"x": str(x), "y": str(y), "fill": fill, "font-size": str(max(8, px))}
    node = ET.SubElement(parent, "text", attrib)
    node.text = text


def _hex(colour: Rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)
