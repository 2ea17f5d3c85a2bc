//! One error type, [`ApiError`], answered in the caller's API shape: OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`, Ollama's `{"error": "..."}` or Anthropic's
//! `{"type": "error", "error": {"type", "message"}}`, with the right status and, for
//! a 503, `Retry-After`. Internal failures are logged with their detail and answered without it; bad user input is
//! not an error of the server and is logged at debug level only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API's error shape to answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Ollama,
    Anthropic,
}

impl Shape {
    /// The shape of the API a path belongs to (`/v1/messages...` is Anthropic's, the rest of `/v1/...` and
    /// llama-server's helpers OpenAI's, everything else Ollama's).
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/messages") {
            Shape::Anthropic
        } else if path.starts_with("/v1/")
            || matches!(path, "/tokenize" | "/detokenize" | "/apply-template")
        {
            Shape::OpenAi
        } else {
            Shape::Ollama
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The field at fault, when there is one (OpenAI's `param`).
    pub param: Option<String>,
    /// OpenAI's `code` (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    /// Seconds, for a 503.
    pub retry_after: Option<u64>,
    pub shape: Shape,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            shape: Shape::OpenAi,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A field out of range or of the wrong kind, named in the message and in `param`.
    pub fn field(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message).param(param)
    }

    /// A field Lar does not implement: refused rather than ignored.
    pub fn unsupported(param: &str, why: &str) -> Self {
        Self::field(param, format!("'{param}' is not supported {why}"))
            .code("unsupported_parameter")
    }

    pub fn model_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("model '{name}' not found (see GET /v1/models or `lar list`)"),
        )
        .param("model")
        .code("model_not_found")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (send Authorization: Bearer KEY or X-Api-Key: KEY)",
        )
        .code("invalid_api_key")
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, message);
        e.retry_after = Some(retry_after);
        e
    }

    /// A failure of the server itself: the detail goes to the log, the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the server's log)",
        )
    }

    pub fn param(mut self, p: impl Into<String>) -> Self {
        self.param = Some(p.into());
        self
    }

    pub fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }

    pub fn shape(mut self, s: Shape) -> Self {
        self.shape = s;
        self
    }

    /// OpenAI's `type` for this status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 | 400 | 413 | 422 => "invalid_request_error",
            429 => "rate_limit_error",
            503 => "unavailable_error",
            _ => "server_error",
        }
    }

    /// Anthropic's error `type` for this status.
    fn anthropic_kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The body as JSON (also used for an error line inside a stream).
    pub fn body(&self) -> serde_json::Value {
        match self.shape {
            Shape::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }}),
            Shape::Ollama => json!({"error": self.message}),
            Shape::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_kind(),
                "message": self.message,
            }}),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::debug!(status = self.status.as_u16(), "{}", self.message);
        }
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// How the engine's refusals reach a client: what the caller got wrong is a 400 naming the field; what failed in
/// the engine is a 500 without its internals.
impl From<lar_engine::Error> for ApiError {
    fn from(e: lar_engine::Error) -> Self {
        use lar_engine::Error as E;
        match e {
            E::PromptTooLong { .. } => {
                Self::bad_request(e.to_string()).code("context_length_exceeded")
            }
            E::EmptyPrompt => Self::bad_request(e.to_string()),
            E::TokenOutOfVocab { .. } => Self::bad_request(e.to_string()),
            E::Param(p) => Self::field(p.param, p.to_string()),
            E::NoTemplate | E::Invalid(_) => Self::bad_request(e.to_string()),
            E::Tokenizer(lar_tokenizer::Error::Template(_)) => {
                Self::bad_request(format!("the chat template failed on these messages: {e}"))
            }
            E::EngineStopped => Self::unavailable("the model is unloading; try again", 1),
            other => Self::internal(other),
        }
    }
}

/// A store error: an unknown name is a 404, a bad name a 400, the rest ours.
impl From<lar_store::Error> for ApiError {
    fn from(e: lar_store::Error) -> Self {
        use lar_store::Error as E;
        match &e {
            E::NotFound(name) => Self::model_not_found(name),
            E::BadName(_) | E::Invalid(_) => Self::bad_request(e.to_string()).param("model"),
            E::Http { .. } => Self::new(StatusCode::BAD_GATEWAY, e.to_string()),
            _ => Self::internal(e),
        }
    }
}
