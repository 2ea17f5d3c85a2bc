//! Knowledge bases through the API. On scripted models (the byte-sum embedder through the model manager, the
//! scripted chat model): `/v1/kb` and the model lists follow the API key, a knowledge base a key may not read is
//! answered as one that does not exist, search returns the library's own hits with every filter and bad input
//! refused, and `kb:NAME` chat answers carry their numbered sources (OpenAI and Ollama, streamed and not). On real
//! models (all-MiniLM-L6-v2 opened from its directory, Qwen2.5-Coder-0.5B): a grounded answer names the right
//! source and its figure, and a question the knowledge base cannot answer gets exactly "I don't know".

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use common::kbs::{make_kb, temp};
use common::*;
use lar_rag::kb::Registry;
use lar_rag::search::SearchOptions;
use lar_server::kb::KbServing;
use lar_server::{AppState, Manager, ManagerConfig, ServerConfig};
use serde_json::{Value, json};

const KEY_ALL: &str = "key-reads-everything";
const KEY_MAIL: &str = "key-reads-mail-only";

/// Two knowledge bases of the scripted embedder ("embed"): `notes` (two Markdown files) and `mail`.
fn scripted_kbs(tag: &str) -> PathBuf {
    let d = temp(tag);
    let notes = d.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("garden.md"), "# Garden\n\nw5 w6 tomatoes\n").unwrap();
    std::fs::write(notes.join("boiler.md"), "# Boiler\n\nw9 pressure\n").unwrap();
    let mail = d.join("mailbox");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(mail.join("note.txt"), "w7 dentist\n").unwrap();
    let root = d.join("kb");
    let e = lar_server::testing::SumEmbedder;
    make_kb(&root, "notes", "embed", &e, &notes);
    make_kb(&root, "mail", "embed", &e, &mail);
    root
}

fn kb_app(root: Option<PathBuf>, default_model: Option<&str>) -> TestApp {
    app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec![KEY_ALL.into(), KEY_MAIL.into()],
            kb: KbServing {
                root,
                grants: HashMap::from([(KEY_MAIL.to_string(), vec!["mail".to_string()])]),
                default_model: default_model.map(String::from),
                threads: 1,
            },
            ..Default::default()
        },
    )
}

async fn call(
    t: &TestApp,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    };
    send(&t.router, req.unwrap()).await
}

