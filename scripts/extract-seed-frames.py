#!/usr/bin/env python3
"""Extract raw eth-dix frames from the tcpdump hex dumps in the seed tutorials.

Usage: scripts/extract-seed-frames.py [SEEDS_DIR] [-o OUTPUT]

SEEDS_DIR defaults to ../shared/seeds relative to the repository root, OUTPUT
to wire/tests/vectors/seed_frames.txt in the repository root.

`tcpdump -x` prints the frame starting after the 14-byte Ethernet header, so
each frame is rebuilt as dst MAC + src MAC + ethertype + dumped bytes.  Only
the 4-digit (or final 2-digit) hex groups between the `0x....:` offset and the
ASCII column are read; the ASCII column is only used for a sanity warning
(the tutorials' ASCII columns are not always faithful, the hex is the truth).

A frame is excluded (and listed in a comment) if its dump is abbreviated
(a "(... ...)" gap or an offset discontinuity), malformed, or fails the
length checks:
  * 14 + len(dump) == tcpdump "length L"
  * dump[2:4] (the eth-dix length field, big endian) == len(dump) - 4
"""

import argparse
import glob
import os
import re
import sys

# (file prefix, kind, description, frame names or None to use "Packet N: TITLE")
SOURCES = [
    ("000", "legacy021",
     "Tutorial 04, eth-dix over WiFi, older protocol version",
     # The flattened tutorial text gives no per-frame titles; names follow
     # the exchange (client->server, server->client, oping request/reply).
     ["flow-req", "flow-reply", "echo-request", "echo-reply"]),
    ("003", "v022",
     "Tutorial 06, eth-dix over lo, OAP format of version 0.22",
     None),
]

HEADER_RE = re.compile(
    r"(?P<ts>\d\d:\d\d:\d\d\.\d+)\s+"
    r"(?P<src>(?:[0-9a-f]{2}:){5}[0-9a-f]{2})(?:\s+\(oui [^)]*\))?\s+>\s+"
    r"(?P<dst>(?:[0-9a-f]{2}:){5}[0-9a-f]{2})(?:\s+\(oui [^)]*\))?,\s+"
    r"ethertype [^(,]*\(0x(?P<etype>[0-9a-f]{4})\),\s+length (?P<len>\d+):",
    re.I)
OFFSET_RE = re.compile(r"0x([0-9a-f]{4}):[ \t]*", re.I)
GAP_RE = re.compile(r"^\(\s*\.\.\..*\)$")
TITLE_RE = re.compile(r"^Packet (\d+):\s*(.+?)\s*$", re.M)
GROUP_RE = re.compile(r"([0-9a-f]{4}|[0-9a-f]{2})(?=\s|$)", re.I)


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def ascii_render(data):
    return "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in data)


def parse_hex_content(content):
    """Return (bytes, rest) for the text after one `0x....:` marker."""
    groups, pos = [], 0
    while len(groups) < 8:
        m = GROUP_RE.match(content, pos)
        if not m:
            break
        groups.append(m.group(1))
        pos = m.end()
        if len(m.group(1)) == 2:
            break  # odd final byte ends the line
        if content.startswith("  ", pos):
            break  # two spaces: the ASCII column follows
        if content.startswith(" ", pos):
            pos += 1
    rest = content[pos:].strip()
    data = bytes.fromhex("".join(groups))
    # In flattened text the ASCII column follows after a single space, so an
    # ASCII column that looks like hex could be swallowed into a short final
    # line.  If the greedy parse's rendering does not match what follows, take
    # the longest shorter prefix whose rendering does (if any).
    if 0 < len(groups) < 8 and not content.startswith("  ", pos):
        def matches(k):
            tail = " ".join(groups[k:] + ([rest] if rest else []))
            return tail, (not tail or
                          tail.startswith(ascii_render(bytes.fromhex("".join(groups[:k])))))
        if not matches(len(groups))[1]:
            for k in range(len(groups) - 1, 0, -1):
                tail, ok = matches(k)
                if ok:
                    return bytes.fromhex("".join(groups[:k])), tail
    return data, rest


def parse_dump(text):
    """Parse the hex block that starts at the beginning of `text`.

    Returns (data, shown, problems, warnings); data is None if the dump is
    abbreviated, shown is the number of bytes actually printed."""
    data = bytearray()
    problems, warnings = [], []
    started = abbreviated = False
    shown = 0
    for line in text.split("\n"):
        s = line.strip()
        if not s:
            if started:
                break
            continue
        if GAP_RE.match(s):
            if not abbreviated:
                problems.append("abbreviated dump: %s gap after offset 0x%04x"
                                % (s, len(data)))
            abbreviated = True
            started = True
            continue
        if not OFFSET_RE.match(s):
            break
        started = True
        parts = OFFSET_RE.split(s)
        if parts[0].strip():
            break
        pieces = list(zip(parts[1::2], parts[2::2]))
        for off_hex, content in pieces:
            off = int(off_hex, 16)
            if off != len(data):
                if not abbreviated:
                    problems.append("abbreviated dump: line 0x%04x follows %d bytes"
                                    % (off, len(data)))
                abbreviated = True
                data = bytearray(off)  # placeholder so offsets keep lining up
            chunk, rest = parse_hex_content(content)
            if rest and not rest.startswith(ascii_render(chunk)):
                warnings.append("ASCII column at 0x%04x %r does not match hex %r"
                                % (off, rest, ascii_render(chunk)))
            if data and len(data) % 16:
                problems.append("short non-final line before offset 0x%04x" % off)
            data += chunk
            shown += len(chunk)
    return (None if abbreviated else bytes(data)), shown, problems, warnings


