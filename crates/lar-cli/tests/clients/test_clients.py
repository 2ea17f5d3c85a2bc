"""Real clients, unchanged, against a running `lar serve`: the openai, ollama and anthropic SDKs, langchain-openai
and langchain-ollama. Run by crates/lar-cli/tests/clients.rs with the venv scripts/test.sh makes:

    python test_clients.py http://127.0.0.1:PORT CHAT_MODEL EMBED_MODEL TOOL_MODEL

CHAT_MODEL's template knows no tools (Lar's generic tool prompt); TOOL_MODEL's renders them (Qwen's syntax).

Each check prints its name; any failure raises and exits non-zero.
"""
import json
import os
import sys
import urllib.request

import anthropic
import jsonschema
import ollama
import openai

url, chat_model, embed_model, tool_model = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=5)
oll = ollama.Client(host=url)
ant = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=5)
checks = []


def check(fn):
    checks.append(fn)
    return fn


@check
def openai_models():
    ids = [m.id for m in oai.models.list()]
    assert chat_model in ids and embed_model in ids, ids
    assert oai.models.retrieve(chat_model).id == chat_model


@check
def openai_chat_and_stream_agree():
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = oai.chat.completions.create(model=chat_model, messages=msgs, max_tokens=12, temperature=0)
    text = r.choices[0].message.content
    assert text and r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length", r
    chunks = list(oai.chat.completions.create(
        model=chat_model, messages=msgs, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text, (streamed, text)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    # The same prompt again: the prefix cache serves it.
    r2 = oai.chat.completions.create(model=chat_model, messages=msgs, max_tokens=1, temperature=0)
    assert r2.usage.prompt_tokens_details.cached_tokens > 0, r2.usage


@check
def openai_chat_logprobs():
    r = oai.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0,
        logprobs=True, top_logprobs=2)
    lp = r.choices[0].logprobs.content
    assert len(lp) == 3 and all(len(t.top_logprobs) == 2 for t in lp), lp
    assert all(t.logprob <= 0 for t in lp)


@check
def openai_completions_echo_logprobs():
    r = oai.completions.create(model=chat_model, prompt="The capital of France is", max_tokens=1,
                               temperature=0, echo=True, logprobs=1)
    c = r.choices[0]
    assert c.text.startswith("The capital of France is"), c.text
    lp = c.logprobs
    assert lp.token_logprobs[0] is None and all(x is not None for x in lp.token_logprobs[1:])
    assert len(lp.tokens) == r.usage.prompt_tokens + 1


@check
def openai_embeddings_float_and_base64():
    # With numpy installed the SDK asks for base64 and decodes it.
    e = oai.embeddings.create(model=embed_model, input=["hello world", "goodbye"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 384
    f = oai.embeddings.create(model=embed_model, input="hello world", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(f.data[0].embedding, e.data[0].embedding)) < 1e-6


@check
def openai_errors():
    try:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("no error")
    except openai.NotFoundError as e:
        assert e.status_code == 404
    try:
        oai.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "x"}], max_tokens=0)
        raise AssertionError("no error")
    except openai.BadRequestError as e:
        assert "max_tokens" in str(e)
    try:
        oai.embeddings.create(model=chat_model, input="x")
        raise AssertionError("no error")
    except openai.BadRequestError:
        pass


@check
def ollama_list_show_ps():
    names = [m.model for m in oll.list().models]
    assert chat_model in names, names
    s = oll.show(chat_model)
    assert "completion" in s.capabilities and s.modelinfo["general.architecture"] == "llama", s
    assert s.details.quantization_level
    ps = oll.ps()
    assert any(m.model == chat_model for m in ps.models), ps


