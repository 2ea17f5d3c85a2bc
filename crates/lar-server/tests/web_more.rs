//! The web UI's routes with `oneshot`, continued: documents (a knowledge base made, filled and cited from the
//! page), files dropped into a chat, the lab (runs, charts, a benchmark), and pages of other sites refused.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::ui::*;
use common::*;
use lar_server::{ManagerConfig, ServerConfig};
use serde_json::json;

#[tokio::test]
async fn documents_are_created_uploaded_ingested_and_cited() {
    let root = common::kbs::temp("web-docs");
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            kb: lar_server::kb::KbServing {
                root: Some(root.clone()),
                threads: 1,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let token = page_token(&t).await;
    let h = [("x-lar-csrf", token.as_str())];
    let page = get(&t.router, "/ui/kb").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<option value=\"embed:latest\">"),
        "{}",
        page.text()
    );

    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/kb",
            &h,
            Some(&json!({"name": "trips", "embedder": "say"})),
        ),
    )
    .await;
    assert_eq!(a.status, 400, "a chat model is no embedder: {}", a.text());
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/kb",
            &h,
            Some(&json!({"name": "../x", "embedder": "embed"})),
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text());
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/kb",
            &h,
            Some(&json!({"name": "trips", "embedder": "embed"})),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(
        get(&t.router, "/ui/kb")
            .await
            .text()
            .contains("data-kb=\"trips\"")
    );
    assert!(
        get(&t.router, "/ui")
            .await
            .text()
            .contains("value=\"kb:trips\""),
        "askable from the chat page"
    );

    let upload = |path: &str, body: &'static str| {
        let mut r = req("PUT", &format!("/ui/api/kb/trips/files/{path}"), &h, None);
        *r.body_mut() = Body::from(body);
        r
    };
    let md = "# Lisbon\n\nThe flight to Lisbon leaves at nine.\n\n# Porto\n\nThe train to Porto leaves at noon.\n";
    assert_eq!(
        send(&t.router, upload("plans/trip.md", md)).await.status,
        200
    );
    let a = send(&t.router, upload("photo.xyz", "\u{1}\u{2}")).await;
    assert_eq!(a.json()["skipped"], "unsupported file type", "{}", a.text());
    assert!(!root.join("trips/uploads/photo.xyz").exists());
    for bad in [
        "..%2Fescape.md",
        "plans/..%2F..%2Fescape.md",
        ".hidden.md",
        "a%5Cb.md",
    ] {
        let a = send(&t.router, upload(bad, "x")).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
    }
    assert!(!root.join("trips/escape.md").exists() && !root.join("escape.md").exists());

    let a = send(&t.router, req("POST", "/ui/api/kb/trips/ingest", &h, None)).await;
    assert_eq!(a.status, 200);
    let lines = a.ndjson();
    assert_eq!(lines[0]["found"], 1, "{lines:?}");
    let report = &lines.last().unwrap()["report"];
    assert_eq!(report["files_read"], 1, "{lines:?}");
    assert!(report["chunks_added"].as_u64().unwrap() >= 2, "{report}");

    // A citation opens its document at its place; only an indexed file can be opened.
    let file = root.join("trips/uploads/plans/trip.md");
    let path = file.canonicalize().unwrap_or(file).display().to_string();
    let src = json!({"n": 1, "path": path, "heading": "Porto"});
    let href = lar_server::web::pages::source_href("trips", &src).unwrap();
    let a = get(&t.router, href.trim_end_matches("#cited")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let html = a.text();
    let cited = html
        .find("id=\"cited\"")
        .expect("the cited place is marked");
    assert!(
        html[cited..].contains("noon") && !html[cited..].contains("nine"),
        "{html}"
    );
    let a = get(&t.router, "/ui/kb/trips/source?path=/etc/passwd").await;
    assert_eq!(a.status, 404);
    assert!(!a.text().contains("root:"));
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn a_key_limited_to_some_knowledge_bases_cannot_create_or_add() {
    let root = common::kbs::temp("web-docs-limited");
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec![KEY.into(), OTHER.into()],
            kb: lar_server::kb::KbServing {
                root: Some(root.clone()),
                grants: std::collections::HashMap::from([(
                    OTHER.to_string(),
                    vec!["trips".to_string()],
                )]),
                threads: 1,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let bearer = |k: &str| format!("Bearer {k}");
    let body = json!({"name": "trips", "embedder": "embed"});
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/kb",
            &[("authorization", &bearer(OTHER))],
            Some(&body),
        ),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.text());
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/kb",
            &[("authorization", &bearer(KEY))],
            Some(&body),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/kb/trips/ingest",
            &[("authorization", &bearer(OTHER))],
            None,
        ),
    )
    .await;
    assert_eq!(a.status, 403);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn the_lab_lists_charts_and_benchmarks_runs() {
    let dir = common::kbs::temp("web-lab");
    let db = dir.join("runs.sqlite");
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            runs_db: Some(db.clone()),
            ..Default::default()
        },
    );
    assert!(
        get(&t.router, "/ui/lab")
            .await
            .text()
            .contains("No runs yet")
    );
    // A perplexity run with a running estimate, as `lar eval perplexity` records one.
    let store = lar_lab::runs::RunStore::open(&db).unwrap();
    let eval = store
        .start(&lar_lab::runs::NewRun {
            kind: "eval.perplexity".into(),
            model: Some("say:latest".into()),
            model_sha256: None,
            params: json!({"ctx": 512}),
            machine: json!({"cpu": "test"}),
            lineage: json!(null),
        })
        .unwrap();
    for (step, v) in [(1, 30.0), (2, 24.0), (3, 21.5)] {
        store.log(&eval, "perplexity", Some(step), v).unwrap();
    }
    store.finish(&eval, None).unwrap();

    let token = page_token(&t).await;
    let h = [("x-lar-csrf", token.as_str())];
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/lab/bench",
            &h,
            Some(&json!({"model": "say", "prompt_tokens": 8, "gen_tokens": 4})),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let b = a.json();
    assert!(
        b["gen_tps"].as_f64().unwrap() > 0.0 && b["prompt_tps"].as_f64().unwrap() > 0.0,
        "{b}"
    );
    let bench = b["id"].as_str().unwrap().to_string();
    let run = store.get(&bench).unwrap();
    assert_eq!(run.kind, "bench");
    assert_eq!(run.model.as_deref(), Some("say:latest"));
    assert!(run.metrics.contains_key("gen_tps") && run.metrics.contains_key("prompt_tps"));

    for bad in [
        json!({"model": "say", "gen_tokens": 0}),
        json!({"model": "say", "prompt_tokens": 100000}),
        json!({"model": "say", "prompt_tokens": 4000, "gen_tokens": 96}),
        json!({"model": "say", "turbo": true}),
    ] {
        let a = send(&t.router, req("POST", "/ui/api/lab/bench", &h, Some(&bad))).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
    }

    let html = get(&t.router, "/ui/lab").await.text();
    assert!(html.contains(&bench) && html.contains(&eval), "{html}");
    assert!(
        html.contains("/ui/lab/chart.svg?metric=gen_tps"),
        "the chart of tokens/s by default"
    );
    let only = get(&t.router, "/ui/lab?kind=eval").await.text();
    assert!(
        only.contains(&eval) && !only.contains(&bench),
        "filtered by kind"
    );
    let chart = get(&t.router, "/ui/lab/chart.svg?metric=gen_tps").await;
    assert_eq!(chart.headers["content-type"], "image/svg+xml");
    assert!(
        chart.text().starts_with("<svg") && chart.text().contains("say:latest"),
        "{}",
        chart.text()
    );
    let page = get(&t.router, &format!("/ui/lab/{eval}")).await.text();
    assert!(
        page.contains("21.500") && page.contains("history.svg?metric=perplexity"),
        "{page}"
    );
    let curve = get(
        &t.router,
        &format!("/ui/lab/{eval}/history.svg?metric=perplexity"),
    )
    .await
    .text();
    assert!(
        curve.starts_with("<svg") && curve.contains("step"),
        "{curve}"
    );
    assert_eq!(get(&t.router, "/ui/lab/ffffffffffff").await.status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn files_dropped_into_a_chat_are_read_and_given_to_the_model() {
    let t = app();
    let token = page_token(&t).await;
    let raw = |name: &str, bytes: Vec<u8>| {
        let mut r = req(
            "POST",
            "/ui/api/extract",
            &[("x-lar-csrf", token.as_str()), ("x-file-name", name)],
            None,
        );
        *r.body_mut() = Body::from(bytes);
        r
    };
    let files: std::collections::HashMap<_, _> =
        lar_testdata::corpus::files().into_iter().collect();
    let a = send(&t.router, raw("lease.pdf", files["lease.pdf"].clone())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let pdf = a.json();
    let text = pdf["text"].as_str().unwrap();
    assert!(
        text.contains("[page 2]") && text.contains("sixty days"),
        "{text}"
    );
    let a = send(
        &t.router,
        raw("r%C3%A9sum%C3%A9.md", b"# Skills\n\nRust.".to_vec()),
    )
    .await;
    assert_eq!(a.json()["name"], "résumé.md");
    for (name, bytes, why) in [
        ("photo.jpg", vec![0xff, 0xd8], "does not read this kind"),
        ("broken.pdf", b"%PDF-1.4 nonsense".to_vec(), "broken.pdf"),
        ("empty.txt", Vec::new(), "no text"),
    ] {
        let a = send(&t.router, raw(name, bytes)).await;
        assert_eq!(a.status, 400, "{name}: {}", a.text());
        assert!(a.text().contains(why), "{name}: {}", a.text());
    }
    let mut no_name = raw("x.txt", b"hi".to_vec());
    no_name.headers_mut().remove("x-file-name");
    assert_eq!(send(&t.router, no_name).await.status, 400);

    // The context the model is given: whole for a small file, excerpts about the question for a long one.
    let small = json!({"model": "say", "question": "rent?", "files": [{"name": "lease.pdf", "text": text}]});
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/context",
            &[("x-lar-csrf", &token)],
            Some(&small),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["whole"], true);
    assert!(a.json()["system"].as_str().unwrap().contains("sixty days"));
    let long: String = (0..3000)
        .map(|i| format!("Line {i} is about gardens. "))
        .collect::<String>()
        + "The boiler pressure should be 1.5 bar. "
        + &(0..3000)
            .map(|i| format!("Line {i} is about gardens. "))
            .collect::<String>();
    let big = json!({"model": "say", "question": "What should the boiler pressure be?", "files": [{"name": "house.txt", "text": long}]});
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/context",
            &[("x-lar-csrf", &token)],
            Some(&big),
        ),
    )
    .await;
    let c = a.json();
    assert_eq!(c["whole"], false, "{c}");
    assert!(
        c["system"]
            .as_str()
            .unwrap()
            .contains("boiler pressure should be 1.5 bar"),
        "{c}"
    );
    assert!(
        c["system"].as_str().unwrap().chars().count() < long.len() / 4,
        "within the budget"
    );
    let bad =
        json!({"model": "say", "question": "x", "files": [{"name": "a", "text": "b", "size": 1}]});
    assert_eq!(
        send(
            &t.router,
            req(
                "POST",
                "/ui/api/context",
                &[("x-lar-csrf", &token)],
                Some(&bad)
            )
        )
        .await
        .status,
        400
    );

    // Kept with the conversation, shown on its page.
    let conv = json!({"messages": [], "attachments": [{"name": "lease.pdf", "text": text}]});
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/chats",
            &[("x-lar-csrf", &token)],
            Some(&conv),
        ),
    )
    .await;
    let id = a.json()["ids"][0].as_str().unwrap().to_string();
    assert!(
        get(&t.router, &format!("/ui/c/{id}"))
            .await
            .text()
            .contains("data-name=\"lease.pdf\"")
    );
}

