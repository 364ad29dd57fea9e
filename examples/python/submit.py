#!/usr/bin/env python3
"""Submit a signed job to an ICN coordinator over HTTP and print its output.

    pip install pynacl blake3
    python3 examples/python/submit.py --api http://127.0.0.1:7700 --key icn-dev/ana.key \\
        --scope fed-north --module examples/wasm/upper.wasm --input "hello"

Run from the repository's root beside `icn dev`. The key file is the member's (hex seed,
as `icn` writes it); it is read here and never sent. The module is a compiled wasm
binary: `examples/wasm/upper.wasm` is `examples/wat/upper.wat` compiled (`wat2wasm`, or
any WASI command your compiler makes).
"""

import argparse
import sys
import time

from icn_http import Api, ApiError, Member, digest, submission


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the coordinator's HTTP API, such as http://127.0.0.1:7700")
    parser.add_argument("--key", required=True, help="your key file")
    parser.add_argument("--scope", required=True, help="the scope whose mandate pays, such as fed-north")
    parser.add_argument("--module", required=True, help="a wasm module file")
    parser.add_argument("--input", default="", help="the job's stdin, as text")
    parser.add_argument("--wait-s", type=float, default=60, help="how long to wait for the result")
    args = parser.parse_args()

    api = Api(args.api, Member.from_file(args.key))
    with open(args.module, "rb") as f:
        module = f.read()
    data = args.input.encode()
    try:
        module_id = api.call("PUT", "/v1/modules", module, "application/octet-stream")["id"]
        input_id = api.call("PUT", "/v1/inputs", data, "application/octet-stream")["id"]
        assert input_id == digest(data).hex(), "the coordinator stored the input under another id"
        job = api.post("/v1/jobs", "Submission", submission(args.scope, module_id, input_id))["job"]
        print(f"submitted job {job}", file=sys.stderr)
        deadline = time.monotonic() + args.wait_s
        while True:
            view = api.call("GET", f"/v1/jobs/{job}")
            state = view["state"] if isinstance(view["state"], str) else next(iter(view["state"]))
            if state not in ("queued", "running"):
                break
            if time.monotonic() > deadline:
                sys.exit(f"job {job} is still {state} after {args.wait_s} s")
            time.sleep(0.1)
        if state != "completed":
            sys.exit(f"job {job} ended {state}: {view.get('failure') or view}")
        output = api.call("GET", f"/v1/jobs/{job}/output")
        sys.stdout.write(output["text"] if output["text"] is not None else output["bytes"])
    except ApiError as e:
        sys.exit(f"refused: {e}")


if __name__ == "__main__":
    main()