@check
def ollama_chat_and_generate():
    msgs = [{"role": "user", "content": "Hi"}]
    r = oll.chat(model=chat_model, messages=msgs, options={"temperature": 0, "num_predict": 8})
    assert r.message.content and r.done and r.eval_count == 8 and r.done_reason == "length", r
    parts = list(oll.chat(model=chat_model, messages=msgs, stream=True, options={"temperature": 0, "num_predict": 8}))
    assert "".join(p.message.content for p in parts) == r.message.content
    assert parts[-1].done and parts[-1].prompt_eval_count > 0
    g = oll.generate(model=chat_model, prompt="Hi", options={"temperature": 0, "num_predict": 5})
    assert g.response and g.context and g.total_duration > 0, g
    # `think`: not thinking is something any model can do; a model without thinking markers refuses to think.
    t = oll.chat(model=chat_model, messages=msgs, think=False, options={"temperature": 0, "num_predict": 8})
    assert t.message.content == r.message.content and not t.message.thinking, t
    try:
        oll.chat(model=chat_model, messages=msgs, think=True)
        raise AssertionError("think=True accepted by a model that does not think")
    except ollama.ResponseError as e:
        assert e.status_code == 400 and "does not think" in str(e), e


@check
def ollama_logprobs():
    opts = {"temperature": 0, "num_predict": 4}
    r = oll.chat(model=chat_model, messages=[{"role": "user", "content": "Hi"}], options=opts, logprobs=True,
                 top_logprobs=2)
    lp = r.logprobs
    assert len(lp) == r.eval_count == 4 and all(len(t.top_logprobs) == 2 for t in lp), r
    assert all(t.logprob <= 0 and t.top_logprobs[0].token == t.token for t in lp), lp
    assert "".join(t.token for t in lp) == r.message.content, (lp, r.message.content)
    parts = list(oll.generate(model=chat_model, prompt="Hi", options=opts, stream=True, logprobs=True))
    got = [t for p in parts for t in (p.logprobs or [])]
    assert len(got) == 4 and all(t.top_logprobs is None for t in got), got


@check
def ollama_embed():
    e = oll.embed(model=embed_model, input=["hello world", "goodbye"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == 384
    old = oll.embeddings(model=embed_model, prompt="hello world")
    assert max(abs(a - b) for a, b in zip(old.embedding, e.embeddings[0])) < 1e-6


@check
def ollama_pull_copy_delete_and_unload():
    steps = [p.status for p in oll.pull("pypi:tinysmol==1.0", stream=True)]
    assert steps[0] == "pulling manifest" and steps[-1] == "success", steps
    assert "tinysmol:latest" in [m.model for m in oll.list().models]
    oll.copy("tinysmol", "tinysmol-copy")
    r = oll.generate(model="tinysmol-copy", prompt="Hi", options={"num_predict": 2})
    assert r.done
    assert any(m.model == "tinysmol-copy:latest" for m in oll.ps().models)
    oll.generate(model="tinysmol-copy", prompt="", keep_alive=0)
    assert not any(m.model == "tinysmol-copy:latest" for m in oll.ps().models)
    oll.delete("tinysmol-copy")
    oll.delete("tinysmol")
    assert "tinysmol:latest" not in [m.model for m in oll.list().models]
    try:
        oll.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("no error")
    except ollama.ResponseError as e:
        assert e.status_code == 404


@check
def langchain_openai():
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    llm = ChatOpenAI(base_url=url + "/v1", api_key="unused", model=chat_model, temperature=0, max_tokens=6)
    a = llm.invoke("Hi")
    s = "".join(c.content for c in llm.stream("Hi"))
    assert a.content and s == a.content, (a.content, s)
    # check_embedding_ctx_length=False: otherwise it counts tokens with tiktoken, which downloads its tables.
    emb = OpenAIEmbeddings(base_url=url + "/v1", api_key="unused", model=embed_model,
                           check_embedding_ctx_length=False)
    v = emb.embed_documents(["hello", "world"])
    assert len(v) == 2 and len(v[0]) == 384 and len(emb.embed_query("hello")) == 384


@check
def langchain_ollama():
    from langchain_ollama import ChatOllama, OllamaEmbeddings
    llm = ChatOllama(base_url=url, model=chat_model, temperature=0, num_predict=6)
    a = llm.invoke("Hi")
    s = "".join(c.content for c in llm.stream("Hi"))
    assert a.content and s == a.content, (a.content, s)
    emb = OllamaEmbeddings(base_url=url, model=embed_model)
    assert len(emb.embed_query("hello")) == 384


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                                     "zip": {"type": "integer", "minimum": 1000, "maximum": 99999}},
                    "required": ["city"], "additionalProperties": False},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current time in a time zone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
