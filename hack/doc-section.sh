#!/usr/bin/env bash
# hack/doc-section.sh NAME TITLE BLOCK: puts BLOCK between the `<!-- NAME:begin -->` and
# `<!-- NAME:end -->` markers of docs/benchmarks.md (adding a "## TITLE" section with the markers
# at the end when they are missing). The benchmark scripts write their tables with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name=$1 title=$2 block=$3
doc=docs/benchmarks.md
begin="<!-- $name:begin -->" end="<!-- $name:end -->"
if ! grep -qF "$begin" "$doc"; then
  printf '\n## %s\n\n%s\n%s\n' "$title" "$begin" "$end" >>"$doc"
fi
python3 - "$doc" "$begin" "$end" "$block" <<'PY'
import sys
path, begin, end, block = sys.argv[1:]
text = open(path).read()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(f"{head}{begin}\n{block}\n{end}{tail}")
PY
