"""Split a PostgreSQL script into statements, the way psql would.

Only what decides where a statement ends is understood: ``--`` and ``/* */`` comments
(nested, as PostgreSQL allows), '...' strings (with '' inside), "..." identifiers and
$tag$...$tag$ bodies. Comments are dropped from the statement text; each statement
keeps the line it starts on (1-based) for messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Statement:
    text: str          # the statement without comments and without its ';', whitespace collapsed
    line: int          # where it starts in the file (1-based)


def split(script: str) -> list[Statement]:
    out: list[Statement] = []
    buf: list[str] = []
    start_line = None
    line = 1
    i, n = 0, len(script)

    def flush() -> None:
        nonlocal buf, start_line
        text = " ".join("".join(buf).split())
        if text:
            out.append(Statement(text, start_line or line))
        buf, start_line = [], None

    while i < n:
        c = script[i]
        if c == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "/" and script.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if script.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif script.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += script[i] == "\n"
                    i += 1
            buf.append(" ")
            continue
        if c == ";":
            flush()
            i += 1
            continue
        if not c.isspace() and start_line is None:
            start_line = line
        if c in "'\"":
            end = i + 1
            while end < n:
                if script[end] == c:
                    if end + 1 < n and script[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            chunk = script[i:end + 1]
        elif c == "$" and (m := _DOLLAR_TAG.match(script, i)) and not (i and (script[i - 1].isalnum()
                                                                             or script[i - 1] == "_")):
            close = script.find(m.group(0), m.end())
            chunk = script[i:] if close < 0 else script[i:close + len(m.group(0))]
        else:
            chunk = c
        buf.append(chunk)
        line += chunk.count("\n")
        i += len(chunk)
    flush()
    return out


def unquote_ident(name: str) -> str:
    """``"User"`` -> ``User``; an unquoted identifier folds to lower case; ``public."User"`` -> ``User``."""
    name = name.strip()
    parts = re.findall(r'"(?:[^"]|"")*"|[^."]+', name)
    last = parts[-1] if parts else name
    if last.startswith('"'):
        return last[1:-1].replace('""', '"')
    return last.lower()