GREEDY = {"temperature": 0}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def bad_request(fn, *needles):
    try:
        fn()
    except (openai.BadRequestError, ollama.ResponseError) as e:
        text = str(e)
        assert all(n in text for n in needles), (text, needles)
        return
    raise AssertionError(f"no 400 for {needles}")


@check
def openai_json_schema_50_samples_validate():
    for seed in range(5):
        r = oai.chat.completions.create(
            model=chat_model, messages=[{"role": "user", "content": "Invent a person and describe them as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
            temperature=1.0, seed=seed, n=10, max_tokens=150)
        assert len(r.choices) == 10
        for c in r.choices:
            assert c.finish_reason == "stop", c
            jsonschema.validate(json.loads(c.message.content), PERSON)
    chunks = oai.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "A JSON object about cats, please."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=80, stream=True)
    text, reason = "", None
    for c in chunks:
        text += c.choices[0].delta.content or ""
        reason = c.choices[0].finish_reason or reason
    assert text.startswith("{"), text
    if reason == "stop":
        assert isinstance(json.loads(text), dict), text
    bad_request(lambda: oai.chat.completions.create(
        model=chat_model, messages=ASK_WEATHER, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "array", "uniqueItems": True}}}), "uniqueItems")


def assemble(chunks):
    """The tool calls of a stream, from their fragments, checking the fragments' shape as the SDK expects it."""
    calls, reason = {}, None
    for c in chunks:
        ch = c.choices[0]
        reason = ch.finish_reason or reason
        for d in ch.delta.tool_calls or []:
            if d.index not in calls:
                assert d.id and d.type == "function" and d.function.name and d.function.arguments == "", d
                calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
            else:
                assert d.id is None and d.function.name is None, d
                calls[d.index]["arguments"] += d.function.arguments
    return [calls[i] for i in sorted(calls)], reason


@check
def openai_tools_forced_named_streamed_and_round_trip():
    for model in (tool_model, chat_model):
        r = oai.chat.completions.create(model=model, messages=ASK_WEATHER, tools=[WEATHER, TIME],
                                        tool_choice="required", temperature=0, max_tokens=100)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls" and c.message.tool_calls, (model, c)
        for call in c.message.tool_calls:
            jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        streamed, reason = assemble(oai.chat.completions.create(
            model=model, messages=ASK_WEATHER, tools=[WEATHER, TIME], tool_choice="required", temperature=0,
            max_tokens=100, stream=True))
        assert reason == "tool_calls"
        assert [(s["name"], json.loads(s["arguments"])) for s in streamed] == \
            [(t.function.name, json.loads(t.function.arguments)) for t in c.message.tool_calls], (streamed, c)
        named = oai.chat.completions.create(model=model, messages=ASK_WEATHER, tools=[WEATHER, TIME],
                                            tool_choice={"type": "function", "function": {"name": "get_time"}},
                                            temperature=0, max_tokens=60)
        (call,) = named.choices[0].message.tool_calls
        assert call.function.name == "get_time" and "timezone" in json.loads(call.function.arguments)
    # Auto: Qwen calls the weather tool of its own accord, and its answer uses the result.
    r = oai.chat.completions.create(model=tool_model, messages=ASK_WEATHER, tools=[WEATHER, TIME],
                                    temperature=0, max_tokens=100)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.tool_calls[0].function.name == "get_weather", msg
    assert "paris" in json.loads(msg.tool_calls[0].function.arguments)["city"].lower()
    follow = ASK_WEATHER + [msg.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": msg.tool_calls[0].id,
                             "content": "{\"temperature\": 31, \"sky\": \"sunny\"}"}]
    r2 = oai.chat.completions.create(model=tool_model, messages=follow, tools=[WEATHER, TIME], temperature=0,
                                     max_tokens=60, parallel_tool_calls=False)
    # The call and its result went into the prompt (a 0.5B model may well call the tool again: any answer will do).
    assert r2.usage.prompt_tokens >= r.usage.prompt_tokens + r.usage.completion_tokens + 10, (r.usage, r2.usage)
    assert r2.choices[0].message.content or r2.choices[0].message.tool_calls, r2
    # tool_choice none: no tools, an answer in words.
    r3 = oai.chat.completions.create(model=tool_model, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="none",
                                     temperature=0, max_tokens=20)
    assert r3.choices[0].message.content and not r3.choices[0].message.tool_calls
    # Bad input: 400s that say what is wrong.
    bad_request(lambda: oai.chat.completions.create(
        model=tool_model, messages=ASK_WEATHER, tools=[{"type": "function", "function": {"parameters": {}}}]),
        "name")
    bad_request(lambda: oai.chat.completions.create(
        model=tool_model, messages=follow[:2] + [{"role": "tool", "tool_call_id": "nope", "content": "x"}],
        tools=[WEATHER]), "nope")
    broken = json.loads(json.dumps(follow[1]))
    broken["tool_calls"][0]["function"]["arguments"] = "{city: Paris"
    bad_request(lambda: oai.chat.completions.create(model=tool_model, messages=[ASK_WEATHER[0], broken],
                                                    tools=[WEATHER]), "arguments is not JSON")


