#!/usr/bin/env python3
"""Checks the built book (docs/book) and the README's links into it: every
internal link points at a page that exists and, with a #fragment, at an id
that page has. External links (http, https, mailto) are not followed: the
machines this runs on have no network.

Usage: check-book.py BOOK_DIR README"""
import html.parser
import pathlib
import re
import sys
import urllib.parse


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) and tag in ("a", "img", "link", "script"):
                self.links.append(a[key])


def parse(path, cache={}):
    if path not in cache:
        p = Links()
        p.feed(path.read_text(errors="replace"))
        cache[path] = p
    return cache[path]


def check(src, link, root, broken):
    if re.match(r"^[a-z]+:", link) or link.startswith("//"):
        return
    url = urllib.parse.urlsplit(link)
    target = (src.parent / urllib.parse.unquote(url.path)).resolve() if url.path else src
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        broken.append(f"{src.relative_to(root)}: {link}: no such file")
        return
    if url.fragment and target.suffix == ".html" and url.fragment not in parse(target).ids:
        broken.append(f"{src.relative_to(root)}: {link}: no #{url.fragment} there")


def main():
    book, readme = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve()
    broken, pages = [], sorted(book.rglob("*.html"))
    for page in pages:
        if page.name in ("print.html", "toc.html", "404.html"):
            continue
        for link in parse(page).links:
            check(page, link, book, broken)
    # the README links to the book's sources: each must exist, and its
    # fragment must be an id of the page built from it
    src = readme.parent / "docs/src"
    for m in re.finditer(r"\]\((docs/src/[^)#]+)(#[^)]+)?\)", readme.read_text()):
        md = readme.parent / m.group(1)
        if not md.exists():
            broken.append(f"README.md: {m.group(1)}: no such file")
            continue
        if m.group(2):
            built = book / md.relative_to(src).with_suffix(".html")
            if m.group(2)[1:] not in parse(built).ids:
                broken.append(f"README.md: {m.group(0)}: no {m.group(2)} there")
    for b in broken:
        print(b)
    print(f"book: {len(pages)} pages, {len(broken)} broken links")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
