//! The web UI's routes with `oneshot`: every page and fragment, the assets (gzip, hashed URL, ETag), the
//! conversations API (create, save, search, rename, export, import, delete, per key), CSRF on every state change,
//! signing in on a keyed server, and hostile text (model output, titles, file names) rendered inert. (Documents,
//! files in a chat, the lab and cross-site requests: tests/web_more.rs.)

mod common;

use axum::body::Body;
use axum::http::Request;
use common::ui::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_browser_at_the_root_is_sent_to_the_ui_and_clients_still_see_ollama() {
    let t = app();
    let a = send(
        &t.router,
        req(
            "GET",
            "/",
            &[("accept", "text/html,application/xhtml+xml")],
            None,
        ),
    )
    .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.headers["location"], "/ui");
    assert_eq!(get(&t.router, "/").await.text(), "Ollama is running");
}

#[tokio::test]
async fn every_page_and_fragment_renders() {
    let t = app();
    let a = get(&t.router, "/ui").await;
    assert_eq!(a.status, 200);
    let html = a.text();
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        a.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(
        html.contains("<option value=\"say:latest\""),
        "chat models offered: {html}"
    );
    assert!(
        !html.contains("value=\"embed:latest\""),
        "embedding models are not chat models"
    );
    assert!(html.contains("/ui/assets/ui.js?v="), "{html}");
    assert!(html.contains("id=\"conversation\""));

    let a = get(&t.router, "/ui/models").await;
    assert_eq!(a.status, 200);
    for m in ["say:latest", "embed:latest", "embedding"] {
        assert!(a.text().contains(m), "{m} on the models page");
    }
    let a = get(&t.router, "/ui/models/say:latest").await;
    assert_eq!(a.status, 200);
    let html = a.text();
    assert!(
        html.contains("Will it fit here?") && html.contains("no memory plan"),
        "{html}"
    );
    assert!(html.contains(&"ab".repeat(32)), "the whole sha256");
    assert_eq!(
        get(&t.router, "/ui/models/nothing:latest").await.status,
        404
    );
    let a = get(&t.router, "/ui/models/say:latest?ctx=abc").await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("not a positive whole number"));

    t.load("say").await;
    let a = get(&t.router, "/ui/server").await;
    assert_eq!(a.status, 200);
    assert!(
        a.text().contains("data-model=\"say:latest\""),
        "{}",
        a.text()
    );
    let a = get(&t.router, "/ui/server/live").await;
    assert!(a.text().contains("1 model(s) loaded"), "{}", a.text());
    assert!(!a.text().contains("<html"), "a fragment, not a page");

    let a = get(&t.router, "/ui/chats").await;
    assert!(a.text().contains("No conversations"));
}

/// Adapters served with a model are offered by the picker as `MODEL+NAME`, and listed by the APIs the same way;
/// one the model was not loaded with is a 404 that names the adapters it has.
#[tokio::test]
async fn served_adapters_are_offered_as_models() {
    let catalog = ScriptedCatalog {
        adapters: vec![lar_server::catalog::ServedAdapter {
            base: "say:latest".into(),
            name: "tone".into(),
            path: "/nowhere".into(),
        }],
        ..Default::default()
    };
    let t = app_of(catalog, Default::default(), Default::default());
    let html = get(&t.router, "/ui").await.text();
    assert!(html.contains("<option value=\"say:latest+tone\""), "{html}");
    let models = get(&t.router, "/v1/models").await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"say:latest+tone"), "{ids:?}");
    let tags = get(&t.router, "/api/tags").await.json();
    assert!(
        tags["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "say:latest+tone")
    );
    let one = get(&t.router, "/v1/models/say+tone").await;
    assert_eq!(one.status, 200);
    assert_eq!(get(&t.router, "/v1/models/say+other").await.status, 404);
    let list = get(&t.router, "/lora-adapters").await.json();
    assert_eq!(list[0]["name"], "tone");
    assert_eq!(list[0]["model"], "say:latest");
    // The scripted engine was loaded with no adapter: naming one is a 404 saying what the model has.
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "say+tone", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert!(a.text().contains("no adapter 'tone'"), "{}", a.text());
}

