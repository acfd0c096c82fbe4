"""The README and docs/ say what the kit does: every command they show parses, every relative
link points at a file (and heading) that exists, and the README stays short.

Commands are checked against the command line's own parser (``safsd_glnet.cli.commands.build_parser``),
not in subprocesses: a ``bash`` block's ``safsd-glnet`` command must parse as written (flags,
choices, types, required options), and every flag of a ``text`` block's synopsis or of an inline
``safsd-glnet ...`` span must exist, spelled out in full (argparse would accept an abbreviation).
The last tests break a copy of the README in each of these ways and check that each check
notices.
"""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from safsd_glnet.cli.commands import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 260
PROGRAM = "safsd-glnet"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\s`]*)")
_INLINE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
_LINK = re.compile(r"!?\[[^\]\n]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")
_SEPARATORS = {";", "&&", "||", "|", "&"}


# --------------------------------------------------------------------------- reading Markdown

def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(info, body)`` of every fenced code block of a Markdown text (indented fences too, as
    in list items); ``info`` is the language word after the fence, lower-case, or ''."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, body, i = opening["fence"], [], i + 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(opening["indent"]):] if lines[i].startswith(opening["indent"]) else lines[i])
            i += 1
        blocks.append((opening["info"].lower(), "\n".join(body)))
        i += 1
    return blocks


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    out, inside, fence = [], False, ""
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if not inside and opening:
            inside, fence = True, opening["fence"]
        elif inside and line.strip().startswith(fence):
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def shell_commands(body: str) -> list[list[str]]:
    """The simple commands of a shell block as argument lists: continuation lines joined,
    comments dropped, split at ``;``, ``&&``, ``||``, ``|`` and ``&``; here-documents skipped."""
    commands: list[list[str]] = []
    lines = body.replace("\\\n", " ").splitlines()
    heredoc_end = None
    for line in lines:
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if marker:
            heredoc_end = marker.group(1)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token in _SEPARATORS:
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def program_commands(markdown: str) -> tuple[list[list[str]], list[str]]:
    """``(runnable, synopses)``: the ``safsd-glnet`` commands of the shell blocks as argument
    lists (the program name dropped), and the ``safsd-glnet`` lines of the other blocks and of
    inline code spans as text (synopses such as ``--preset small|paper``)."""
    runnable, synopses = [], []
    for info, body in code_blocks(markdown):
        if info in SHELL_LANGUAGES:
            runnable += [c[1:] for c in shell_commands(body) if c[0] == PROGRAM]
        else:
            joined = body.replace("\\\n", " ")
            synopses += [line.strip() for line in joined.splitlines() if _is_command(line.strip())]
    synopses += [m["code"].strip() for m in _INLINE.finditer(prose(markdown)) if _is_command(m["code"].strip())]
    return runnable, synopses


def _is_command(line: str) -> bool:
    """``safsd-glnet WORD ...``, but not a message the program printed (``safsd-glnet train: error: ...``)."""
    words = line.split()
    return len(words) > 1 and words[0] == PROGRAM and not words[1].endswith(":")


# --------------------------------------------------------------------------- the command line

def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_parser(words: list[str]) -> tuple[list[str], argparse.ArgumentParser | None]:
    """The subcommand path at the start of ``words`` (``["data", "meld"]``) and its parser; None
    where the first word names no command."""
    parser, path = build_parser(), []
    for word in words:
        subs = subcommand_parsers(parser)
        if not subs or word not in subs:
            break
        parser, path = subs[word], path + [word]
    return path, (parser if path else None)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def flag_problems(words: list[str]) -> list[str]:
    """What is wrong with the flags of one command (words after the program name): an unknown
    command, a subcommand group given without its subcommand, or a flag the command lacks."""
    path, parser = command_parser(words)
    shown = " ".join([PROGRAM] + words)
    if parser is None:
        return [f"{shown}: no command {words[0] if words else ''!r}"]
    if subcommand_parsers(parser):
        return [f"{shown}: '{' '.join(path)}' needs one of {sorted(subcommand_parsers(parser))}"]
    known = option_strings(parser)
    return [f"{shown}: {' '.join(path)} has no {flag}" for flag in
            dict.fromkeys(_FLAG.findall(" ".join(words[len(path):]))) if flag not in known]


def parse_problem(words: list[str]) -> str | None:
    """None if ``safsd-glnet WORDS`` parses as written, else argparse's message."""
    import contextlib
    import io

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(words)
    except SystemExit as e:
        if e.code:
            return f"{' '.join([PROGRAM] + words)}: {stderr.getvalue().strip().splitlines()[-1]}"
    return None


def command_problems(markdown: str) -> list[str]:
    """Every problem of every ``safsd-glnet`` command in a Markdown text."""
    runnable, synopses = program_commands(markdown)
    problems = []
    for words in runnable:
        found = flag_problems(words)
        problems += found or [p for p in [parse_problem(words)] if p]
    for line in synopses:
        problems += flag_problems(line.split()[1:])
    return problems


# --------------------------------------------------------------------------- links

def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text: lower case, punctuation
    dropped (hyphens and underscores kept), spaces as hyphens, repeats numbered -1, -2, ..."""
    anchors: set[str] = set()
    for line in prose(markdown).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        anchor, k = slug, 0
        while anchor in anchors:
            k += 1
            anchor = f"{slug}-{k}"
        anchors.add(anchor)
    return anchors


def link_problems(markdown: str, where: Path) -> list[str]:
    """Relative links of a Markdown file (at ``where``) whose file, or whose heading in a
    Markdown file, does not exist; links with a scheme (https:, mailto:) are not followed."""
    problems = []
    for m in _LINK.finditer(prose(markdown)):
        target = m["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (where.parent / path_part).resolve() if path_part else where
        if not path.exists():
            problems.append(f"{where.name}: link to {target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
            problems.append(f"{where.name}: link to {target}: no heading with that anchor in {path.name}")
    return problems


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# --------------------------------------------------------------------------- the tests

def test_readme_commands_parse_and_use_only_existing_flags():
    runnable, synopses = program_commands(README.read_text(encoding="utf-8"))
    assert len(runnable) >= 5 and len(synopses) >= 12, "the README shows the command line"
    assert command_problems(README.read_text(encoding="utf-8")) == []


def test_docs_commands_parse_and_use_only_existing_flags():
    problems = []
    for path in sorted(DOCS.glob("*.md")):
        problems += command_problems(path.read_text(encoding="utf-8"))
    assert problems == []


def help_problem(path: tuple[str, ...], parser: argparse.ArgumentParser | None = None) -> str | None:
    """None if ``safsd-glnet PATH --help`` prints the command's usage and exits 0, else what went wrong."""
    import contextlib
    import io

    out = io.StringIO()
    shown = " ".join([PROGRAM, *path, "--help"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            (parser or build_parser()).parse_args([*path, "--help"])
    except SystemExit as e:
        if e.code:
            return f"{shown}: exit {e.code}"
    except Exception as e:  # a help text argparse cannot format
        return f"{shown}: {type(e).__name__}: {e}"
    else:
        return f"{shown}: printed no help"
    usage = f"usage: {PROGRAM} {' '.join(path)}"
    return None if usage in out.getvalue() else f"{shown}: no '{usage}' in its output"


def test_every_command_the_readme_uses_has_working_help():
    runnable, synopses = program_commands(README.read_text(encoding="utf-8"))
    paths = {tuple(command_parser(words)[0]) for words in runnable + [s.split()[1:] for s in synopses]}
    assert ("data", "meld") in paths and ("train",) in paths and ("predict",) in paths
    assert [p for p in (help_problem(path) for path in sorted(paths)) if p] == []


def test_every_relative_link_points_at_an_existing_file_and_heading():
    problems = []
    for path in markdown_files():
        problems += link_problems(path.read_text(encoding="utf-8"), path)
    assert problems == []


def test_every_docs_page_is_on_the_docs_map():
    mapped = {m["target"].partition("#")[0] for m in _LINK.finditer((DOCS / "README.md").read_text(encoding="utf-8"))}
    unmapped = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in mapped]
    assert unmapped == []


def length_problem(path: Path) -> str | None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    return f"{path.name} has {lines} lines; at most {MAX_README_LINES}" if lines > MAX_README_LINES else None


def test_readme_is_short():
    assert length_problem(README) is None


# --------------------------------------------------------------------------- the checks can fail

def test_the_command_check_notices_a_flag_that_does_not_exist():
    text = README.read_text(encoding="utf-8")
    broken = text.replace("safsd-glnet data meld --out", "safsd-glnet data meld --outt", 1)
    assert broken != text
    assert any("data meld has no --outt" in p for p in command_problems(broken))
    # an abbreviation argparse would accept is still reported: flags are spelled out in full
    assert flag_problems(["train", "--epoch", "3"]) == ["safsd-glnet train --epoch 3: train has no --epoch"]


def test_the_command_check_notices_a_command_that_does_not_parse():
    block = "```bash\nsafsd-glnet train --preset huge --out runs/x\nsafsd-glnet data --out d\n```\n"
    problems = command_problems(block)
    assert any("invalid choice: 'huge'" in p for p in problems)
    assert any("'data' needs one of ['meld']" in p for p in problems)
    synopsis = "```text\nsafsd-glnet trian --data DATA\n```\nand `safsd-glnet predict --checkpoint C --dialog x`\n"
    assert command_problems(synopsis) == ["safsd-glnet trian --data DATA: no command 'trian'",
                                          "safsd-glnet predict --checkpoint C --dialog x: predict has no --dialog"]


def test_the_help_check_notices_a_help_that_fails():
    parser = argparse.ArgumentParser(prog=PROGRAM)
    broken = parser.add_subparsers(dest="command").add_parser("train")
    broken.add_argument("--lr", help="100% of the default")  # argparse formats help with %: '% o' breaks it
    problem = help_problem(("train",), parser)
    assert problem.startswith(f"{PROGRAM} train --help: ") and "format" in problem, problem
    parser = argparse.ArgumentParser(prog="other")
    parser.add_subparsers(dest="command").add_parser("train")
    assert help_problem(("train",), parser) == f"{PROGRAM} train --help: no 'usage: {PROGRAM} train' in its output"
    assert help_problem(("train",)) is None


def test_the_link_check_notices_a_missing_file_and_a_missing_heading():
    text = README.read_text(encoding="utf-8")
    assert "(docs/README.md)" in text
    broken = text.replace("(docs/README.md)", "(docs/READ_ME.md)", 1)
    assert link_problems(broken, README) == ["README.md: link to docs/READ_ME.md: no such file"]
    anchor = "[x](docs/data_formats.md#no-such-heading) [y](docs/data_formats.md#table-layouts)"
    assert link_problems(anchor, README) == \
        ["README.md: link to docs/data_formats.md#no-such-heading: no heading with that anchor in data_formats.md"]


def test_the_length_check_notices_a_long_readme(tmp_path):
    long = tmp_path / "README.md"
    long.write_text(README.read_text(encoding="utf-8") + "line\n" * MAX_README_LINES, encoding="utf-8")
    assert length_problem(long).startswith("README.md has ") and length_problem(long).endswith(
        f"lines; at most {MAX_README_LINES}")


def test_shell_commands_are_split_like_a_shell():
    body = ("safsd-glnet data meld --out d   # once\n"
            "safsd-glnet finetune --meld d \\\n    --out f.npz && safsd-glnet train --data f.npz; echo done\n"
            "cat > talk.txt <<'TXT'\nsafsd-glnet: not a command\nTXT\n")
    assert shell_commands(body) == [[PROGRAM, "data", "meld", "--out", "d"],
                                    [PROGRAM, "finetune", "--meld", "d", "--out", "f.npz"],
                                    [PROGRAM, "train", "--data", "f.npz"], ["echo", "done"],
                                    ["cat", ">", "talk.txt", "<<", "TXT"]]
