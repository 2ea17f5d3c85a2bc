//! cargo-fuzz target: any bytes as the body of any route of the server (the first byte picks the route), on the
//! scripted models of `lar_server::testing`: never a panic, never a 500, always a complete answer.
//! Run: `cd fuzz && cargo fuzz run api -- -max_total_time=600`.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ROUTES: [&str; 13] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/completions",
    "/v1/embeddings",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/copy",
    "/api/delete",
    "/api/pull",
];

fn world() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static W: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let router = rt.block_on(async {
            let catalog = Arc::new(lar_server::testing::ScriptedCatalog::default());
            let manager = lar_server::Manager::new(catalog, Default::default());
            lar_server::app(lar_server::AppState::new(manager, Default::default()))
        });
        (rt, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let path = ROUTES[which as usize % ROUTES.len()];
    let method = if path == "/api/delete" { "DELETE" } else { "POST" };
    let (rt, router) = world();
    let status = rt.block_on(async {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body.to_vec()))
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("a complete body");
        status
    });
    assert_ne!(status.as_u16(), 500, "{path}");
});
