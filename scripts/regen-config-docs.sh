#!/usr/bin/env bash
# Regenerates the key reference embedded in docs/configuration.md from the config schema.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=$(mktemp)
cargo run -q -p tamma -- config docs > "$ref"
python3 - "$ref" <<'PY'
import sys
doc_path = "docs/configuration.md"
begin = "<!-- BEGIN GENERATED REFERENCE (tamma config docs) -->\n"
end = "<!-- END GENERATED REFERENCE -->"
doc = open(doc_path).read()
ref = open(sys.argv[1]).read()
i = doc.index(begin) + len(begin)
j = doc.index(end)
open(doc_path, "w").write(doc[:i] + ref + doc[j:])
PY
rm -f "$ref"
echo "docs/configuration.md updated"
