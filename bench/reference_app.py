"""The ceiling the benchmark compares against: a minimal Flask app that makes one Redis Lua call
(INCR + ZADD + ZRANK) and answers JSON. Whatever this serves on the machine is "1.0".

    gunicorn -w 2 -b 127.0.0.1:8099 bench.reference_app:app
"""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify

_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], n, ARGV[1])
return {n, redis.call('ZRANK', KEYS[2], ARGV[1])}
"""

app = Flask(__name__)
_client = redis.Redis.from_url(os.environ.get("REFERENCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
                               decode_responses=True)
_script = _client.register_script(_SCRIPT)


@app.get("/ref/<int:user_id>")
def reference(user_id: int):
    n, rank = _script(keys=["ref:{1}:seq", "ref:{1}:line"], args=[user_id % 100_000])
    return jsonify({"status": "waiting", "n": n, "position": rank + 1})
