#!/usr/bin/env bash
# Regenerates the nft fixtures the nf_tables encoder is tested against (src/net/nft_table.rs):
# nft itself runs tests/fixtures/nft/sample-install.json (nft_table's sample network, installed
# on an idle host, as a JSON batch of nft commands in the order of hydra's transaction: JSON,
# as nft's text syntax will not take chains named like keywords, `dnat`) in a scratch network
# namespace, and what it printed with --debug=netlink,mnl becomes
#   tests/fixtures/nft/sample-install.netlink  (the expressions of each rule)
#   tests/fixtures/nft/sample-install.mnl      (every message of the batch, byte for byte).
# Edit the .json batch when the rules change, then run this (as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=tests/fixtures/nft
ns=hydra-fixtures-$$
raw=$(mktemp)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -f "$raw"' EXIT
ip netns add "$ns"
version=$(nft --version | awk '{print $2}' | tr -d v)
ip netns exec "$ns" nft -j --debug=netlink,mnl -f "$dir/sample-install.json" >"$raw" 2>&1
python3 - "$dir" "$version" "$(uname -r | cut -d. -f1,2)" "$raw" <<'PY'
import re, sys
dir_, version, kernel, raw = sys.argv[1:5]
text = re.sub(r"\x1b\[[0-9;]*m", "", open(raw).read())
netlink, messages, current, in_batch = [], [], None, False
for line in text.splitlines():
    m = re.match(r"\|\s+(\d+) \| [R-]", line)
    if m:
        kind = int(m.group(1))
        if kind == 16:
            in_batch = True
        elif kind == 17:
            in_batch = False
        elif in_batch:
            current = [str(kind & 0xFF)]
            messages.append(current)
        else:
            current = None
        continue
    m = re.match(r"\|(\d{5})\|([N-])([B-])\|(\d{5})\|", line)
    if m and current is not None:
        kind = int(m.group(4)) | (0x8000 if m.group(2) == "N" else 0) | (0x4000 if m.group(3) == "B" else 0)
        current.append("<%04x%04x>" % (int(m.group(1)), kind))
        continue
    m = re.match(r"\| ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2})  \|\s+\|\s+data", line)
    if m and current is not None:
        current.append("".join(m.groups()))
        continue
    if line.startswith("|") or line.startswith("-"):
        continue
    netlink.append(line)
head = "# nft --debug=%s output (nftables %s, Linux %s) for tests/fixtures/nft/sample-install.json\n" \
       "# (nft_table's sample network on an idle host, nft commands in hydra's order), run in a\n" \
       "# scratch network namespace by hack/nft-fixtures.sh.\n"
with open(dir_ + "/sample-install.netlink", "w") as f:
    f.write(head % ("netlink", version, kernel))
    f.write("# The netlink installer must produce the same expressions, rule by rule.\n")
    f.write("\n".join(netlink).rstrip("\n") + "\n")
with open(dir_ + "/sample-install.mnl", "w") as f:
    f.write(head % ("mnl", version, kernel))
    f.write("# Between NFNL_MSG_BATCH_BEGIN and _END: message type (without the subsystem), then the\n"
            "# body after the nfgenmsg header: attribute headers as <LLLLTTTT> (length, type with\n"
            "# NLA_F_NESTED), payload bytes in memory order, four per word.\n")
    for m in messages:
        f.write(" ".join(m) + "\n")
PY
echo "nft-fixtures: wrote $dir/sample-install.netlink and $dir/sample-install.mnl"