#[tokio::test]
async fn another_sites_pages_cannot_drive_the_server() {
    let t = app();
    // A "simple" cross-site request (text/plain, no preflight) that would delete a model.
    let evil = Request::delete("/api/delete")
        .header("host", "127.0.0.1:11434")
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"model": "say"}"#))
        .unwrap();
    let a = send(&t.router, evil).await;
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("another site"));
    let a = send(
        &t.router,
        req(
            "POST",
            "/v1/chat/completions",
            &[
                ("host", "localhost:11434"),
                ("origin", "http://localhost:1"),
            ],
            Some(&json!({})),
        ),
    )
    .await;
    assert_eq!(a.status, 403, "another port is another site");
    // The server's own pages, and clients that send no Origin, go through.
    let own = send(
        &t.router,
        req(
            "GET",
            "/api/tags",
            &[
                ("host", "127.0.0.1:11434"),
                ("origin", "http://127.0.0.1:11434"),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(own.status, 200);
    assert_eq!(get(&t.router, "/api/tags").await.status, 200);
    // An origin named by --cors-origin is let in.
    let open = app_with(
        ManagerConfig::default(),
        ServerConfig {
            cors_origins: vec!["http://app.example".into()],
            ..Default::default()
        },
    );
    let a = send(
        &open.router,
        req(
            "GET",
            "/api/tags",
            &[
                ("host", "127.0.0.1:11434"),
                ("origin", "http://app.example"),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["access-control-allow-origin"],
        "http://app.example"
    );
}

/// A conversation store that cannot be opened (here a directory where the database file should be) is an error on
/// every page that lists conversations (its cause in the server's log), never an empty list that looks like lost
/// history.
#[tokio::test]
async fn an_unreadable_conversation_store_is_an_error_not_an_empty_list() {
    let dir = common::kbs::temp("web-broken-store");
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            ui_db: Some(dir),
            ..Default::default()
        },
    );
    for path in ["/ui", "/ui/chats", "/ui/chats?q=anything"] {
        let a = get(&t.router, path).await;
        assert_eq!(a.status, 500, "{path}: {}", a.text());
        assert!(
            a.text().contains("internal error (see the server's log)"),
            "{path}: {}",
            a.text()
        );
        let t = a.text();
        assert!(
            !t.contains("<li>") && !t.contains("<li "),
            "{path}: no list: {t}"
        );
    }
}
