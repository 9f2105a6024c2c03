"""flock sessions as Ray Serve replicas behind Ray's router, with an OpenAI-style chat route.

Each replica is a Ray actor (its own process) that opens the bundle and holds
one session with its own threads; Ray's HTTP proxy routes each request to a
replica with a free slot. On one machine:

    python -m flock.serve_ray model.flock --replicas 2 --threads 1 --port 8000

Across machines: start a Ray cluster (`ray start --head` on one, `ray start
--address HEAD:6379` on the others), put the bundle at the same path on each
(or on shared storage), and run the same command with `--address auto` on
any node: Ray places the replicas on the cluster's nodes by their CPUs.

Routes: POST /v1/chat/completions (OpenAI's request and reply; "stream": true
answers with server-sent events), POST /v1/completions (a text prompt),
GET /v1/models, GET /health. Each reply carries a "flock" object (keep, the
replica's process id, decode tok/s).
"""
import argparse
import asyncio
import json
import os
import time
import uuid

import flock

try:
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(f"flock.serve_ray needs Ray Serve: pip install 'ray[serve]' ({e})") from None


def _error(status, message, param=None):
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": None}}, status_code=status)


def _sampling(body):
    """Sampling arguments of an OpenAI request, checked; ValueError names the field."""
    out = {}
    for key, kind in (("max_tokens", int), ("temperature", float), ("top_p", float), ("seed", int)):
        if key in body and body[key] is not None:
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
                raise ValueError(key)
            out[key] = kind(v)
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ValueError("stop")
        out["stop"] = stop
    return out


@serve.deployment(max_ongoing_requests=1)
class FlockDeployment:
    """One replica: a model and one session (requests on a replica run one at a time)."""

    def __init__(self, bundle, keep=1.0, threads=1, ctx=None, model_name="flock", max_tokens=256):
        self.model = flock.Model(bundle)
        self.keep = keep
        self.session = self.model.session(keep=keep, threads=threads, ctx=ctx, device="auto")
        self.name = model_name
        self.max_tokens = max_tokens

    def _meta(self, stats):
        return {"keep": self.keep, "replica_pid": os.getpid(),
                "decode_tok_s": stats.get("decode_tok_s") if stats else None}

    def _prompt(self, route, body):
        if route == "chat":
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in msgs):
                raise ValueError("messages")
            return self.model.chat(msgs)
        p = body.get("prompt")
        if not isinstance(p, str):
            raise ValueError("prompt")
        return p

    async def __call__(self, request: Request):
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/health"):
            return {"status": "ok"}
        if request.method == "GET" and path.endswith("/v1/models"):
            return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "flock"}]}
        if path.endswith("/v1/chat/completions"):
            route = "chat"
        elif path.endswith("/v1/completions"):
            route = "text"
        else:
            return _error(404, f"no route {request.method} {request.url.path}")
        if request.method != "POST":
            return _error(405, f"{request.url.path} takes POST")
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("body")
            prompt = self._prompt(route, body)
            args = _sampling(body)
        except json.JSONDecodeError as e:
            return _error(400, f"the body is not JSON: {e}")
        except ValueError as e:
            return _error(400, f"'{e}' is missing or has the wrong type", str(e))
        args.setdefault("max_tokens", self.max_tokens)
        args.setdefault("temperature", 1.0)
        rid = ("chatcmpl-" if route == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        if body.get("stream"):
            return StreamingResponse(self._sse(route, rid, prompt, args), media_type="text/event-stream")
        try:  # off the replica's event loop: the library releases the GIL
            text = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.session.generate(prompt, **args))
        except flock.Error as e:
            return _error(400 if e.status in ("range", "invalid_arg") else 500, str(e))
        st = self.session.stats
        finish = "length" if st["generated_tokens"] >= args["max_tokens"] and not (
            st["stopped_eos"] or st["stopped_string"]) else "stop"
        usage = {"prompt_tokens": st["prompt_tokens"], "completion_tokens": st["generated_tokens"],
                 "total_tokens": st["prompt_tokens"] + st["generated_tokens"]}
        if route == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
            obj = "text_completion"
        return {"id": rid, "object": obj, "created": int(time.time()), "model": self.name, "choices": [choice],
                "usage": usage, "flock": self._meta(st)}

    def _sse(self, route, rid, prompt, args):
        obj = "chat.completion.chunk" if route == "chat" else "text_completion"
        try:
            for piece in self.session.stream(prompt, **args):
                delta = {"delta": {"content": piece}} if route == "chat" else {"text": piece}
                yield "data: " + json.dumps({"id": rid, "object": obj, "model": self.name,
                                             "choices": [{"index": 0, **delta, "finish_reason": None}]}) + "\n\n"
            yield "data: " + json.dumps({"id": rid, "object": obj, "model": self.name,
                                         "choices": [{"index": 0, "delta" if route == "chat" else "text":
                                                      {} if route == "chat" else "", "finish_reason": "stop"}],
                                         "flock": self._meta(self.session.stats)}) + "\n\n"
        except flock.Error as e:
            yield "data: " + json.dumps({"error": {"message": str(e), "type": "server_error"}}) + "\n\n"
        yield "data: [DONE]\n\n"


def build_app(bundle, replicas=2, keep=1.0, threads=1, ctx=None, model_name="flock", max_tokens=256):
    """The Serve application: `replicas` FlockDeployment replicas of `threads` CPUs each."""
    return FlockDeployment.options(num_replicas=replicas, ray_actor_options={"num_cpus": threads}).bind(
        os.path.abspath(bundle), keep=keep, threads=threads, ctx=ctx, model_name=model_name, max_tokens=max_tokens)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m flock.serve_ray", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads (and Ray CPUs) per replica")
    ap.add_argument("--keep", type=float, default=1.0)
    ap.add_argument("--ctx", type=int, default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--address", default=None, help="a Ray cluster to join ('auto'); default: start one here")
    ap.add_argument("--name", default="flock", help="the model's name in requests and replies")
    a = ap.parse_args(argv)
    import ray
    ray.init(address=a.address, include_dashboard=False)
    serve.start(http_options={"host": a.host, "port": a.port})
    serve.run(build_app(a.bundle, a.replicas, a.keep, a.threads, a.ctx, a.name), route_prefix="/", blocking=True)


if __name__ == "__main__":
    main()
