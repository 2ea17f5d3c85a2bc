//! Reading a request body: UTF-8, then a JSON object, then every key checked against the fields the route knows
//! (an unknown field is a 400 that names it, never silently ignored), then typed views of it, each error naming
//! the field's path (`messages[2].content: invalid type ...`).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
pub use lar_types::json_kind as kind;

/// The body as a JSON object.
pub fn object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, not {}",
            kind(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Refuses a key that is in none of `known`.
pub fn check_fields(obj: &Map<String, Value>, known: &[&[&str]]) -> ApiResult<()> {
    for k in obj.keys() {
        if !known.iter().any(|list| list.contains(&k.as_str())) {
            return Err(ApiError::field(
                k,
                format!(
                    "unknown field '{k}' (Lar refuses fields it does not implement rather than ignoring them)"
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses any of `fields` that is present and not null, saying why.
pub fn refuse(obj: &Map<String, Value>, fields: &[&str], why: &str) -> ApiResult<()> {
    match fields
        .iter()
        .find(|f| obj.get(**f).is_some_and(|v| !v.is_null()))
    {
        Some(f) => Err(ApiError::unsupported(f, why)),
        None => Ok(()),
    }
}

/// A typed view of the object; a wrong type is a 400 naming the field's path.
pub fn typed<T: DeserializeOwned>(obj: &Map<String, Value>) -> ApiResult<T> {
    typed_value(Value::Object(obj.clone()))
}

pub fn typed_value<T: DeserializeOwned>(v: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            ApiError::bad_request(inner)
        } else {
            ApiError::field(&path, format!("{path}: {inner}"))
        }
    })
}

/// `v` as a count that must be at least `min`, named `field` in the error.
pub fn count(field: &str, v: i64, min: i64) -> ApiResult<usize> {
    if v < min {
        return Err(ApiError::field(
            field,
            format!("{field} must be at least {min} (got {v})"),
        ));
    }
    usize::try_from(v).map_err(|_| ApiError::field(field, format!("{field} is too large ({v})")))
}

/// An optional number field: absent or null is `None`; anything but a number is a 400 naming it.
pub fn opt_f64(obj: &Map<String, Value>, k: &str) -> ApiResult<Option<f64>> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(ApiError::field(
            k,
            format!("{k} must be a number, not {}", kind(v)),
        )),
    }
}

/// An optional whole-number field, as [`opt_f64`].
pub fn opt_i64(obj: &Map<String, Value>, k: &str) -> ApiResult<Option<i64>> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::field(k, format!("{k} must be a whole number"))),
        Some(v) => Err(ApiError::field(
            k,
            format!("{k} must be a number, not {}", kind(v)),
        )),
    }
}

/// An optional boolean field, as [`opt_f64`].
pub fn opt_bool(obj: &Map<String, Value>, k: &str) -> ApiResult<Option<bool>> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::field(
            k,
            format!("{k} must be a boolean, not {}", kind(v)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_not_objects_are_named() {
        let e = |b: &'static [u8]| object(&Bytes::from_static(b)).unwrap_err().message;
        assert!(e(b"\xff\xfe").contains("not valid UTF-8"));
        assert!(e(b"").contains("empty"));
        assert!(e(b"[1]").contains("not an array"));
        assert!(e(b"{\"a\":").contains("not valid JSON"));
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let obj = object(&Bytes::from_static(br#"{"model":"m","tempurature":1}"#)).unwrap();
        let e = check_fields(&obj, &[&["model", "temperature"]]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tempurature"));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: Option<Vec<u32>>,
        }
        let obj = object(&Bytes::from_static(br#"{"n":[1,"x"]}"#)).unwrap();
        let e = typed::<T>(&obj).unwrap_err();
        assert!(e.message.starts_with("n[1]: invalid type"), "{}", e.message);
    }
}
