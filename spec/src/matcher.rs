//! Matching received JSON against a vector's pattern, with a precise path on mismatch.
//!
//! Patterns are JSON where:
//! - a string that is exactly `{{any}}`, `{{string}}`, `{{number}}` or `{{re:REGEX}}` matches
//!   by kind; as an object value, `{{absent}}` means the key must not be there and
//!   `{{absent_or_null}}` that it is missing or null, `{{optional_int}}` that it is missing,
//!   null or an integer (the Pusher documentation's optional `code` of `pusher:error`);
//! - `{{socket_id:NAME}}` equals NAME's socket id, or captures it when not yet known;
//! - other strings are templated (`{{app_key}}`, …) and compared exactly;
//! - `{"$json": P}` matches a string holding JSON that matches P (Pusher's double encoding);
//! - `{"$maybe_json": P}` matches what P matches, or a string holding JSON that matches P: a
//!   `data` field pusher-js decodes either way, where the Pusher documentation fixes neither;
//! - `{"$unordered": [..]}` matches an array in any order;
//! - objects match exactly the same keys unless they carry `"$partial": true`.

use crate::template::Context;
use regex::Regex;
use serde_json::Value;

/// Checks `actual` against `pattern`; on failure says where and how they differ.
pub fn check(pattern: &Value, actual: &Value, ctx: &mut Context) -> Result<(), String> {
    at(pattern, actual, ctx, "$")
}

fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 300 {
        return text;
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn at(pattern: &Value, actual: &Value, ctx: &mut Context, path: &str) -> Result<(), String> {
    let mismatch = |what: String| Err(format!("at {path}: {what}"));
    match pattern {
        Value::String(p) => string_pattern(p, actual, ctx, path),
        Value::Object(map) if map.len() == 1 && map.contains_key("$json") => {
            let Value::String(text) = actual else {
                return mismatch(format!(
                    "expected a JSON-encoded string, got {}",
                    show(actual)
                ));
            };
            let inner: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return mismatch(format!("string {} is not JSON: {e}", show(actual))),
            };
            at(&map["$json"], &inner, ctx, &format!("{path}<json>"))
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("$maybe_json") => {
            let want = &map["$maybe_json"];
            let decoded = match actual {
                Value::String(text) if !want.is_string() => serde_json::from_str(text).ok(),
                _ => None,
            };
            match decoded {
                Some(inner) => at(want, &inner, ctx, &format!("{path}<json>")),
                None => at(want, actual, ctx, path),
            }
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("$unordered") => {
            let (Some(want), Some(got)) = (map["$unordered"].as_array(), actual.as_array()) else {
                return mismatch(format!("expected an array, got {}", show(actual)));
            };
            if want.len() != got.len() {
                return mismatch(format!(
                    "expected {} elements in any order, got {}",
                    want.len(),
                    show(actual)
                ));
            }
            let mut unused: Vec<&Value> = got.iter().collect();
            for w in want {
                let found = unused.iter().position(|g| {
                    let mut probe = ctx.clone();
                    at(w, g, &mut probe, path).is_ok()
                });
                match found {
                    Some(i) => {
                        let g = unused.remove(i);
                        at(w, g, ctx, path)?;
                    }
                    None => {
                        return mismatch(format!(
                            "no element matches {} in {}",
                            show(w),
                            show(actual)
                        ))
                    }
                }
            }
            Ok(())
        }
        Value::Object(map) => {
            let Value::Object(got) = actual else {
                return mismatch(format!("expected an object, got {}", show(actual)));
            };
            let partial = map.get("$partial") == Some(&Value::Bool(true));
            for (key, want) in map.iter().filter(|(k, _)| k.as_str() != "$partial") {
                let child = format!("{path}.{key}");
                match (want, got.get(key)) {
                    (Value::String(s), None)
                        if s == "{{absent}}"
                            || s == "{{absent_or_null}}"
                            || s == "{{optional_int}}" => {}
                    (Value::String(s), Some(Value::Null))
                        if s == "{{absent_or_null}}" || s == "{{optional_int}}" => {}
                    (Value::String(s), Some(v)) if s == "{{optional_int}}" => {
                        if !(v.is_i64() || v.is_u64()) {
                            return Err(format!(
                                "at {child}: expected no value, null or an integer, got {}",
                                show(v)
                            ));
                        }
                    }
                    (Value::String(s), Some(v)) if s == "{{absent}}" => {
                        return Err(format!("at {child}: expected no such key, got {}", show(v)))
                    }
                    (_, None) => {
                        return Err(format!(
                            "at {child}: missing (expected {}); got {}",
                            show(want),
                            show(actual)
                        ))
                    }
                    (_, Some(v)) => at(want, v, ctx, &child)?,
                }
            }
            if !partial {
                if let Some(extra) = got.keys().find(|k| !map.contains_key(*k)) {
                    return Err(format!(
                        "at {path}.{extra}: unexpected key (value {})",
                        show(&got[extra])
                    ));
                }
            }
            Ok(())
        }
        Value::Array(want) => {
            let Value::Array(got) = actual else {
                return mismatch(format!("expected an array, got {}", show(actual)));
            };
            if want.len() != got.len() {
                return mismatch(format!(
                    "expected {} elements, got {}: {}",
                    want.len(),
                    got.len(),
                    show(actual)
                ));
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                at(w, g, ctx, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Number(n) => match actual.as_f64() {
            Some(g) if n.as_f64() == Some(g) => Ok(()),
            _ => mismatch(format!("expected {n}, got {}", show(actual))),
        },
        other if other == actual => Ok(()),
        other => mismatch(format!("expected {}, got {}", show(other), show(actual))),
    }
}

fn string_pattern(p: &str, actual: &Value, ctx: &mut Context, path: &str) -> Result<(), String> {
    let mismatch = |what: String| Err(format!("at {path}: {what}"));
    let whole = p
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
        .filter(|inner| !inner.contains("{{"));
    match whole {
        Some("any") => return Ok(()),
        Some("string") if actual.is_string() => return Ok(()),
        Some("string") => return mismatch(format!("expected a string, got {}", show(actual))),
        Some("number") if actual.is_number() => return Ok(()),
        Some("number") => return mismatch(format!("expected a number, got {}", show(actual))),
        Some(inner) if inner.starts_with("re:") => {
            let re = Regex::new(&inner[3..]).map_err(|e| format!("bad regex in pattern: {e}"))?;
            return match actual {
                Value::String(s) if re.is_match(s) => Ok(()),
                _ => mismatch(format!(
                    "expected a string matching /{}/, got {}",
                    &inner[3..],
                    show(actual)
                )),
            };
        }
        Some(inner) if inner.starts_with("socket_id:") => {
            let client = &inner["socket_id:".len()..];
            let Value::String(got) = actual else {
                return mismatch(format!("expected a socket id, got {}", show(actual)));
            };
            return match ctx.socket_ids.get(client) {
                Some(known) if known == got => Ok(()),
                Some(known) => mismatch(format!(
                    "expected {client}'s socket id {known:?}, got {got:?}"
                )),
                None if is_socket_id(got) => {
                    ctx.socket_ids.insert(client.to_owned(), got.clone());
                    Ok(())
                }
                None => mismatch(format!("{got:?} is not a socket id (\\d+\\.\\d+)")),
            };
        }
        _ => {}
    }
    let want = ctx.substitute(p)?;
    match actual {
        Value::String(got) if *got == want => Ok(()),
        _ => mismatch(format!(
            "expected {}, got {}",
            show(&Value::String(want)),
            show(actual)
        )),
    }
}

/// Whether `text` looks like a Pusher socket id: `^\d+\.\d+$`.
pub fn is_socket_id(text: &str) -> bool {
    let Some((a, b)) = text.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    digits(a) && digits(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::App;
    use serde_json::json;

    fn ctx() -> Context {
        Context::new(App {
            id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
        })
    }

    #[test]
    fn json_strings_and_placeholders() {
        let mut c = ctx();
        let pattern = json!({"event": "pusher:connection_established",
            "data": {"$json": {"socket_id": "{{socket_id:alice}}", "activity_timeout": 120}}});
        let actual = json!({"event": "pusher:connection_established",
            "data": "{\"socket_id\":\"1.2\",\"activity_timeout\":120}"});
        check(&pattern, &actual, &mut c).unwrap();
        assert_eq!(c.socket_ids["alice"], "1.2");
        let other = json!({"event": "pusher:connection_established",
            "data": "{\"socket_id\":\"1.3\",\"activity_timeout\":120}"});
        let err = check(&pattern, &other, &mut c).unwrap_err();
        assert!(err.contains("$.data<json>.socket_id"), "{err}");
    }

    #[test]
    fn exact_keys_unless_partial() {
        let mut c = ctx();
        assert!(check(&json!({"a": 1}), &json!({"a": 1, "b": 2}), &mut c)
            .unwrap_err()
            .contains("$.b"));
        check(
            &json!({"a": 1, "$partial": true}),
            &json!({"a": 1.0, "b": 2}),
            &mut c,
        )
        .unwrap();
        check(&json!({"a": "{{absent}}"}), &json!({}), &mut c).unwrap();
        check(&json!({"m": "{{re:^x+$}}"}), &json!({"m": "xxx"}), &mut c).unwrap();
        check(
            &json!({"$unordered": ["b", "a"]}),
            &json!(["a", "b"]),
            &mut c,
        )
        .unwrap();
        assert!(check(&json!({"$json": {}}), &json!({}), &mut c).is_err());
    }

    #[test]
    fn optional_int_takes_no_value_null_or_an_integer() {
        let mut c = ctx();
        let p = json!({"code": "{{optional_int}}"});
        for ok in [json!({}), json!({"code": null}), json!({"code": 4009})] {
            check(&p, &ok, &mut c).unwrap();
        }
        for bad in [json!({"code": "4009"}), json!({"code": 1.5})] {
            assert!(check(&p, &bad, &mut c).unwrap_err().contains("$.code"));
        }
    }

    #[test]
    fn maybe_json_takes_the_value_or_its_json_string() {
        let mut c = ctx();
        let p = json!({"data": {"$maybe_json": {"text": "hi"}}});
        check(&p, &json!({"data": {"text": "hi"}}), &mut c).unwrap();
        check(&p, &json!({"data": "{\"text\":\"hi\"}"}), &mut c).unwrap();
        let err = check(&p, &json!({"data": "{\"text\":\"ho\"}"}), &mut c).unwrap_err();
        assert!(err.contains("$.data<json>.text"), "{err}");
        let s = json!({"data": {"$maybe_json": "plain"}});
        check(&s, &json!({"data": "plain"}), &mut c).unwrap();
    }
}
