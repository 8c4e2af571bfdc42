#!/usr/bin/env bash
# uvicorn (uvloop, httptools) against granian under the same minimal Litestar endpoint (read
# a 1 KiB JSON body, answer 202), one process each, wrk with 50 connections on 127.0.0.1,
# alternating twice. Needs wrk; installs both servers in a throw-away venv under /tmp.
# Usage: bash bench/asgi_servers.sh
set -euo pipefail
dir=$(mktemp -d /tmp/hookline-asgi-XXXX)
trap 'rm -rf "$dir"' EXIT
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q litestar 'uvicorn[standard]' granian msgspec
cat > "$dir/app.py" <<'PY'
import msgspec
from litestar import Litestar, Request, post
from litestar.response import Response

encode = msgspec.json.Encoder().encode


@post("/hooks/{workspace:str}/{trigger:str}", status_code=202)
async def hook(request: Request, workspace: str, trigger: str) -> Response[bytes]:
    body = await request.body()
    return Response(encode({"received": len(body)}), status_code=202, media_type="application/json")


app = Litestar([hook])
PY
python3 -c "import json; print(json.dumps({'a': 'x' * 1000}))" > "$dir/body.json"
cat > "$dir/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$dir/body.json", "r"); wrk.body = f:read("*a"); f:close()
LUA
port=18181
url="http://127.0.0.1:$port/hooks/a/b"
measure() {
  name=$1; shift
  (cd "$dir" && exec "$@") >"$dir/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null -X POST "$url" && break; sleep 0.2; done
  wrk -t1 -c50 -d2s -s "$dir/post.lua" "$url" >/dev/null 2>&1
  wrk -t1 -c50 -d10s --latency -s "$dir/post.lua" "$url" 2>&1 |
    grep -E "Requests/sec|50%|99%" | tr -s ' ' | paste -sd' ' | sed "s/^/$name: /"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for _ in 1 2; do
  measure uvicorn "$dir/venv/bin/uvicorn" app:app --port $port --loop uvloop --http httptools \
    --no-access-log --log-level warning --timeout-keep-alive 5
  measure granian "$dir/venv/bin/granian" --interface asgi --port $port --workers 1 --loop uvloop \
    --no-ws app:app
done