fn ids(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn what_a_key_may_read_is_all_it_sees() {
    let t = kb_app(Some(scripted_kbs("access")), Some("long"));
    let all = call(&t, Some(KEY_ALL), "GET", "/v1/kb", None).await;
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(ids(&all.json(), "data", "id"), ["mail", "notes"]);
    assert_eq!(all.json()["data"][1]["model"], "kb:notes");
    let mail = call(&t, Some(KEY_MAIL), "GET", "/v1/kb", None).await;
    assert_eq!(ids(&mail.json(), "data", "id"), ["mail"]);
    assert_eq!(call(&t, None, "GET", "/v1/kb", None).await.status, 401);

    // The model lists: kb:NAME after the store's models, for the knowledge bases the key may read.
    let models = call(&t, Some(KEY_MAIL), "GET", "/v1/models", None)
        .await
        .json();
    let names = ids(&models, "data", "id");
    assert!(
        names.contains(&"kb:mail".to_string()) && !names.contains(&"kb:notes".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"scripted:latest".to_string()), "{names:?}");
    let tags = call(&t, Some(KEY_ALL), "GET", "/api/tags", None)
        .await
        .json();
    let names = ids(&tags, "models", "name");
    assert!(
        names.contains(&"kb:mail".to_string()) && names.contains(&"kb:notes".to_string()),
        "{names:?}"
    );
    let one = call(&t, Some(KEY_MAIL), "GET", "/v1/models/kb:mail", None).await;
    assert_eq!(one.json()["id"], "kb:mail");
    let one = call(&t, Some(KEY_MAIL), "GET", "/v1/models/kb:mail@long", None).await;
    assert_eq!(one.json()["id"], "kb:mail@long", "{}", one.text());

    // A knowledge base whose config is broken is left out of every list; the others stay.
    let root = t.state.cfg.kb.root.clone().unwrap();
    std::fs::create_dir_all(root.join("broken")).unwrap();
    std::fs::write(root.join("broken/config.json"), "{not json").unwrap();
    let all = call(&t, Some(KEY_ALL), "GET", "/v1/kb", None).await;
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(ids(&all.json(), "data", "id"), ["mail", "notes"]);
    assert_eq!(
        call(&t, Some(KEY_ALL), "GET", "/v1/models", None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&t, Some(KEY_ALL), "GET", "/api/tags", None)
            .await
            .status,
        200
    );

    // A knowledge base the key may not read is answered exactly as one that does not exist.
    let search = json!({"query": "w5 tomatoes"});
    let hidden = call(
        &t,
        Some(KEY_MAIL),
        "POST",
        "/v1/kb/notes/search",
        Some(search.clone()),
    )
    .await;
    let absent = call(
        &t,
        Some(KEY_MAIL),
        "POST",
        "/v1/kb/nothing/search",
        Some(search.clone()),
    )
    .await;
    assert_eq!(hidden.status, 404);
    assert_eq!(absent.status, 404);
    assert_eq!(
        hidden.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("notes", "X"),
        absent.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nothing", "X")
    );
    assert_eq!(
        call(&t, Some(KEY_MAIL), "GET", "/v1/models/kb:notes", None)
            .await
            .status,
        404
    );
    let chat = json!({"model": "kb:notes", "messages": [{"role": "user", "content": "w5"}]});
    let a = call(
        &t,
        Some(KEY_MAIL),
        "POST",
        "/v1/chat/completions",
        Some(chat.clone()),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text());
    let a = call(&t, Some(KEY_MAIL), "POST", "/api/chat", Some(chat.clone())).await;
    assert_eq!(a.status, 404, "{}", a.text());
    let a = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/chat/completions",
        Some(chat),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());

    // A server that serves no knowledge base says so.
    let none = kb_app(None, Some("long"));
    let a = call(
        &none,
        Some(KEY_ALL),
        "POST",
        "/v1/kb/notes/search",
        Some(search),
    )
    .await;
    assert_eq!(a.status, 404);
    assert!(
        a.text().contains("serves no knowledge bases"),
        "{}",
        a.text()
    );
    let a = call(&none, Some(KEY_ALL), "GET", "/v1/kb", None).await;
    assert_eq!(a.json()["data"], json!([]));
}

#[tokio::test]
async fn search_returns_the_librarys_hits_and_refuses_bad_input() {
    let root = scripted_kbs("search");
    let t = kb_app(Some(root.clone()), Some("long"));
    let a = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/kb/notes/search",
        Some(json!({"query": "w5 tomatoes", "k": 2})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let got = a.json()["data"].clone();
    // What `lar kb search --json` prints: the library's search, serialized.
    let reg = Registry::new(&root);
    let store = reg.open(&reg.get("notes").unwrap()).unwrap();
    let opts = SearchOptions {
        k: 2,
        ..Default::default()
    };
    let want = lar_rag::search::search(
        store.as_ref(),
        &lar_server::testing::SumEmbedder,
        "w5 tomatoes",
        &opts,
    )
    .unwrap();
    // (Compared as JSON text read back, as a client gets it: f32 scores go through f64.)
    let want: Value =
        serde_json::from_str(&serde_json::to_value(&want).unwrap().to_string()).unwrap();
    assert_eq!(got, want);
    assert!(
        got[0]["path"].as_str().unwrap().ends_with("garden.md"),
        "{got}"
    );
    assert_eq!(got[0]["text_rank"], 1);

    // Filters: a kind with nothing of it finds nothing; the path glob keeps one file.
    let f = |body: Value| call(&t, Some(KEY_ALL), "POST", "/v1/kb/notes/search", Some(body));
    let a = f(json!({"query": "w5 tomatoes", "kind": "pdf"})).await;
    assert_eq!(a.json()["data"], json!([]));
    let a = f(json!({"query": "w5 tomatoes", "kind": ["markdown"], "path": "boiler.md"})).await;
    let paths: Vec<String> = ids(&a.json(), "data", "path");
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p.ends_with("boiler.md")),
        "{paths:?}"
    );

    for (body, says) in [
        (json!({"query": ""}), "the query is empty"),
        (json!({"query": "w5", "k": 0}), "k must be at least 1"),
        (json!({"query": "w5", "k": 1000}), "k is at most 100"),
        (json!({"query": "w5", "k": "three"}), "k"),
        (
            json!({"query": "w5", "kind": "spreadsheet"}),
            "unknown kind 'spreadsheet'",
        ),
        (
            json!({"query": "w5", "since": "yesterday"}),
            "since: 'yesterday' is not a date",
        ),
        (
            json!({"query": "w5", "since": "2024-05-01", "until": "2024-04-01"}),
            "starts after it ends",
        ),
        (json!({"query": "w5", "path": "a["}), "bad path glob"),
        (json!({"query": "w5", "top_k": 3}), "top_k"),
        (json!({"k": 3}), "query"),
    ] {
        let a = f(body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert!(a.text().contains(says), "{body}: {}", a.text());
    }
    let a = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/kb/a%20b/search",
        Some(json!({"query": "w5"})),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(
        a.text().contains("invalid knowledge base name"),
        "{}",
        a.text()
    );
    // The server is fine after all that.
    assert_eq!(f(json!({"query": "w9"})).await.status, 200);
}

