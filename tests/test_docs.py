"""The documentation in docs/: every section citation in the tree names a numbered heading.

A citation is the section sign followed by a section number ("6.2", "3"), optionally a range
("5.3-5.4", "3-" and a second section sign with "6"); a list is one citation per section sign.
It cites docs/design.md when the nearest document name before it in the same phrase is
"design" ("design 4", "design.md", "docs/design.md", each with the section sign), and
docs/math.md otherwise ("math doc", "tagi-math", "docs/math.md", or no name at all). Inside
docs/design.md a citation without a name cites that file itself. A phrase ends at a sentence
end (. ; ! ? before a space), a closing bracket, or a blank line. A paper's section is written
"section 4.3", so that it is not read as a citation.

Scanned: every tracked file (``git ls-files``) ending in .py .cu .cuh .md .yaml .sh .txt,
docs/ included. Also: no tracked file points at the shared folder above the checkout, except
for its data (the CIFAR-10 builder); the README opens with its two commands and stays short;
every relative link of a tracked markdown file names a tracked file; CITATION.cff holds what
the Citation File Format requires, with the package's version.
"""
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import tagi

ROOT = Path(__file__).resolve().parents[1]
DOCS = {"math": "docs/math.md", "design": "docs/design.md"}
SUFFIXES = (".py", ".cu", ".cuh", ".md", ".yaml", ".sh", ".txt")

NUMBER = r"\d+(?:\.\d+)*"
CITATION = re.compile(rf"\u00a7\s?({NUMBER})(?:\s?[-\u2013]\s?\u00a7?\s?({NUMBER}))?")
HEADING = re.compile(rf"^#{{1,6}}\s+({NUMBER})\.?\s", re.MULTILINE)
DOC_NAME = re.compile(r"\b(design|math)\b", re.IGNORECASE)
PHRASE_END = re.compile(r"[.;!?](?=\s)|[)\]]|\n\s*\n")
SHARED = re.compile(r"(?:\.\./|/work/)shared\b(?!/data\b)")


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout ({err}): the tracked files are unknown")
    return [name for name in out.stdout.decode().split("\0") if name]


def headings(text):
    """The numbered headings of a markdown text: {"3", "3.1", ...}."""
    return set(HEADING.findall(text))


def citations(text, default="math"):
    """[(document key, section, line number)] for every section citation in ``text``."""
    found = []
    for match in CITATION.finditer(text):
        start = match.start()
        phrase_start = max((m.end() for m in PHRASE_END.finditer(text, 0, start)), default=0)
        names = DOC_NAME.findall(text, phrase_start, start)
        doc = names[-1].lower() if names else default
        line = text.count("\n", 0, start) + 1
        found += [(doc, section, line) for section in match.groups() if section]
    return found


def test_citations_are_read_with_their_document():
    text = ("(math doc \u00a73.2, \u00a75.2). Bare \u00a76.1; design.md \u00a74, tagi-math.md "
            "\u00a73-\u00a76 and docs/design.md \u00a72.4\u2013 2.5. The design (\u00a71)\n\n"
            "\u00a79.2 and section 4.3")
    assert [(doc, sec) for doc, sec, _ in citations(text)] == [
        ("math", "3.2"), ("math", "5.2"), ("math", "6.1"), ("design", "4"), ("math", "3"),
        ("math", "6"), ("design", "2.4"), ("design", "2.5"), ("design", "1"), ("math", "9.2")]
    assert citations("\u00a7 7.3", default="design") == [("design", "7.3", 1)]
    assert headings("# Title\n## 3. Forward\n### 3.1 Moments\n#### 10.2. Notes\nno 4.\n") == \
        {"3", "3.1", "10.2"}


def test_docs_have_unique_numbered_headings():
    for path in DOCS.values():
        text = (ROOT / path).read_text(encoding="utf-8")
        numbers = HEADING.findall(text)
        assert numbers, f"{path} has no numbered headings"
        assert len(numbers) == len(set(numbers)), f"{path} repeats a section number"


def test_every_citation_names_a_numbered_heading():
    sections = {key: headings((ROOT / path).read_text(encoding="utf-8")) for key, path in DOCS.items()}
    dangling, count = [], 0
    for name in tracked_files():
        if not name.endswith(SUFFIXES) or not (ROOT / name).is_file():
            continue
        text = (ROOT / name).read_text(encoding="utf-8")
        default = "design" if name == DOCS["design"] else "math"
        for doc, section, line in citations(text, default):
            count += 1
            if section not in sections[doc]:
                dangling.append(f"{name}:{line}: \u00a7{section} is not a numbered heading of {DOCS[doc]}")
    assert count, "no section citations found: the scan is broken"
    assert not dangling, "\n".join(dangling)


def test_nothing_points_at_the_shared_folder_except_its_data():
    offending = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:          # images and other binary files
            continue
        offending += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {text[m.start():m.end() + 20]!r}"
                      for m in SHARED.finditer(text)]
    assert not offending, "documentation must live in the repository:\n" + "\n".join(offending)


README_COMMANDS = ("```bash\n"
                   "pip install -e . && python ../shared/data/make_cifar10.py data && "
                   "python -m experiments.train experiment=quick\n"
                   "pip install -e \".[dev]\" && python -m pytest -q\n"
                   "```\n")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_opens_with_its_two_commands_and_stays_short():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    title, rest = text.split("\n\n", 1)
    assert title.startswith("# ") and rest.startswith(README_COMMANDS)
    assert len(text.splitlines()) <= 160


def test_every_relative_link_names_a_tracked_file():
    files = set(tracked_files())
    broken = []
    for name in sorted(f for f in files if f.endswith(".md")):
        text = (ROOT / name).read_text(encoding="utf-8")
        for match in LINK.finditer(text):
            target = match[1].split("#")[0]
            if not target or re.match(r"[a-z]+:", target):        # an anchor in the page, or a URL
                continue
            path = (ROOT / name).parent / target
            if path.resolve().relative_to(ROOT.resolve()).as_posix() not in files and not path.is_dir():
                broken.append(f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match[1]}")
    assert not broken, "links to no tracked file:\n" + "\n".join(broken)


def test_the_citation_file_holds_the_required_keys_and_the_version():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["message"] and cff["title"] == "tagi"
    assert cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    assert str(cff["version"]) == tagi.__version__        # the one place of the version
    assert all(ref["title"] and ref["authors"] and ref["year"] for ref in cff["references"])
