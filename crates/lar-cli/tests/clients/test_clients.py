"""Real clients, unchanged, against a running `lar serve`: the openai and ollama SDKs, langchain-openai and
langchain-ollama. Run by crates/lar-cli/tests/clients.rs with the venv scripts/test.sh makes:

    python test_clients.py http://127.0.0.1:PORT CHAT_MODEL EMBED_MODEL

Each check prints its name; any failure raises and exits non-zero.
"""
import sys

import ollama
import openai

url, chat_model, embed_model = sys.argv[1], sys.argv[2], sys.argv[3]
oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=5)
oll = ollama.Client(host=url)
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


for fn in checks:
    print(f"check {fn.__name__}", flush=True)
    fn()
print(f"all {len(checks)} client checks passed")
