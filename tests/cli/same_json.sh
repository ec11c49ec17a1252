#!/usr/bin/env bash
# same_json.sh A B: two JSON objects with the same keys and values, whatever the key order.
exec python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
diff = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
print("%d of %d entries differ" % (len(diff), len(a)))
for k in diff[:5]:
    print(" ", k, repr(a.get(k))[:80], "|", repr(b.get(k))[:80])
sys.exit(1 if diff or not a else 0)
PY