@check
def ollama_tools_and_format():
    opts = {"temperature": 0, "num_predict": 100}
    r = oll.chat(model=tool_model, messages=ASK_WEATHER, tools=[WEATHER, TIME], options=opts)
    (call,) = r.message.tool_calls
    assert call.function.name == "get_weather" and "paris" in call.function.arguments["city"].lower(), r
    parts = list(oll.chat(model=tool_model, messages=ASK_WEATHER, tools=[WEATHER, TIME], options=opts, stream=True))
    streamed = [tc for p in parts for tc in (p.message.tool_calls or [])]
    assert [(t.function.name, t.function.arguments) for t in streamed] == [(call.function.name, call.function.arguments)]
    follow = ASK_WEATHER + [r.message, {"role": "tool", "content": "31 degrees, sunny", "tool_name": "get_weather"}]
    r2 = oll.chat(model=tool_model, messages=follow, tools=[WEATHER, TIME], options=opts)
    assert r2.prompt_eval_count >= r.prompt_eval_count + r.eval_count + 5, (r, r2)
    f = oll.chat(model=chat_model, messages=[{"role": "user", "content": "Describe a person."}], format=PERSON,
                 options=opts)
    jsonschema.validate(json.loads(f.message.content), PERSON)
    g = oll.generate(model=chat_model, prompt="A JSON list of three fruits:", format={"type": "array", "items": {
        "type": "string", "maxLength": 12}, "minItems": 3, "maxItems": 3}, options=opts)
    assert len(json.loads(g.response)) == 3, g.response
    bad_request(lambda: oll.chat(model=chat_model, messages=ASK_WEATHER,
                                 format={"type": "array", "uniqueItems": True}), "uniqueItems")


