//! JSON objects parsed strictly: a duplicate member name anywhere is an error.
//!
//! `serde_json` keeps the last of two members with one name, and other parsers keep the
//! first: `{"sub":"alice","sub":"root"}` would be `root` to us and `alice` to an upstream
//! that reads the forwarded token. A token with duplicates has no single meaning, so it
//! is refused.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictError {
    /// Not JSON, or not an object at the top.
    NotAnObject,
    /// Some object (at any depth) names a member twice.
    DuplicateMember,
}

/// Parses `bytes` as one JSON object with no duplicate member names at any depth.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, StrictError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Ok(map),
        Ok(_) => Err(StrictError::NotAnObject),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(StrictError::DuplicateMember),
        Err(_) => Err(StrictError::NotAnObject),
    }
}

const DUPLICATE: &str = "duplicate member";

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_at_any_depth() {
        for json in [
            r#"{"sub":"alice","sub":"root"}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"x":1},{"y":1,"y":1}]}"#,
            // Escapes spell the same name differently on the wire.
            r#"{"sub":"alice","s\u0075b":"root"}"#,
        ] {
            assert_eq!(
                object(json.as_bytes()),
                Err(StrictError::DuplicateMember),
                "{json}"
            );
        }
    }

    #[test]
    fn parses_what_serde_json_parses() {
        let json = r#"{"s":"x","n":-1,"u":18446744073709551615,"f":1.5,"b":true,"z":null,"a":[1,{"k":"v"}],"o":{"p":{}}}"#;
        let ours = object(json.as_bytes()).unwrap();
        let theirs: Map<String, Value> = serde_json::from_str(json).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn refuses_non_objects() {
        for json in ["[]", "1", "\"s\"", "null", "{", "{\"a\":1}x", ""] {
            assert_eq!(
                object(json.as_bytes()),
                Err(StrictError::NotAnObject),
                "{json}"
            );
        }
    }
}