#[tokio::test]
async fn assets_are_embedded_gzipped_and_cached_by_hash() {
    let t = app();
    let html = get(&t.router, "/ui").await.text();
    let at = html
        .find("/ui/assets/ui.css?v=")
        .expect("the stylesheet's URL");
    let url = html[at..].split('"').next().unwrap().to_string();
    let a = send(
        &t.router,
        req("GET", &url, &[("accept-encoding", "gzip, br")], None),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-encoding"], "gzip");
    assert!(
        a.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&a.body[..]), &mut raw)
        .unwrap();
    assert!(
        raw.contains("prefers-color-scheme: dark"),
        "the stylesheet itself"
    );
    let etag = a.headers["etag"].to_str().unwrap().to_string();
    let b = send(
        &t.router,
        req("GET", &url, &[("if-none-match", &etag)], None),
    )
    .await;
    assert_eq!(b.status, 304);
    let plain = get(&t.router, "/ui/assets/ui.js").await;
    assert_eq!(plain.status, 200);
    assert!(plain.headers.get("content-encoding").is_none());
    assert_eq!(
        plain.headers["cache-control"], "no-cache",
        "an unhashed URL is revalidated"
    );
    assert!(plain.text().contains("/v1/chat/completions"));
    assert_eq!(get(&t.router, "/ui/assets/../Cargo.toml").await.status, 404);
    let total: usize = lar_server::web::assets::all()
        .iter()
        .map(|a| a.gzip.len())
        .sum();
    assert!(total < 300 * 1024, "assets {total} bytes gzipped");
}

