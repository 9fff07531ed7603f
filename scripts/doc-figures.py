#!/usr/bin/env python3
"""Keeps the figures in the docs tied to the runs that produced them.

A region of a Markdown file between

    <!-- results: docs/results/NAME.txt -->
    ...
    <!-- end results -->

must hold exactly that file: verbatim for a `.md` file (a table a script wrote), inside a
```text fence otherwise (what a benchmark printed, headed by its command and date, as
scripts/record-bench.sh keeps it). And every numbered section of docs/benchmarks.md
("## 1. ...") must quote at least one results file, so no figure there stands without the run
that produced it.

    python3 scripts/doc-figures.py            # check (scripts/test.sh runs it); exit 1 if not
    python3 scripts/doc-figures.py --update   # rewrite the regions from the files
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "benchmarks.md"]
REGION = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- end results -->)", re.S)


def quote(path: pathlib.Path) -> str:
    text = path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    return text if path.suffix == ".md" else "```text\n" + text + "```\n"


def main() -> int:
    update = "--update" in sys.argv[1:]
    errors = []
    for doc in DOCS:
        text = doc.read_text()
        rel = doc.relative_to(ROOT)

        def fix(m: re.Match) -> str:
            src = ROOT / m.group(2)
            if not src.is_file():
                errors.append(f"{rel}: quotes {m.group(2)}, which does not exist")
                return m.group(0)
            want = quote(src)
            if m.group(3) != want:
                if update:
                    return m.group(1) + want + m.group(4)
                errors.append(f"{rel}: the quote of {m.group(2)} differs from the file (--update rewrites it)")
            return m.group(0)

        new = REGION.sub(fix, text)
        if update and new != text:
            doc.write_text(new)
            print(f"updated {rel}")
        if doc.name == "benchmarks.md":
            sections = re.split(r"^(?=## \d+\. )", new, flags=re.M)
            for s in sections[1:]:
                if "<!-- results: " not in s:
                    errors.append(f"{rel}: section '{s.splitlines()[0]}' quotes no results file")
    for e in errors:
        print(e, file=sys.stderr)
    if not errors and not update:
        print(f"doc figures: every quote matches its results file ({', '.join(str(d.relative_to(ROOT)) for d in DOCS)})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
