"""The visible text of an HTML page, in time proportional to its size, at any depth it parses.

BeautifulSoup took 55 s on a 220 KB page of 20,000 nested <div>s: marking block boundaries
by inserting nodes into its tree costs a walk to the last descendant per insert, so deep
pages are quadratic. Here libxml2 (through lxml) builds the tree in C and one iterative
walk (an explicit stack, so Python's recursion limit never matters) reads the text,
deciding paragraph breaks as it enters and leaves elements; the tree is never edited.

libxml2 stops building the tree at a fixed depth (256, or 2048 with huge_tree) and reports
it only in the parser's error log, keeping what it had: such a page, and any page deeper
than the configured limit, is refused with a reason instead of being indexed truncated.

Only a page's content is read, not its site chrome: where the page marks its content
(`<main>`, `role="main"`, a single `<article>`), the walk reads that element alone; and
anywhere, navigation, sidebars, breadcrumbs, banners, footers, cookie notices and
permalink marks (Sphinx's "¶") are left out by their tags, ARIA roles and class names.
A Python documentation page otherwise repeats some 200 words of menus and licence on
each of its 500 pages; every copy would be indexed, retrieved and read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from .limits import LIBXML2_MAX_DEPTH

# <title> is read before these go; lxml puts a stray <title> into <head>, which is not shown
INVISIBLE_TAGS = frozenset((
    "script", "style", "noscript", "template", "head", "title", "svg", "canvas", "iframe",
    "object", "embed",
))  # fmt: skip
BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
    "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1",
    "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li", "main",
    "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr",
    "ul",
))  # fmt: skip
CELL_TAGS = frozenset(("td", "th"))
CHROME_TAGS = frozenset(("nav", "aside"))
# header and footer are chrome at the page level, content inside an article or main
PAGE_CHROME_TAGS = frozenset(("header", "footer"))
CHROME_ROLES = frozenset(("navigation", "banner", "contentinfo", "complementary", "search"))
# Class or id names of chrome in common site generators (Sphinx, DocBook, Publican, MkDocs,
# themes). Not a plain "sidebar": DocBook calls its tip and note boxes that, and they are
# content; "sphinxsidebar", "left-sidebar" and the like are menus.
CHROME_NAMES = frozenset((
    "breadcrumb", "breadcrumbs", "navbar", "navheader", "navfooter", "navigation", "nav",
    "docnav", "sphinxsidebar", "related", "footer", "site-footer", "header", "site-header",
    "banner", "toc", "table-of-contents", "cookie", "cookies", "cookie-banner", "skip-link",
    "edit-this-page", "headerlink", "permalink", "anchorjs-link",
))  # fmt: skip
CHROME_NAME_PARTS = ("breadcrumb", "cookie", "navbar")
PERMALINK_MARKS = frozenset(("¶", "#", "§", "🔗", "⚓"))
CONTENT_TAGS = frozenset(("main", "article"))
_SPACE = re.compile(r"[ \t\n\r\f]+")
_DISPLAY_NONE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")


class HtmlError(ValueError):
    """A page that cannot be read whole; the message is the skip reason."""


@dataclass(frozen=True)
class Page:
    title: str | None
    blocks: list[str]  # one paragraph per block element, blank ones left out


def read_page(html: bytes, max_depth: int) -> Page:
    """Title and visible text of UTF-8 `html`; HtmlError when it nests deeper than
    `max_depth` (or than libxml2 can build) or the parser gives up part-way."""
    root = _parse(html, min(max_depth, LIBXML2_MAX_DEPTH - 1))
    if root is None:
        return Page(None, [])
    content = main_content(root)
    depth = 1 + sum(1 for _ in content.iterancestors())
    return Page(_title(root), _blocks(content, max_depth, depth))


def main_content(root: etree._Element) -> etree._Element:
    """The element the page marks as its content: the one `<main>` or `role="main"`, else
    the one `<article>`; else the whole page. Several marked elements are no mark."""
    for candidates in (root.xpath("//main | //*[@role='main']"), root.xpath("//article")):
        marked = set(candidates)
        outermost = [e for e in candidates if not any(a in marked for a in e.iterancestors())]
        if len(outermost) == 1 and not _hidden(outermost[0]):
            return outermost[0]
    return root


def is_chrome(element: etree._Element, in_content: bool) -> bool:
    """Navigation, sidebars, banners and the like; permalink marks beside headings. Inside
    an article or the page's main content, only the tags, roles and permalinks that mark
    chrome anywhere count, not class names such as "header"."""
    tag = element.tag
    if tag in CHROME_TAGS or (tag in PAGE_CHROME_TAGS and not in_content):
        return True
    if element.get("role", "").strip().lower() in CHROME_ROLES:
        return True
    names = f"{element.get('class', '')} {element.get('id', '')}".lower().split()
    if "headerlink" in names or "permalink" in names:
        return True
    if not in_content and any(
            n in CHROME_NAMES or any(part in n for part in CHROME_NAME_PARTS)
            or ("sidebar" in n and n != "sidebar") for n in names):
        return True
    if tag == "a" and len(element) == 0 and element.get("href", "").startswith("#"):
        return (element.text or "").strip() in PERMALINK_MARKS
    return False


def _parse(html: bytes, depth_limit: int) -> etree._Element | None:
    # huge_tree: text nodes over 10 MB are otherwise cut, silently
    parser = etree.HTMLParser(encoding="utf-8", huge_tree=True, remove_comments=True,
                              remove_pis=True, no_network=True)
    try:
        root = etree.fromstring(html, parser)
    except (etree.LxmlError, ValueError) as exc:
        raise HtmlError(f"unreadable HTML ({type(exc).__name__}: {exc})") from exc
    for error in parser.error_log:
        if error.level == etree.ErrorLevels.FATAL:  # the parser stopped: the tree is cut
            if "depth" in error.message.lower():
                raise HtmlError(_too_deep(depth_limit))
            raise HtmlError(f"unreadable HTML ({error.message.strip()})")
    return root


def _too_deep(limit: int) -> str:
    return f"HTML nested deeper than the {limit}-level limit"


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _title(root: etree._Element) -> str | None:
    for tag in ("title", "h1"):
        element = next(root.iter(tag), None)
        if element is not None and (title := _collapse(" ".join(element.itertext()))):
            return title
    return None


def _hidden(element: etree._Element) -> bool:
    return (element.tag in INVISIBLE_TAGS or "hidden" in element.attrib
            or _DISPLAY_NONE.search(element.get("style", "")) is not None)


def _blocks(root: etree._Element, max_depth: int, depth: int = 1) -> list[str]:
    """Paragraphs in document order. An element's text is inside it; its tail follows it,
    inside its parent: so the walk emits text on entering, breaks and tails on leaving.
    `depth` is the level of `root` in its page, for the depth limit."""
    blocks: list[str] = []
    pieces: list[str] = []
    in_pre = 0  # <pre> elements open around the current position: whitespace is kept there

    def emit(text: str | None) -> None:
        if text:
            pieces.append(text if in_pre else _SPACE.sub(" ", text))

    def flush() -> None:
        block = _join_block(pieces)
        if block:
            blocks.append(block)
        pieces.clear()

    in_content = 0  # article or main elements open around the current position
    marked = root.getparent() is not None  # the walk reads the page's marked content
    stack: list[tuple[etree._Element, int, bool]] = [(root, depth, False)]
    while stack:
        element, depth, leaving = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else None
        if leaving:
            if tag == "pre":
                in_pre -= 1
            if tag in CONTENT_TAGS or (element is root and marked):
                in_content -= 1
            if tag in BLOCK_TAGS:
                flush()
            elif tag in CELL_TAGS:
                pieces.append(" ")
            emit(element.tail)
            continue
        if depth > max_depth:
            raise HtmlError(_too_deep(max_depth))
        chrome = element is not root and is_chrome(element, in_content > 0)
        if tag is None or _hidden(element) or chrome:
            emit(element.tail)  # an entity or the like, not shown, or the site's chrome
            continue
        if tag in BLOCK_TAGS:
            flush()
        if tag == "pre":
            in_pre += 1
        if tag in CONTENT_TAGS or (element is root and marked):
            in_content += 1
        emit(element.text)
        stack.append((element, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(element))
    flush()
    return blocks


def _join_block(pieces: list[str]) -> str:
    """One paragraph: inline pieces joined, blank lines (from <pre>) squeezed, ends trimmed."""
    text = "".join(pieces).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()