def mac(s):
    return bytes.fromhex(s.replace(":", ""))


def extract(path, kind, names, tag):
    text = open(path, encoding="utf-8").read()
    titles = [(m.start(), int(m.group(1)), m.group(2))
              for m in TITLE_RE.finditer(text)]
    headers = list(HEADER_RE.finditer(text))
    frames, excluded, warnings = [], [], []
    for i, h in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        if names is not None:
            name = names[i] if i < len(names) else "frame"
            ident = "%s-f%d-%s" % (tag, i + 1, name)
        else:
            before = [t for t in titles if t[0] < h.start()]
            if not before:
                raise SystemExit("%s: no 'Packet N:' title before %s"
                                 % (path, h.group(0)))
            _, num, title = before[-1]
            ident = "%s-p%02d-%s" % (tag, num, slug(title))
        dump, shown, problems, warns = parse_dump(text[h.end():end])
        warnings += ["%s: %s" % (ident, w) for w in warns]
        length = int(h.group("len"))
        if h.group("etype").lower() != "a000":
            problems.append("ethertype 0x%s, expected 0xa000" % h.group("etype"))
        if dump is None:
            # Abbreviated: only check the header against tcpdump's length.
            head = text[h.end():end].split("0x0000:", 1)[-1].split()[:2]
            field = int("".join(head)[4:8], 16) if len(head) == 2 else -1
            problems.append("%d of %d dumped bytes shown; eth-dix length field"
                            " %d + 4 + 14 %s %d"
                            % (shown, length - 14, field,
                               "==" if field + 18 == length else "!=", length))
        elif not dump:
            problems.append("no hex dump found")
        else:
            if 14 + len(dump) != length:
                problems.append("frame is %d bytes (14 + %d dumped), tcpdump says %d"
                                % (14 + len(dump), len(dump), length))
            if len(dump) >= 4:
                field = int.from_bytes(dump[2:4], "big")
                if field != len(dump) - 4:
                    problems.append("eth-dix length field %d != dumped %d - 4"
                                    % (field, len(dump)))
        if problems:
            excluded.append((ident, length, problems))
            continue
        frame = mac(h.group("dst")) + mac(h.group("src")) + bytes.fromhex("a000") + dump
        frames.append((ident, kind, frame.hex()))
    return frames, excluded, warnings


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("seeds", nargs="?",
                    default=os.path.join(root, "..", "shared", "seeds"))
    ap.add_argument("-o", "--output",
                    default=os.path.join(root, "wire", "tests", "vectors",
                                         "seed_frames.txt"))
    args = ap.parse_args()

    out = ["# Raw eth-dix frames extracted from the seed tutorials' tcpdump -x dumps.",
           "# Generated by scripts/extract-seed-frames.py -- do not edit by hand.",
           "# Format: <id>\\t<kind>\\t<full Ethernet frame hex: dst mac, src mac, ethertype, payload>",
           "# Every frame passed: 14 + dumped bytes == tcpdump length, and",
           "# eth-dix length field (frame bytes 16..18) == dumped bytes - 4."]
    for prefix, kind, desc, names in SOURCES:
        matches = sorted(glob.glob(os.path.join(args.seeds, prefix + "_*.txt")))
        if len(matches) != 1:
            raise SystemExit("expected one %s_*.txt in %s, found %d"
                             % (prefix, args.seeds, len(matches)))
        path = matches[0]
        frames, excluded, warnings = extract(path, kind, names, "seed" + prefix)
        fname = os.path.basename(path)
        out.append("")
        out.append("# source: %s (%s): %d frames extracted, %d excluded, kind %s"
                   % (fname, desc, len(frames), len(excluded), kind))
        for ident, length, problems in excluded:
            out.append("# excluded: %s (tcpdump length %d): %s"
                       % (ident, length, "; ".join(problems)))
        for w in warnings:
            out.append("# note: %s" % w)
            print("warning: %s: %s" % (fname, w), file=sys.stderr)
        for ident, k, hexstr in frames:
            out.append("%s\t%s\t%s" % (ident, k, hexstr))
        print("%s: %d extracted, %d excluded" % (fname, len(frames), len(excluded)),
              file=sys.stderr)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