@check
def langchain_structured_output_and_bind_tools():
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Person(BaseModel):
        name: str = Field(max_length=30)
        age: int = Field(ge=0, le=150)

    p = ChatOpenAI(base_url=url + "/v1", api_key="unused", model=chat_model, temperature=0, max_tokens=80) \
        .with_structured_output(Person).invoke("Describe Ada Lovelace.")
    assert isinstance(p, Person) and p.name, p

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "31 degrees"

    llm = ChatOpenAI(base_url=url + "/v1", api_key="unused", model=tool_model, temperature=0, max_tokens=100)
    msg = llm.bind_tools([get_weather], tool_choice="required").invoke("What is the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather", msg
    assert "paris" in msg.tool_calls[0]["args"]["city"].lower()



@check
def anthropic_messages_stream_tools_and_count_tokens():
    # This SDK no longer sends sampling parameters; Lar still reads them, for older clients and for tests.
    r = ant.messages.create(model=chat_model, max_tokens=12, extra_body=GREEDY,
                            system="You are terse.", messages=[{"role": "user", "content": "Name a color."}])
    assert r.type == "message" and r.role == "assistant" and r.content[0].type == "text" and r.content[0].text, r
    assert r.stop_reason in ("end_turn", "max_tokens") and r.usage.output_tokens > 0 and r.usage.input_tokens > 0
    with ant.messages.stream(model=chat_model, max_tokens=12, extra_body=GREEDY, system="You are terse.",
                             messages=[{"role": "user", "content": "Name a color."}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == r.content[0].text and final.usage.output_tokens == r.usage.output_tokens, (streamed, r)
    stop = ant.messages.create(model=chat_model, max_tokens=40, extra_body=GREEDY, stop_sequences=[" "],
                               messages=[{"role": "user", "content": "Write a sentence about the sea."}])
    assert stop.stop_reason == "stop_sequence" and stop.stop_sequence == " ", stop
    n = ant.messages.count_tokens(model=chat_model, system="You are terse.",
                                  messages=[{"role": "user", "content": "Name a color."}])
    assert n.input_tokens == r.usage.input_tokens, (n, r.usage)
    tools = [{"name": t["function"]["name"], "description": t["function"]["description"],
              "input_schema": t["function"]["parameters"]} for t in (WEATHER, TIME)]
    r = ant.messages.create(model=tool_model, max_tokens=100, extra_body=GREEDY, tools=tools, messages=ASK_WEATHER)
    uses = [b for b in r.content if b.type == "tool_use"]
    assert r.stop_reason == "tool_use" and uses and uses[0].name == "get_weather", r
    assert "paris" in uses[0].input["city"].lower()
    with ant.messages.stream(model=tool_model, max_tokens=100, extra_body=GREEDY, tools=tools,
                             messages=ASK_WEATHER) as s:
        final = s.get_final_message()
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [(u.name, u.input) for u in uses]
    forced = ant.messages.create(model=tool_model, max_tokens=60, extra_body=GREEDY, tools=tools,
                                 tool_choice={"type": "tool", "name": "get_time"}, messages=ASK_WEATHER)
    (use,) = [b for b in forced.content if b.type == "tool_use"]
    assert use.name == "get_time" and "timezone" in use.input, forced
    follow = ASK_WEATHER + [{"role": "assistant", "content": [u.model_dump() for u in uses]},
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                                          "content": "31 degrees, sunny"}]}]
    r2 = ant.messages.create(model=tool_model, max_tokens=60, extra_body=GREEDY, tools=tools, messages=follow,
                             tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert r2.usage.input_tokens >= r.usage.input_tokens + r.usage.output_tokens + 5, (r.usage, r2.usage)
    try:
        ant.messages.create(model=tool_model, max_tokens=10, messages=ASK_WEATHER + [
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}])
        raise AssertionError("no 400 for an unknown tool_use_id")
    except anthropic.BadRequestError as e:
        assert e.body["error"]["type"] == "invalid_request_error" and "nope" in e.body["error"]["message"], e.body
    try:
        ant.messages.create(model="no-such-model", max_tokens=5, messages=ASK_WEATHER)
        raise AssertionError("no 404")
    except anthropic.NotFoundError as e:
        assert e.body["error"]["type"] == "not_found_error", e.body


