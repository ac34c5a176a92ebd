"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for the LLM judge tests.

:class:`FakeServer` answers from a script; :func:`scripted_judge` makes a reply function that
behaves like a judge model with a given intended score and a tokenizer that keeps whole numbers
or splits them into digits (as SmolLM2, Qwen2.5 and Llama 2 do).
"""

from __future__ import annotations

import json
import math
import re
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: str, top: dict[str, float] | None = None,
               tokens: list[str] | None = None) -> dict[str, Any]:
    """A chat-completions response; ``top`` maps first-token strings to probabilities and
    ``tokens`` (default: the most likely first token) is how the reply was tokenized."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": "stop"}
    if top is not None:
        tops = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]
        tokens = tokens or [max(top, key=top.get)]
        first = {"token": tokens[0], "logprob": math.log(top.get(tokens[0], 1e-6)), "top_logprobs": tops}
        rest = [{"token": t, "logprob": -0.01, "top_logprobs": [{"token": t, "logprob": -0.01}]}
                for t in tokens[1:]]
        choice["logprobs"] = {"content": [first, *rest]}
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


class Reply:
    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None,
                 delay: float = 0.0, raw: bytes | None = None) -> None:
        self.status, self.body, self.headers, self.delay, self.raw = status, body, headers or {}, delay, raw


class FakeServer:
    """Answers POST /v1/chat/completions from a script (a queue of Reply objects, then
    ``default``, or a function of the request body); records every request. ``port=0``: any free
    port."""

    def __init__(self, port: int = 0) -> None:
        self.script: list[Reply] = []
        self.default: Callable[[dict], Reply] | Reply = Reply(body=completion("50"))
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    reply = server.script.pop(0) if server.script else server.default
                if callable(reply):
                    reply = reply(body)
                if reply.delay:
                    server.stop.wait(reply.delay)
                    if server.stop.is_set():
                        return
                data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def n(self) -> int:
        with self.lock:
            return len(self.requests)

    def prompts(self) -> list[str]:
        with self.lock:
            return [r["body"]["messages"][0]["content"] for r in self.requests]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class RawServer:
    """A TCP server on 127.0.0.1 that reads each HTTP request (``heads`` keeps their request line
    and headers) and then hands the socket to ``answer(sock, stop)``, which writes whatever it
    likes; ``stop`` is set by :meth:`close`, which trickles and silences must watch. With a
    ``tls`` context it speaks https."""

    def __init__(self, answer: Callable[[socket.socket, threading.Event], None],
                 tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.heads: list[bytes] = []
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def n(self) -> int:
        return len(self.heads)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        with sock:
            try:
                sock.settimeout(5)
                if self.tls is not None:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                self.heads.append(read_request(sock))
                sock.settimeout(None)
                self.answer(sock, self.stop)
            except OSError:  # the client went away: what these replies provoke
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def read_request(sock: socket.socket) -> bytes:
    """Read one HTTP request from ``sock``; its request line and headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    while length and len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def trickle(sock: socket.socket, stop: threading.Event, head: bytes, every_s: float = 0.5) -> None:
    """Send ``head``, then one byte every ``every_s`` until stopped."""
    sock.sendall(head)
    while not stop.wait(every_s):
        sock.sendall(b" ")


def stream(sock: socket.socket, head: bytes, size: int, chunked: bool = False) -> None:
    """Send ``head`` and then ``size`` bytes of JSON-ish padding from one small buffer (the server
    holds no copy of a 50 MB body), in HTTP chunks when ``chunked``."""
    sock.sendall(head)
    block = b" " * 65536
    left = size
    while left > 0:
        part = block[:min(left, len(block))]
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        left -= len(part)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


# --------------------------------------------------------------------------- a scripted judge model


def intended_score(prompt: str) -> int:
    """The score the scripted judge means to give: the answer under judgement says ``score-NN``."""
    return int(re.search(r"score-(\d+)", prompt).group(1))


def whole_number_beliefs(intended: int) -> dict[int, float]:
    """What the judge believes on 0-100: mean exactly ``intended``, spread over neighbours."""
    if 5 <= intended <= 95:
        return {intended - 5: 0.25, intended: 0.5, intended + 5: 0.25}
    return {intended: 1.0}


def scripted_judge(splits_digits: bool, other: float = 0.1) -> Callable[[dict], Reply]:
    """A reply function for a judge model that means :func:`intended_score` of each answer.

    Asked on 0-100, its first-token top log-probs hold its beliefs as whole-number tokens
    ("80", "85", "90"), or, with ``splits_digits``, as their first digits ("8", "9"), the reply text
    then being generated digit by digit ("85" -> "8", "5"). Asked on 0-9 (a prompt that says "from 0
    to 9"), it puts the probability of the intended score x 9/100 on its two neighbouring digits,
    so the digit mean is exactly that. ``other`` is the probability of a non-number first token.
    """

    def reply(body: dict) -> Reply:
        prompt = body["messages"][0]["content"]
        intended = intended_score(prompt)
        if "from 0 to 9" in prompt:
            x = intended * 9 / 100
            low = math.floor(x)
            beliefs = {low: 1 - (x - low)} if low == x else {low: 1 - (x - low), low + 1: x - low}
            text = str(round(x))
            tokens = [text]
        else:
            beliefs = whole_number_beliefs(intended)
            text = str(intended)
            tokens = list(text) if splits_digits else [text]
        top: dict[str, float] = {}
        for number, p in beliefs.items():
            token = str(number)[0] if splits_digits and "from 0 to 9" not in prompt else str(number)
            top[token] = top.get(token, 0.0) + p * (1 - other)
        top["The"] = other
        if not body.get("logprobs"):
            return Reply(body=completion(text))
        return Reply(body=completion(text, top, tokens))

    return reply