#[tokio::test]
async fn kb_models_answer_with_their_sources() {
    let t = kb_app(Some(scripted_kbs("chat")), Some("long"));
    let chat = |model: &str, stream: bool| {
        json!({"model": model, "messages": [{"role": "system", "content": "w3"}, {"role": "user", "content": "w5 tomatoes"}],
               "stream": stream, "max_tokens": 6})
    };
    let a = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/chat/completions",
        Some(chat("kb:notes", false)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["model"], "kb:notes");
    let sources = v["sources"].as_array().unwrap();
    assert!(!sources.is_empty());
    assert_eq!(sources[0]["n"], 1);
    assert!(
        sources[0]["path"].as_str().unwrap().ends_with("garden.md"),
        "{v}"
    );
    assert!(v["choices"][0]["message"]["cited"].is_array(), "{v}");
    // The same through an explicit chat model.
    let b = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/chat/completions",
        Some(chat("kb:notes@long", false)),
    )
    .await;
    assert_eq!(b.json()["sources"], v["sources"]);

    // Streamed: the last chunk of the choice carries the sources.
    let a = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/chat/completions",
        Some(chat("kb:notes", true)),
    )
    .await;
    let chunks: Vec<Value> = a
        .sse()
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = chunks
        .iter()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(last["sources"], v["sources"]);
    assert!(chunks.iter().all(|c| c["model"] == "kb:notes"));

    // Ollama: the last line.
    for stream in [false, true] {
        let a = call(
            &t,
            Some(KEY_ALL),
            "POST",
            "/api/chat",
            Some(ollama(chat("kb:notes", stream))),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
        let last = if stream {
            a.ndjson().pop().unwrap()
        } else {
            a.json()
        };
        assert_eq!(last["done"], true);
        assert_eq!(last["model"], "kb:notes");
        assert_eq!(last["sources"], v["sources"], "{last}");
    }

    // Refused: no chat model to answer, a knowledge base as the chat model, tools, a question that is not last.
    let bare = kb_app(t.state.cfg.kb.root.clone(), None);
    let a = call(
        &bare,
        Some(KEY_ALL),
        "POST",
        "/v1/chat/completions",
        Some(chat("kb:notes", false)),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("--model"), "{}", a.text());
    assert_eq!(
        call(
            &bare,
            Some(KEY_ALL),
            "POST",
            "/v1/chat/completions",
            Some(chat("kb:notes@long", false))
        )
        .await
        .status,
        200
    );
    for (model, extra, says) in [
        ("kb:notes@", json!({}), "name the chat model"),
        ("kb:notes@kb:mail", json!({}), "not a knowledge base"),
        ("kb:../x", json!({}), "invalid knowledge base name"),
        (
            "kb:notes",
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            "kb:notes",
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            "kb:notes",
            json!({"messages": [{"role": "user", "content": "w5"}, {"role": "assistant", "content": "w6"}]}),
            "last message",
        ),
    ] {
        let mut body = chat(model, false);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = call(
            &t,
            Some(KEY_ALL),
            "POST",
            "/v1/chat/completions",
            Some(body.clone()),
        )
        .await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert!(a.text().contains(says), "{body}: {}", a.text());
    }
}

