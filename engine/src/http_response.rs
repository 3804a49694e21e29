//! The JSON bodies of HTTP API answers that every layer shares.
//!
//! The engine answers API requests itself, but the shell refuses some requests before they
//! are whole (header too large, chunked body, bad `Content-Length`…). Those refusals still
//! speak the API's language, so their body comes from here rather than being spelled in the
//! shell: one shape, `{"error": "…"}`, for every error a client can get.

/// The body of an HTTP error answer: `{"error": message}`.
pub fn error_body(message: &str) -> Vec<u8> {
    serde_json::json!({ "error": message })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_one_json_object_with_the_message_escaped() {
        assert_eq!(
            error_body("request body too large"),
            br#"{"error":"request body too large"}"#
        );
        assert_eq!(error_body("a \"b\"\n"), br#"{"error":"a \"b\"\n"}"#);
    }
}
