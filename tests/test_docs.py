"""The docs hold together: every relative link in README.md and docs/*.md reaches a file of the repository,
and the README stays a front door (at most 200 lines, naming the two set-up commands).

Links are markdown links `[text](target)`, images `![alt](target)`, reference definitions `[id]: target` and
HTML `src=`/`href=` attributes, outside fenced code blocks and inline code. A target's `#fragment` is
stripped; web (`http:`, `https:`, any `scheme:`) and `mailto:` links and bare anchors (`#section`) are
skipped. A target resolves relative to the file that links it, must stay inside the repository, must exist,
and, in a git checkout, must not be a path git ignores (a built model, `out/`), which a clean clone lacks.
Nothing is written.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 200
SETUP_COMMANDS = ("make demo", "make test")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target may be <wrapped in angle brackets>
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code removed."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):]:
                fence = None
            continue
        yield number, INLINE_CODE.sub("", line)


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in markdown `text`, code excluded."""
    found = []
    for number, line in prose_lines(text):
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        targets += [m.group(1) for m in HTML_ATTR.finditer(line)]
        m = REFERENCE.match(line)
        if m:
            targets.append(m.group(1))
        found += [(number, t[1:-1] if t.startswith("<") and t.endswith(">") else t) for t in targets]
    return found


def local_path(target: str) -> str | None:
    """The file part of a relative link, or None for web, mail and same-page anchor links."""
    if SCHEME.match(target) or target.startswith("//"):
        return None
    path = target.split("#", 1)[0].split("?", 1)[0]
    return path or None


def broken_links(files, root: Path = ROOT) -> list[str]:
    """'file:line: target (why)' for every relative link that does not reach a file of the repository."""
    root = root.resolve()
    problems, resolved = [], {}
    for doc in files:
        for number, target in links(doc.read_text(encoding="utf-8")):
            path = local_path(target)
            if path is None:
                continue
            where = f"{doc.relative_to(root)}:{number}: {target}"
            full = ((root / path.lstrip("/")) if path.startswith("/") else (doc.parent / path)).resolve()
            if not full.is_relative_to(root):
                problems.append(f"{where} (outside the repository)")
            elif not full.exists():
                problems.append(f"{where} (no such file)")
            else:
                resolved[full.relative_to(root).as_posix()] = where
    for path in ignored_by_git(list(resolved), root):
        problems.append(f"{resolved[path]} (git ignores {path}: a clean clone does not have it)")
    return problems


def ignored_by_git(paths: list[str], root: Path) -> list[str]:
    """The paths git ignores in the checkout at `root` (none when git or the checkout is not there)."""
    if not paths or shutil.which("git") is None or not (root / ".git").exists():
        return []
    run = subprocess.run(["git", "-C", str(root), "check-ignore", "--stdin"],
                         input="\n".join(paths), capture_output=True, text=True)
    if run.returncode not in (0, 1):   # 1: nothing ignored
        return []
    return [p for p in run.stdout.splitlines() if p]


def test_every_relative_link_in_the_docs_resolves():
    files = doc_files()
    assert (ROOT / "README.md").is_file() and len(files) > 1, files
    assert sum(len(links(f.read_text(encoding="utf-8"))) for f in files) > 10, "no links found: is the parser broken?"
    problems = broken_links(files)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"
    for command in SETUP_COMMANDS:
        assert command in text, f"README.md does not name `{command}`"


# --- the checks can fail ---------------------------------------------------------------------------------

def test_the_link_parser_finds_links_and_skips_code_web_and_anchors():
    text = "\n".join([
        "See [a](docs/a.md#part) and ![pic](img/p.png \"title\") and [web](https://example.org/x.md).",
        "[mail](mailto:someone@example.org) [anchor](#section) `[code](not/a/link.md)` <img src=\"h.png\">",
        "```",
        "[fenced](not/a/link.md)",
        "```",
        "[ref]: ref/target.md",
        "[nested [brackets]](<with space.md>)",
    ])
    targets = [t for _, t in links(text)]
    assert [local_path(t) for t in targets if local_path(t)] == [
        "docs/a.md", "img/p.png", "h.png", "ref/target.md", "with space.md"]
    assert "not/a/link.md" not in targets


@pytest.mark.parametrize("target, why", [("missing.md", "no such file"), ("../../outside.md", "outside the repository"),
                                         ("present.md#anchor", None), ("sub/", None)])
def test_broken_links_are_reported(tmp_path, target, why):
    (tmp_path / "present.md").write_text("x")
    (tmp_path / "sub").mkdir()
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir()
    doc.write_text(f"text [link](../{target}) more\n")
    problems = broken_links([doc], tmp_path)
    if why is None:
        assert problems == []
    else:
        assert len(problems) == 1 and why in problems[0] and "docs/page.md:1" in problems[0], problems