@check
def openai_responses_stream_store_and_function_call_round_trip():
    r = oai.responses.create(model=chat_model, input="Name a color.", instructions="You are terse.",
                             max_output_tokens=12, temperature=0)
    assert r.status in ("completed", "incomplete") and r.output_text, r
    events = list(oai.responses.create(model=chat_model, input="Name a color.", instructions="You are terse.",
                                       max_output_tokens=12, temperature=0, stream=True))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == r.output_text == events[-1].response.output_text, (streamed, r.output_text)
    again = oai.responses.create(model=chat_model, input="Another one.", previous_response_id=r.id,
                                 max_output_tokens=8, temperature=0)
    assert again.usage.input_tokens > r.usage.input_tokens + r.usage.output_tokens, (again.usage, r.usage)
    assert oai.responses.retrieve(r.id).id == r.id
    tools = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
              "parameters": t["function"]["parameters"]} for t in (WEATHER, TIME)]
    r = oai.responses.create(model=tool_model, input="What is the weather like in Paris today?", tools=tools,
                             tool_choice="required", temperature=0, max_output_tokens=100)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name in SCHEMAS, r.output
    jsonschema.validate(json.loads(calls[0].arguments), SCHEMAS[calls[0].name])
    with oai.responses.stream(model=tool_model, input="What is the weather like in Paris today?", tools=tools,
                              tool_choice="required", temperature=0, max_output_tokens=100) as s:
        final = s.get_final_response()
    assert [(o.name, json.loads(o.arguments)) for o in final.output if o.type == "function_call"] == \
        [(c.name, json.loads(c.arguments)) for c in calls]
    follow = oai.responses.create(model=tool_model, previous_response_id=r.id, tools=tools, temperature=0,
                                  max_output_tokens=40, parallel_tool_calls=False,
                                  input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                          "output": "31 degrees, sunny"}])
    assert follow.usage.input_tokens >= r.usage.input_tokens + r.usage.output_tokens + 5, (r.usage, follow.usage)
    schema = {"type": "object", "properties": {"color": {"type": "string", "maxLength": 20}}, "required": ["color"]}
    j = oai.responses.create(model=chat_model, input="A color as JSON.", temperature=0, max_output_tokens=40,
                             text={"format": {"type": "json_schema", "name": "c", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(j.output_text), schema)
    try:
        oai.responses.create(model=tool_model, input=[{"type": "function_call_output", "call_id": "nope",
                                                       "output": "x"}])
        raise AssertionError("no 400 for an unknown call_id")
    except openai.BadRequestError as e:
        assert "nope" in str(e)


@check
def knowledge_base_as_a_model_and_a_search_route():
    """kb:home (the test corpus) answered by the tool model: sources in the answer, [n] citations, the same hits
    from /v1/kb/home/search as `lar kb search --json` printed; listed as a model; the Ollama SDK and LangChain
    reach it too."""
    kb_model = "kb:home@" + tool_model
    assert "kb:home" in [m.id for m in oai.models.list()]
    q = [{"role": "user", "content": "How much is the monthly rent?"}]
    r = oai.chat.completions.create(model=kb_model, messages=q, max_tokens=60, temperature=0)
    sources = r.model_extra["sources"]
    assert any(s["path"].endswith("lease.pdf") for s in sources), sources
    text = r.choices[0].message.content
    assert "1,250" in text or "1250" in text, text
    assert "[" in text and r.choices[0].message.model_extra["cited"], text
    last = None
    for c in oai.chat.completions.create(model=kb_model, messages=q, max_tokens=60, temperature=0, stream=True):
        last = c
    assert last.model_extra["sources"] == sources
    o = oll.chat(model=kb_model, messages=q, options={"num_predict": 60, "temperature": 0})
    assert "1,250" in o.message.content or "1250" in o.message.content, o.message.content
    from langchain_openai import ChatOpenAI
    lc = ChatOpenAI(base_url=url + "/v1", api_key="unused", model=kb_model, temperature=0, max_tokens=60)
    assert lc.invoke("How much is the monthly rent?").content == text
    want = json.load(open(os.environ["LAR_KB_SEARCH_JSON"]))
    req = urllib.request.Request(url + "/v1/kb/home/search", method="POST",
                                 data=json.dumps({"query": "When is the flight to Lisbon?", "k": 3}).encode(),
                                 headers={"content-type": "application/json"})
    got = json.load(urllib.request.urlopen(req))["data"]
    strip = lambda hits: [{k: v for k, v in h.items() if k not in ("score", "similarity")} for h in hits]
    assert strip(got) == strip(want), (got, want)
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(got, want))
    assert got[0]["path"].endswith("calendar.ics"), got[0]
    # The knowledge base as a tool the server runs for the model (an agent loop).
    a = oai.chat.completions.create(
        model=tool_model, messages=q, temperature=0, max_tokens=80,
        tools=[{"type": "knowledge_base", "knowledge_base": "home"}],
        tool_choice={"type": "function", "function": {"name": "search_knowledge_base"}})
    assert a.model_extra["knowledge_base_searches"][0]["knowledge_base"] == "home", a
    assert any(s["path"].endswith("lease.pdf") for s in a.model_extra["sources"]), a
    assert "1,250" in a.choices[0].message.content or "1250" in a.choices[0].message.content, a


for fn in checks:
    print(f"check {fn.__name__}", flush=True)
    fn()
print(f"all {len(checks)} client checks passed")