#[tokio::test]
async fn conversations_are_kept_searched_renamed_exported_imported_and_deleted() {
    let t = app();
    let token = page_token(&t).await;
    let h = [("x-lar-csrf", token.as_str())];
    let conv = json!({
        "model": "say:latest", "system": "Be brief.", "params": {"temperature": 0.2, "max_tokens": 9},
        "messages": [
            {"role": "user", "content": "What is a quokka?"},
            {"role": "assistant", "content": "A **small** marsupial.\n\n```py\nprint('hi')\n```", "model": "say:latest",
             "reasoning": "They ask about animals."},
        ]
    });
    let a = send(&t.router, req("POST", "/ui/api/chats", &h, Some(&conv))).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["ids"][0].as_str().unwrap().to_string();

    let page = get(&t.router, &format!("/ui/c/{id}")).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("<strong>small</strong>"),
        "Markdown rendered: {html}"
    );
    assert!(
        html.contains("<span class=\"kw\">print</span>") || html.contains("language-py"),
        "{html}"
    );
    assert!(html.contains("Thinking") && html.contains("They ask about animals."));
    assert!(
        html.contains("What is a quokka?</a>"),
        "listed by its first question: {html}"
    );
    assert!(
        html.contains("value=\"0.2\"") && html.contains("Be brief."),
        "its settings"
    );
    let frag = get(&t.router, &format!("/ui/c/{id}/messages")).await.text();
    assert!(frag.contains("data-index=\"1\"") && !frag.contains("<html"));

    // Search finds it by a word of its answer; another word finds nothing.
    assert!(
        get(&t.router, "/ui/chats?q=MARSUPIAL")
            .await
            .text()
            .contains(&id)
    );
    assert!(
        get(&t.router, "/ui/chats?q=wombat")
            .await
            .text()
            .contains("No conversations")
    );
    assert!(
        get(&t.router, "/ui/chats?q=%25")
            .await
            .text()
            .contains("No conversations"),
        "% is literal"
    );

    // Saved whole, then renamed.
    let mut c2 = conv.clone();
    c2["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "user", "content": "And a wombat?"}));
    let a = send(
        &t.router,
        req("PUT", &format!("/ui/api/chats/{id}"), &h, Some(&c2)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = send(
        &t.router,
        req(
            "PATCH",
            &format!("/ui/api/chats/{id}"),
            &h,
            Some(&json!({"title": "Marsupials"})),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let one = get(&t.router, &format!("/ui/api/chats/{id}")).await.json();
    assert_eq!(one["title"], "Marsupials");
    assert_eq!(one["messages"].as_array().unwrap().len(), 3);
    assert_eq!(one["params"]["max_tokens"], 9);

    // Export all, import it back: a second copy with a new id.
    let all = get(&t.router, "/ui/api/chats").await.json();
    assert_eq!(all["conversations"].as_array().unwrap().len(), 1);
    let a = send(&t.router, req("POST", "/ui/api/chats", &h, Some(&all))).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let copy = a.json()["ids"][0].as_str().unwrap().to_string();
    assert_ne!(copy, id);
    assert_eq!(
        get(&t.router, &format!("/ui/api/chats/{copy}"))
            .await
            .json()["messages"],
        one["messages"]
    );

    // Bad imports are refused whole, saying where.
    let bad = json!({"conversations": [conv, {"messages": [{"role": "user", "content": "x", "colour": "red"}]}]});
    let a = send(&t.router, req("POST", "/ui/api/chats", &h, Some(&bad))).await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("colour"), "{}", a.text());
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/chats",
            &h,
            Some(&json!({"messages": [{"role": "robot", "content": "x"}]})),
        ),
    )
    .await;
    assert_eq!(a.status, 400);
    let long = json!({"title": "x".repeat(201)});
    assert_eq!(
        send(&t.router, req("POST", "/ui/api/chats", &h, Some(&long)))
            .await
            .status,
        400
    );
    assert_eq!(
        get(&t.router, "/ui/api/chats").await.json()["conversations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let a = send(
        &t.router,
        req("DELETE", &format!("/ui/api/chats/{id}"), &h, None),
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(get(&t.router, &format!("/ui/c/{id}")).await.status, 404);
    assert_eq!(
        send(
            &t.router,
            req("DELETE", &format!("/ui/api/chats/{id}"), &h, None)
        )
        .await
        .status,
        404
    );
    assert_eq!(get(&t.router, "/ui/c/..%2F..%2Fetc").await.status, 404);
}

#[tokio::test]
async fn state_changes_without_the_pages_token_are_refused() {
    let t = app();
    let token = page_token(&t).await;
    let c = json!({"messages": []});
    let a = send(&t.router, req("POST", "/ui/api/chats", &[], Some(&c))).await;
    assert_eq!(a.status, 403);
    assert!(a.text().contains("CSRF"));
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/chats",
            &[("x-lar-csrf", "guess")],
            Some(&c),
        ),
    )
    .await;
    assert_eq!(a.status, 403);
    let a = send(
        &t.router,
        req("POST", "/ui/api/chats", &[("x-lar-csrf", &token)], Some(&c)),
    )
    .await;
    assert_eq!(a.status, 201);
    // Reading needs no token.
    assert_eq!(get(&t.router, "/ui/api/chats").await.status, 200);
}

/// Signs in with `key`; returns the cookie header to send.
async fn sign_in(t: &TestApp, key: &str) -> String {
    let form = format!("key={key}&next=%2Fui%2Fmodels");
    let a = send(
        &t.router,
        Request::post("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(a.headers["location"], "/ui/models");
    let set = a.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(key),
        "the cookie is a session token, never the key"
    );
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn a_keyed_server_asks_the_browser_to_sign_in() {
    let t = keyed();
    let a = send(
        &t.router,
        req("GET", "/ui/c/x?y=1", &[("accept", "text/html")], None),
    )
    .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.headers["location"], "/ui/login?next=/ui/c/x%3Fy%3D1");
    assert_eq!(
        get(&t.router, "/ui/api/chats").await.status,
        401,
        "no page, no redirect: a 401"
    );
    let login = get(&t.router, "/ui/login").await;
    assert_eq!(login.status, 200);
    assert!(login.text().contains("type=\"password\""));
    assert_eq!(
        get(&t.router, "/ui/assets/ui.css").await.status,
        200,
        "assets are public"
    );

    let wrong = send(
        &t.router,
        Request::post("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("key=nope"))
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.headers.get("set-cookie").is_none());
    assert!(wrong.text().contains("not one this server accepts"));

    let cookie = sign_in(&t, KEY).await;
    let page = send(&t.router, req("GET", "/ui", &[("cookie", &cookie)], None)).await;
    assert_eq!(page.status, 200);
    let token = csrf_of(&page.text());
    assert!(page.text().contains("Sign out"));
    let c = json!({"messages": [{"role": "user", "content": "mine"}]});
    let a = send(
        &t.router,
        req("POST", "/ui/api/chats", &[("cookie", &cookie)], Some(&c)),
    )
    .await;
    assert_eq!(a.status, 403, "a cookie alone does not change anything");
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/api/chats",
            &[("cookie", &cookie), ("x-lar-csrf", &token)],
            Some(&c),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());

    // The API with the session: a chat streams; without the token it is refused.
    let body = json!({"model": "say:latest", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
    let a = send(
        &t.router,
        req(
            "POST",
            "/v1/chat/completions",
            &[("cookie", &cookie)],
            Some(&body),
        ),
    )
    .await;
    assert_eq!(a.status, 403);
    let a = send(
        &t.router,
        req(
            "POST",
            "/v1/chat/completions",
            &[("cookie", &cookie), ("x-lar-csrf", &token)],
            Some(&body),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());

    // Conversations are per key: the other key sees none of them; the first sees its own.
    let other = sign_in(&t, OTHER).await;
    let a = send(
        &t.router,
        req("GET", "/ui/api/chats", &[("cookie", &other)], None),
    )
    .await;
    assert_eq!(a.json()["conversations"], json!([]));
    let a = send(
        &t.router,
        req(
            "GET",
            "/ui/api/chats",
            &[("authorization", &format!("Bearer {KEY}"))],
            None,
        ),
    )
    .await;
    assert_eq!(a.json()["conversations"].as_array().unwrap().len(), 1);

    // Signing out ends the session.
    let a = send(
        &t.router,
        req(
            "POST",
            "/ui/logout",
            &[("cookie", &cookie), ("x-lar-csrf", &token)],
            None,
        ),
    )
    .await;
    assert_eq!(a.status, 303);
    assert_eq!(
        send(
            &t.router,
            req("GET", "/ui/api/chats", &[("cookie", &cookie)], None)
        )
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn sign_in_goes_back_only_to_this_ui() {
    let t = keyed();
    for next in [
        "//evil.example/x",
        "https://evil.example",
        "/ui//evil",
        "/api/tags",
    ] {
        let form = format!(
            "key={KEY}&next={}",
            lar_server::web::layout::url_escape(next)
        );
        let a = send(
            &t.router,
            Request::post("/ui/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
        assert_eq!(a.headers["location"], "/ui", "{next}");
    }
}

#[tokio::test]
async fn hostile_text_renders_inert() {
    let t = app();
    let token = page_token(&t).await;
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>[link](javascript:alert(3))</script><!--";
    let c = json!({
        "title": evil, "model": evil, "system": evil,
        "messages": [
            {"role": "user", "content": evil},
            {"role": "assistant", "content": evil, "reasoning": evil, "model": evil,
             "tool_calls": [{"id": "1", "type": "function", "function": {"name": evil, "arguments": evil}}]},
        ]
    });
    let a = send(
        &t.router,
        req("POST", "/ui/api/chats", &[("x-lar-csrf", &token)], Some(&c)),
    )
    .await;
    assert_eq!(a.status, 201);
    let id = a.json()["ids"][0].as_str().unwrap().to_string();
    for path in [
        format!("/ui/c/{id}"),
        format!("/ui/c/{id}/messages"),
        "/ui/chats".into(),
        "/ui".into(),
    ] {
        let html = get(&t.router, &path).await.text();
        for bad in [
            "<script>alert",
            "<img src=x",
            "href=\"javascript",
            "</script><!--",
        ] {
            assert!(!html.contains(bad), "{bad} on {path}");
        }
    }
    // The conversation's JSON island stays one element.
    let html = get(&t.router, &format!("/ui/c/{id}")).await.text();
    let island = html.split("id=\"conversation\"").nth(1).unwrap();
    let island = &island[..island.find("</script>").unwrap()];
    assert!(island.contains("\\u003cscript\\u003e"), "{island}");
}
