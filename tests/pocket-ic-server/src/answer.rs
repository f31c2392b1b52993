//! What a handler answers: a status and a body. Errors are JSON `{"message": ...}`, the shape both PocketIC clients
//! read as a server error.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// `Content-Encoding: gzip` (a blob stored compressed).
    pub gzip: bool,
}

impl Answer {
    /// 200 with `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Self {
        Self::json_with_status(200, value)
    }

    pub fn json_with_status<T: Serialize>(status: u16, value: &T) -> Self {
        Self {
            status,
            body: serde_json::to_vec(value).expect("REST types serialize to JSON"),
            content_type: "application/json",
            gzip: false,
        }
    }

    pub fn bytes(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            body,
            content_type: "application/octet-stream",
            gzip: false,
        }
    }

    pub fn text(text: String) -> Self {
        Self {
            status: 200,
            body: text.into_bytes(),
            content_type: "text/plain; charset=utf-8",
            gzip: false,
        }
    }
}

/// An error answer: a status and a message that names what failed.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    /// 400: the request is malformed or names something that does not exist.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// 403: as PocketIC answers an ingress status asked for by another caller.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            message: message.into(),
        }
    }

    /// 404: no such endpoint or instance.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }

    /// 501: a PocketIC feature this server does not implement.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            status: 501,
            message: message.into(),
        }
    }

    /// The same error, its message prefixed with the endpoint it came from.
    pub fn at(self, endpoint: &str) -> Self {
        Self {
            message: format!("{endpoint}: {}", self.message),
            ..self
        }
    }
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        Answer::json_with_status(e.status, &serde_json::json!({ "message": e.message }))
    }
}

/// Parses a JSON request body.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
