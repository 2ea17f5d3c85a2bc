"""A small tool-calling suite of our own, scored for `lar serve` and llama.cpp's `llama-server --jinja` side by side
on the same GGUF file and threads (run by bench/tool-suite.sh):

    python3 bench/tool-suite.py LAR_BINARY LLAMA_BIN_DIR MODEL.gguf

40 cases over six tools, greedy (temperature 0), through /v1/chat/completions with `tools` and `tool_choice: auto`:
- pick (12): the question maps to one tool; the call must name it;
- args (12): the call must also carry the expected arguments (strings compared case-insensitively, numbers by value);
- none (8): no tool fits (small talk, general knowledge); the answer must be text with no call;
- result (8): a conversation with an earlier call and its result; the answer must be text that uses the result
  (no call, no call or JSON written as text).
Every call either server emits is also checked: its arguments parse as JSON and validate against the tool's schema
(`jsonschema`, from the clients venv if there is one). Prints a Markdown table for BENCHMARKS.md.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import jsonschema
except ImportError:  # the score then counts parsing only
    jsonschema = None

THREADS = 2
CTX = 4096

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "set_timer", "description": "Start a countdown timer.",
        "parameters": {"type": "object", "properties": {
            "minutes": {"type": "integer", "minimum": 1}, "label": {"type": "string"}}, "required": ["minutes"]}}},
    {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert an amount of money from one currency to another.",
        "parameters": {"type": "object", "properties": {
            "amount": {"type": "number"}, "from": {"type": "string", "description": "ISO code, e.g. EUR"},
            "to": {"type": "string", "description": "ISO code, e.g. USD"}}, "required": ["amount", "from", "to"]}}},
    {"type": "function", "function": {
        "name": "send_email", "description": "Send an email.",
        "parameters": {"type": "object", "properties": {
            "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
            "required": ["to", "subject", "body"]}}},
    {"type": "function", "function": {
        "name": "search_flights", "description": "Find flights between two cities on a date.",
        "parameters": {"type": "object", "properties": {
            "origin": {"type": "string"}, "destination": {"type": "string"},
            "date": {"type": "string", "description": "YYYY-MM-DD"}}, "required": ["origin", "destination", "date"]}}},
    {"type": "function", "function": {
        "name": "add_todo", "description": "Add an item to the user's to-do list.",
        "parameters": {"type": "object", "properties": {
            "item": {"type": "string"}, "priority": {"type": "string", "enum": ["low", "normal", "high"]}},
            "required": ["item"]}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

# (kind, question, expected tool or None, expected arguments)
CASES = [
    ("pick", "What's the weather like in Lisbon right now?", "get_weather", {}),
    ("pick", "Remind me in a bit: start a timer for the pasta.", "set_timer", {}),
    ("pick", "How many dollars do I get for my euros?", "convert_currency", {}),
    ("pick", "Write an email to my landlord about the broken heater.", "send_email", {}),
    ("pick", "Are there flights from Madrid to Rome next week?", "search_flights", {}),
    ("pick", "Put 'buy milk' on my to-do list.", "add_todo", {}),
    ("pick", "Is it raining in Oslo?", "get_weather", {}),
    ("pick", "I need a countdown for my workout.", "set_timer", {}),
    ("pick", "Change 50 pounds into yen for me.", "convert_currency", {}),
    ("pick", "Book-search a trip from Paris to Berlin on 2026-03-02.", "search_flights", {}),
    ("pick", "Don't let me forget to call the dentist, add it to my list.", "add_todo", {}),
    ("pick", "Mail bob@example.com that the meeting moved.", "send_email", {}),
    ("args", "What is the weather in Tokyo in fahrenheit?", "get_weather", {"city": "Tokyo", "unit": "fahrenheit"}),
    ("args", "Set a timer for 25 minutes.", "set_timer", {"minutes": 25}),
    ("args", "Convert 100 EUR to USD.", "convert_currency", {"amount": 100, "from": "EUR", "to": "USD"}),
    ("args", "Send an email to anna@example.com with subject 'Dinner' saying 'See you at eight'.", "send_email",
     {"to": "anna@example.com", "subject": "Dinner"}),
    ("args", "Find flights from London to New York on 2026-07-14.", "search_flights",
     {"origin": "London", "destination": "New York", "date": "2026-07-14"}),
    ("args", "Add 'renew passport' to my to-do list with high priority.", "add_todo",
     {"item": "renew passport", "priority": "high"}),
    ("args", "Weather for Buenos Aires, please.", "get_weather", {"city": "Buenos Aires"}),
    ("args", "Start a 5 minute timer labelled tea.", "set_timer", {"minutes": 5, "label": "tea"}),
    ("args", "How much is 2500 JPY in EUR?", "convert_currency", {"amount": 2500, "from": "JPY", "to": "EUR"}),
    ("args", "Search flights Barcelona to Athens, 2026-05-01.", "search_flights",
     {"origin": "Barcelona", "destination": "Athens", "date": "2026-05-01"}),
    ("args", "Add 'water the plants' to my to-dos.", "add_todo", {"item": "water the plants"}),
    ("args", "Set a timer for 90 minutes for the bread.", "set_timer", {"minutes": 90}),
    ("none", "Tell me a short joke about cats.", None, {}),
    ("none", "What is the capital of Australia?", None, {}),
    ("none", "Hi! How are you today?", None, {}),
    ("none", "Translate 'good morning' into Spanish.", None, {}),
    ("none", "What is 7 times 8?", None, {}),
    ("none", "Write a haiku about autumn.", None, {}),
    ("none", "Who wrote Don Quixote?", None, {}),
    ("none", "Thanks, that's all for now.", None, {}),
]

# (question, call, result, a word the answer must contain)
RESULTS = [
    ("What's the weather in Paris?", ("get_weather", {"city": "Paris"}), '{"temperature": 31, "sky": "sunny"}',
     "31"),
    ("Convert 20 USD to EUR.", ("convert_currency", {"amount": 20, "from": "USD", "to": "EUR"}),
     '{"result": 18.4, "currency": "EUR"}', "18.4"),
    ("Find me a flight from Rome to Oslo on 2026-02-10.",
     ("search_flights", {"origin": "Rome", "destination": "Oslo", "date": "2026-02-10"}),
     '{"flights": [{"number": "SK4712", "departs": "09:40"}]}', "SK4712"),
    ("Set a timer for 10 minutes.", ("set_timer", {"minutes": 10}), '{"ok": true, "ends_at": "14:32"}', "14:32"),
    ("Add 'call mom' to my to-do list.", ("add_todo", {"item": "call mom"}), '{"ok": true, "position": 4}', "4"),
    ("Email joe@example.com that I'm late.",
     ("send_email", {"to": "joe@example.com", "subject": "Late", "body": "I'm running late."}),
     '{"sent": true, "id": "msg-2291"}', "sent"),
    ("Is it cold in Helsinki?", ("get_weather", {"city": "Helsinki"}), '{"temperature": -12, "sky": "snow"}', "-12"),
    ("How much is 5 GBP in JPY?", ("convert_currency", {"amount": 5, "from": "GBP", "to": "JPY"}),
     '{"result": 960, "currency": "JPY"}', "960"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    sys.exit("server did not become healthy")


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return {"error": e.read().decode(errors="replace")}


def valid(call):
    """The call's arguments parse and validate against its tool's schema."""
    f = call.get("function", {})
    if f.get("name") not in SCHEMAS:
        return False
    try:
        args = json.loads(f.get("arguments") or "{}")
    except json.JSONDecodeError:
        return False
    if jsonschema is None:
        return isinstance(args, dict)
    try:
        jsonschema.validate(args, SCHEMAS[f["name"]])
        return True
    except jsonschema.ValidationError:
        return False


def same(want, got):
    if isinstance(want, str):
        return isinstance(got, str) and want.strip().lower() == got.strip().lower()
    return isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == float(want)


def ask(port, model, messages):
    return post(port, {"model": model, "messages": messages, "tools": TOOLS, "tool_choice": "auto",
                       "temperature": 0, "max_tokens": 160})


def score(port, model):
    per_kind = {}
    calls = parsed = 0
    for kind, q, tool, args in CASES:
        r = ask(port, model, [{"role": "user", "content": q}])
        msg = (r.get("choices") or [{}])[0].get("message") or {}
        tc = msg.get("tool_calls") or []
        calls += len(tc)
        parsed += sum(valid(c) for c in tc)
        if tool is None:
            ok = not tc and bool((msg.get("content") or "").strip())
        else:
            first = tc[0]["function"] if tc else {}
            ok = first.get("name") == tool and valid(tc[0])
            if ok and args:
                got = json.loads(first.get("arguments") or "{}")
                ok = all(same(v, got.get(k)) for k, v in args.items())
        per_kind.setdefault(kind, []).append(ok)
    for i, (q, (name, args), result, needle) in enumerate(RESULTS):
        call_id = f"call_{i}"
        msgs = [{"role": "user", "content": q},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]},
                {"role": "tool", "tool_call_id": call_id, "content": result}]
        r = ask(port, model, msgs)
        msg = (r.get("choices") or [{}])[0].get("message") or {}
        tc = msg.get("tool_calls") or []
        calls += len(tc)
        parsed += sum(valid(c) for c in tc)
        text = (msg.get("content") or "").lower()
        # Text that uses the result, not a call written as text nor the result echoed as JSON.
        per_kind.setdefault("result", []).append(not tc and needle.lower() in text and '"name"' not in text
                                                 and "{" not in text)
    return per_kind, calls, parsed


def run_llama(bin_dir, model):
    port = free_port()
    p = subprocess.Popen([os.path.join(bin_dir, "llama-server"), "-m", model, "--host", "127.0.0.1", "--port",
                          str(port), "-t", str(THREADS), "-tb", str(THREADS), "-c", str(CTX), "--jinja"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, p)
        return score(port, "model")
    finally:
        p.terminate()
        p.wait(10)


def run_lar(lar, model):
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, LAR_HOME=home, RUST_LOG="warn")
        subprocess.run([lar, "import", model, "--name", "suite"], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        port = free_port()
        p = subprocess.Popen([lar, "serve", "--port", str(port), "--threads", str(THREADS), "--ctx", str(CTX),
                              "--parallel", "1", "--model", "suite"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            wait_healthy(port, p)
            return score(port, "suite")
        finally:
            p.terminate()
            p.wait(10)


def main():
    lar, bin_dir, model = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = {}
    for name, fn in [("llama-server --jinja", lambda: run_llama(bin_dir, model)), ("Lar", lambda: run_lar(lar, model))]:
        t0 = time.perf_counter()
        per_kind, calls, parsed = fn()
        rows[name] = (per_kind, calls, parsed, time.perf_counter() - t0)
    kinds = ["pick", "args", "none", "result"]
    print(f"# {os.path.basename(model)}, {THREADS} threads, greedy, {sum(len(v) for v in rows['Lar'][0].values())} cases")
    print("| server | " + " | ".join(f"{k} ({len(rows['Lar'][0][k])})" for k in kinds)
          + " | total | calls that parse and validate | time (s) |")
    print("|---|" + "---:|" * (len(kinds) + 3))
    for name, (per_kind, calls, parsed, secs) in rows.items():
        total = sum(sum(v) for v in per_kind.values())
        n = sum(len(v) for v in per_kind.values())
        cells = " | ".join(str(sum(per_kind[k])) for k in kinds)
        print(f"| {name} | {cells} | {total}/{n} | {parsed}/{calls} | {secs:.0f} |")


if __name__ == "__main__":
    main()
