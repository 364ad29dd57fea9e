"""Signing for the ICN member API over HTTP, in plain Python (PyNaCl for ed25519, blake3).

Every request under /v1 carries four headers: icn-signer (your public key, hex), icn-nonce
(a number you never used before), icn-time (ms since the epoch) and icn-signature (hex).
The signature is an icn envelope's: ed25519 over the canonical (postcard) encoding of

    ("icn/envelope/v1", version 1, kind, signer, seq, blake3(payload))

where, for a request, kind is Request, seq is the nonce and the payload encodes
(method, path with query, time, blake3(body)). Statements that become evidence (a job
submission, a ballot, a cancel) are envelopes of their own kind, sent as JSON bodies.

Postcard, the encoding: unsigned integers as LEB128 varints, strings and lists as a varint
length and then their items, fixed arrays (ids, keys) as their bytes, enums as the
variant's index, Option as 0 or 1 and then the value.
"""

import base64
import json
import secrets
import time
import urllib.error
import urllib.request

import blake3
import nacl.signing

DOMAIN = "icn/envelope/v1"
VERSION = 1
# The order of icn_protocol::Kind.
KINDS = ["Hello", "Welcome", "Submission", "ExecutionReport", "JournalRecord", "Proposal", "Ballot",
         "ClearRequest", "Cancel", "Request"]
EXECUTORS = ["wasm", "container"]
CHOICES = ["yes", "no", "abstain"]


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def text(s):
    data = s.encode()
    return varint(len(data)) + data


def option(value, encode):
    return b"\x00" if value is None else b"\x01" + encode(value)


def digest(data):
    return blake3.blake3(data).digest()


def signing_bytes(kind, signer, seq, payload):
    return text(DOMAIN) + varint(VERSION) + varint(KINDS.index(kind)) + signer + varint(seq) + digest(payload)


def submission(scope, module_id, input_id, args=(), fuel=1_000_000_000, memory_bytes=64 << 20,
               timeout_ms=10_000, output_bytes=64 << 10, executor="wasm", deadline_ms=None, priority=None):
    """A Submission's payload: what a job asks, with its module and input by content id."""
    return (text(scope) + varint(EXECUTORS.index(executor)) + bytes.fromhex(module_id) + bytes.fromhex(input_id)
            + varint(len(args)) + b"".join(text(a) for a in args)
            + varint(fuel) + varint(memory_bytes) + varint(timeout_ms) + varint(output_bytes)
            + option(deadline_ms, varint) + option(priority, text))


def ballot(proposal_id, choice, reason=None):
    return bytes.fromhex(proposal_id) + varint(CHOICES.index(choice)) + option(reason, text)


def cancel(job_id):
    return bytes.fromhex(job_id)


class Member:
    """A member's key, signing on this machine: the key never leaves it."""

    def __init__(self, seed_hex):
        self.key = nacl.signing.SigningKey(bytes.fromhex(seed_hex.strip()))
        self.public = bytes(self.key.verify_key)

    @classmethod
    def from_file(cls, path):
        with open(path) as f:
            return cls(f.read())

    def sign(self, kind, seq, payload):
        return self.key.sign(signing_bytes(kind, self.public, seq, payload)).signature

    def envelope(self, kind, payload):
        """A signed statement as the JSON body the API takes."""
        seq = secrets.randbits(64)
        return {"kind": kind, "signer": self.public.hex(), "seq": seq,
                "payload": base64.b64encode(payload).decode(), "signature": self.sign(kind, seq, payload).hex()}

    def headers(self, method, target, body):
        """The four headers that sign a request of `method` to `target` (path and query)."""
        nonce = secrets.randbits(64)
        now = int(time.time() * 1000)
        payload = text(method) + text(target) + varint(now) + digest(body)
        return {"icn-signer": self.public.hex(), "icn-nonce": str(nonce), "icn-time": str(now),
                "icn-signature": self.sign("Request", nonce, payload).hex()}


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status, self.code, self.message = status, code, message


class Api:
    """The coordinator's member API at `base` (http://host:port), signing as `member`."""

    def __init__(self, base, member):
        self.base, self.member = base.rstrip("/"), member

    def call(self, method, target, body=b"", content_type="application/json"):
        headers = dict(self.member.headers(method, target, body), **{"content-type": content_type})
        request = urllib.request.Request(self.base + target, data=body or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            error = json.loads(e.read())
            raise ApiError(e.code, error["code"], error["message"]) from None

    def post(self, target, kind, payload):
        return self.call("POST", target, json.dumps(self.member.envelope(kind, payload)).encode())
