#!/usr/bin/env python3
"""Independent verifier for a vigil audit export (JSONL), standard library only.

Usage: verify_audit_chain.py EXPORT.jsonl [--full]

Checks each line exactly as docs/audit-format.md describes: the stored hash
is SHA-256 over the line without its `,"hash":"..."` suffix (plus the closing
brace); consecutive records have consecutive `seq` and each `prev` equals the
previous record's hash. With --full the first record must be seq 1 with the
all-zero prev (a complete log rather than a filtered export).
Exit status 0 when the chain holds, 1 with the first failure otherwise.
"""
import base64
import hashlib
import json
import sys

SUFFIX_LEN = len(',"hash":"') + 43 + len('"}')
ZERO = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()


def fail(number, message):
    print(f"line {number}: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    path = sys.argv[1]
    full = "--full" in sys.argv[2:]
    prev_seq = prev_hash = None
    count = 0
    with open(path, "rb") as export:
        for number, raw in enumerate(export, 1):
            if not raw.endswith(b"\n"):
                fail(number, "incomplete final line")
            line = raw[:-1]
            suffix = line[-SUFFIX_LEN:]
            if len(line) <= SUFFIX_LEN or not suffix.startswith(b',"hash":"') or not suffix.endswith(b'"}'):
                fail(number, "no hash field at the end")
            stored = suffix[len(',"hash":"'):-2].decode()
            body = line[:-SUFFIX_LEN] + b"}"
            computed = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
            if computed != stored:
                fail(number, f"hash mismatch: stored {stored}, computed {computed}")
            record = json.loads(body)
            seq = record["seq"]
            if prev_seq is None:
                if full and (seq != 1 or record["prev"] != ZERO):
                    fail(number, "a full log starts at seq 1 with an all-zero prev")
            else:
                if seq != prev_seq + 1:
                    fail(number, f"expected seq {prev_seq + 1}, found {seq}")
                if record["prev"] != prev_hash:
                    fail(number, "prev does not match the previous record's hash")
            prev_seq, prev_hash = seq, stored
            count += 1
    print(f"ok: {count} records, head {prev_hash}")


if __name__ == "__main__":
    main()