/// An OpenAI chat body as Ollama takes it.
fn ollama(mut body: Value) -> Value {
    let max = body.as_object_mut().unwrap().remove("max_tokens");
    if let Some(m) = max {
        body["options"] = json!({"num_predict": m});
    }
    body
}

/// A store with Qwen2.5-Coder and an app serving the test corpus as knowledge base `home` (MiniLM from its
/// directory), answered by Qwen by default.
fn real_app(tag: &str) -> (AppState, PathBuf) {
    let d = temp(tag);
    let corpus = d.join("corpus");
    lar_testdata::corpus::write(&corpus).unwrap();
    let minilm = lar_testdata::models_dir().join("all-MiniLM-L6-v2");
    let e = lar_engine::SentenceEmbedder::open(&minilm, 2).unwrap();
    make_kb(
        &d.join("kb"),
        "home",
        &minilm.display().to_string(),
        &e,
        &corpus,
    );
    let store = lar_store::Store::open(&d.join("store")).unwrap();
    store
        .import(
            &lar_testdata::model(lar_testdata::QWEN_CODER),
            &lar_store::ModelName::parse("qwen2.5-coder").unwrap(),
            &|_, _, _| {},
        )
        .unwrap();
    let engine = lar_engine::EngineConfig {
        threads: 2,
        ctx: Some(2048),
        ..Default::default()
    };
    let catalog = Arc::new(lar_server::StoreCatalog::new(store, engine));
    let manager = Manager::new(catalog, ManagerConfig::default());
    let cfg = ServerConfig {
        kb: KbServing {
            root: Some(d.join("kb")),
            default_model: Some("qwen2.5-coder".into()),
            threads: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    (AppState::new(manager, cfg), d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_models_ground_answers_and_say_when_they_do_not_know() {
    let (st, dir) = real_app("real-ground");
    let router = lar_server::app(st);
    let ask = |q: &str, stream: bool| {
        json!({"model": "kb:home", "messages": [{"role": "user", "content": q}], "max_tokens": 60,
               "temperature": 0, "stream": stream})
    };
    let a = post_json(
        &router,
        "/v1/chat/completions",
        &ask("How much is the monthly rent?", false),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let sources = v["sources"].as_array().unwrap();
    let lease = sources
        .iter()
        .find(|s| s["path"].as_str().unwrap().ends_with("lease.pdf"))
        .unwrap_or_else(|| panic!("no lease.pdf among the sources: {v}"));
    assert!(lease["page"].is_number(), "{lease}");
    let msg = &v["choices"][0]["message"];
    let content = msg["content"].as_str().unwrap();
    assert!(
        content.contains("1,250") || content.contains("1250"),
        "{content}"
    );
    let cited: Vec<u64> = msg["cited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(cited.contains(&lease["n"].as_u64().unwrap()), "{v}");
    for n in &cited {
        assert!(content.contains(&format!("[{n}]")), "{content}");
    }

    // Nothing relevant: exactly "I don't know", streamed and not, with no sources.
    let q = "What is the boiling point of liquid nitrogen?";
    let a = post_json(&router, "/v1/chat/completions", &ask(q, false)).await;
    let v = a.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        lar_rag::answer::DONT_KNOW,
        "{v}"
    );
    assert_eq!(v["sources"], json!([]));
    let a = post_json(&router, "/v1/chat/completions", &ask(q, true)).await;
    let text: String = a
        .sse()
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(text, lar_rag::answer::DONT_KNOW);

    // Search on the real embedder: the right file first.
    let a = post_json(
        &router,
        "/v1/kb/home/search",
        &json!({"query": "When is the flight to Lisbon?", "k": 3}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.json()["data"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("calendar.ics"),
        "{}",
        a.text()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn knowledge_base_tools_are_checked_before_anything_runs() {
    let t = kb_app(Some(scripted_kbs("agent")), Some("long"));
    let ask = |tools: Value, extra: Value| {
        let mut b = json!({"model": "long", "messages": [{"role": "user", "content": "w5"}], "tools": tools});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let kb = |n: &str| json!([{"type": "knowledge_base", "knowledge_base": n}]);
    for (key, body, status, says) in [
        (
            KEY_MAIL,
            ask(kb("notes"), json!({})),
            404,
            "no knowledge base 'notes'",
        ),
        (
            KEY_ALL,
            ask(kb("../x"), json!({})),
            400,
            "invalid knowledge base name",
        ),
        (
            KEY_ALL,
            ask(json!([{"type": "knowledge_base"}]), json!({})),
            400,
            "must name a knowledge base",
        ),
        (
            KEY_ALL,
            ask(
                json!([{"type": "knowledge_base", "knowledge_base": "notes", "k": 3}]),
                json!({}),
            ),
            400,
            "unknown field 'k'",
        ),
        (KEY_ALL, ask(kb("notes"), json!({"n": 2})), 400, "'n'"),
        (
            KEY_ALL,
            ask(kb("notes"), json!({"model": "kb:notes"})),
            400,
            "knowledge-base model",
        ),
        (
            KEY_ALL,
            ask(
                json!([{"type": "knowledge_base", "knowledge_base": "notes"},
                       {"type": "function", "function": {"name": "search_knowledge_base", "parameters": {"type": "object"}}}]),
                json!({}),
            ),
            400,
            "name your function otherwise",
        ),
    ] {
        let a = call(
            &t,
            Some(key),
            "POST",
            "/v1/chat/completions",
            Some(body.clone()),
        )
        .await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        assert!(a.text().contains(says), "{body}: {}", a.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_searches_its_knowledge_base_and_answers_from_it() {
    let (st, dir) = real_app("real-agent");
    let router = lar_server::app(st);
    let body = json!({
        "model": "qwen2.5-coder",
        "messages": [{"role": "user", "content": "How much is my monthly rent?"}],
        "tools": [{"type": "knowledge_base", "knowledge_base": "home"}],
        "tool_choice": {"type": "function", "function": {"name": "search_knowledge_base"}},
        "temperature": 0,
        "max_tokens": 80,
    });
    let a = post_json(&router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let searches = v["knowledge_base_searches"].as_array().unwrap();
    assert!(
        !searches.is_empty() && searches[0]["knowledge_base"] == "home",
        "{v}"
    );
    assert!(
        searches[0]["query"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("rent"),
        "{v}"
    );
    let sources = v["sources"].as_array().unwrap();
    assert!(
        sources
            .iter()
            .any(|s| s["path"].as_str().unwrap().ends_with("lease.pdf")),
        "{v}"
    );
    let n: Vec<u64> = sources.iter().map(|s| s["n"].as_u64().unwrap()).collect();
    assert_eq!(
        n,
        (1..=sources.len() as u64).collect::<Vec<_>>(),
        "numbered across searches"
    );
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("1,250") || content.contains("1250"), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(
        v["usage"]["prompt_tokens"].as_u64().unwrap() > 100,
        "every round counts: {v}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_audit_log_names_the_sources_an_answer_was_given() {
    let dir = temp("audit");
    let log = std::sync::Arc::new(lar_lab::audit::AuditLog::open_home(&dir).unwrap());
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec![KEY_ALL.into()],
            kb: KbServing {
                root: Some(scripted_kbs("audited")),
                default_model: Some("long".into()),
                threads: 1,
                ..Default::default()
            },
            audit: Some(log.clone()),
            ..Default::default()
        },
    );
    let body = json!({"model": "kb:notes", "messages": [{"role": "user", "content": "w5 tomatoes"}],
                      "max_tokens": 6});
    let a = call(
        &t,
        Some(KEY_ALL),
        "POST",
        "/v1/chat/completions",
        Some(body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let given: Vec<String> = ids(&a.json(), "sources", "path");
    let r = log.query(&Default::default()).unwrap();
    assert_eq!(r.len(), 1);
    assert!(!given.is_empty());
    assert_eq!(
        r[0].sources, given,
        "the sources in the prompt, as the answer lists them"
    );
    assert!(r[0].sources[0].ends_with("garden.md"));
    let _ = std::fs::remove_dir_all(dir);
}
